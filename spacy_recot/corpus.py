"""Corpus-scale annotation: a pipeline over a text or JSONL file, written in shards.

The input is cut into shards of `shard_size` records. Each finished shard is
written as JSONL (the record's fields, its entities and the per-doc record of
every recot_ner component) and/or a DocBin, each file under a temporary name
renamed into place, so a shard on disk is whole. A rerun skips the shards
that are there; a shard with a doc that failed (spaCy's error handler) is not
written, and the next run tries it again (with a response cache, only the
failed answers cost anything). A record that can never be annotated (a text
spaCy refuses, a field that cannot be written as JSON) goes to the shard's
errors file (`errors-00001.jsonl`: its line number and why) and the rest of the
shard is written. `manifest.json` ties the folder to its input and settings,
so a rerun with other ones stops instead of mixing outputs; one run at a time
writes a folder (a lock), and a rerun removes what a killed run left half
written.

The shards run in this process, or on Ray Data (`engine="ray"`): one pipeline
per actor in an actor pool, each actor annotating whole shards; the driver
writes them. Both engines call `annotate_shard`, so their outputs are the same.
"""

import hashlib
import json
import logging
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from .component import USER_DATA_KEY
from .jsonl import jsonl_text, read_jsonl, read_lines

FORMATS = ("jsonl", "docbin", "both")
# The fields each output line adds to its record's own: an input field of that
# name would be overwritten, so it is refused.
OUTPUT_FIELDS = ("entities", USER_DATA_KEY)


@dataclass
class ShardResult:
    """What annotating one shard gives: the files' contents, or the failures;
    and the records that can never be annotated (`errors`: line and why)."""

    index: int
    jsonl: Optional[str] = None
    docbin: Optional[bytes] = None
    docs: int = 0
    failures: List[str] = field(default_factory=list)
    errors: List[Dict[str, Any]] = field(default_factory=list)


def numbered_input_records(path: Path, text_field: str = "text") -> List[Tuple[int, Dict[str, Any]]]:
    """The records to annotate, with their line numbers: one per line of a text
    file (`{"text": line}`), or one per line of a JSONL file (an object with a
    string `text_field`). A line that is not that (not UTF-8, not a JSON object,
    one nested too deeply, one with a field the output writes) fails here,
    before any model runs, naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The input file '{path}' does not exist")
    if text_field in OUTPUT_FIELDS:
        raise ValueError(f"--text-field cannot be {text_field!r}: the output writes that field")
    if path.suffix not in (".jsonl", ".ndjson"):
        return [(number, {text_field: line}) for number, line in read_lines(path)]
    records: List[Tuple[int, Dict[str, Any]]] = []
    for number, record in read_jsonl(path):
        if not isinstance(record.get(text_field), str):
            raise ValueError(f"{path}:{number}: needs a string field '{text_field}' (--text-field)")
        clash = [name for name in OUTPUT_FIELDS if name in record]
        if clash:
            raise ValueError(
                f"{path}:{number}: has a field {clash[0]!r}, which the output writes (it would be "
                "overwritten): rename it in the input"
            )
        records.append((number, record))
    return records


def read_input_records(path: Path, text_field: str = "text") -> List[Dict[str, Any]]:
    """The records to annotate (see `numbered_input_records`)."""
    return [record for _, record in numbered_input_records(path, text_field)]


def doc_record(doc: Any, record: Dict[str, Any], text_field: str) -> Dict[str, Any]:
    """A record's output line: its own fields, its entities, the recot record."""
    out = dict(record)
    out[text_field] = doc.text
    out["entities"] = [
        {"text": e.text, "label": e.label_, "start_char": e.start_char, "end_char": e.end_char} for e in doc.ents
    ]
    if USER_DATA_KEY in doc.user_data:
        out[USER_DATA_KEY] = doc.user_data[USER_DATA_KEY]
    return out


def _error(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())  # one line


def annotate_shard(
    nlp: Any,
    index: int,
    records: Sequence[Dict[str, Any]],
    fmt: str,
    text_field: str,
    batch_size: Optional[int],
    lines: Optional[Sequence[int]] = None,
) -> ShardResult:
    """Annotate one shard's records with `nlp`; its files' contents, or its
    failures. A record that can never be annotated (a text spaCy refuses: longer
    than `nlp.max_length`, not valid Unicode; an output line that is not JSON)
    goes to `errors` with its line number (`lines`: each record's; default its
    place in the shard), and the rest of the shard is written."""
    from spacy.tokens import DocBin

    lines = list(lines) if lines is not None else list(range(1, len(records) + 1))
    failures: List[str] = []
    errors: List[Dict[str, Any]] = []
    made: List[Tuple[int, Dict[str, Any], Any]] = []
    for line, record in zip(lines, records):
        try:
            record[text_field].encode("utf-8")  # lone surrogates (from a JSON escape) cannot be written
            made.append((line, record, nlp.make_doc(record[text_field])))
        except Exception as err:  # noqa: BLE001 - whatever spaCy refuses, with the record named
            errors.append({"line": line, "error": _error(err)})

    def handler(name: str, proc: Any, docs: List[Any], err: Exception) -> None:
        failures.extend(f"{name}: {type(err).__name__}: {err}" for _ in docs)

    nlp.set_error_handler(handler)
    try:
        docs = list(nlp.pipe((doc for _, _, doc in made), batch_size=batch_size))
    except Exception as err:  # noqa: BLE001 - a component without error handling: the shard fails
        return ShardResult(index, docs=len(records), failures=[f"{type(err).__name__}: {err}"])
    if failures or len(docs) != len(made):
        return ShardResult(index, docs=len(records), failures=failures or ["docs went missing"])
    kept, out_lines = [], []
    for (line, record, _), doc in zip(made, docs):
        if fmt in ("jsonl", "both"):
            try:
                # allow_nan=False: a NaN would make the line invalid JSON.
                text = json.dumps(doc_record(doc, record, text_field), ensure_ascii=False, allow_nan=False)
                text.encode("utf-8")
            except (ValueError, TypeError, RecursionError) as err:
                errors.append({"line": line, "error": f"the output line cannot be written: {_error(err)}"})
                continue
            out_lines.append(text + "\n")
        kept.append(doc)
    result = ShardResult(index, docs=len(records), errors=sorted(errors, key=lambda e: e["line"]))
    if fmt in ("jsonl", "both"):
        result.jsonl = "".join(out_lines)
    if fmt in ("docbin", "both"):
        result.docbin = DocBin(docs=kept, store_user_data=True).to_bytes()
    return result


def shard_files(output: Path, index: int, fmt: str) -> List[Path]:
    suffixes = {"jsonl": [".jsonl"], "docbin": [".spacy"], "both": [".jsonl", ".spacy"]}[fmt]
    return [output / f"shard-{index:05d}{s}" for s in suffixes]


def errors_file(output: Path, index: int) -> Path:
    """Where the records of shard `index` that could not be annotated are listed."""
    return output / f"errors-{index:05d}.jsonl"


# Files being written are named `.<name>.<random>.tmp`.
TMP_GLOB = ".*.tmp"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all. The file is made with the user's umask
    (as `open` makes files), not mkstemp's owner-only mode."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # (a name already taken: draw another)
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on disk before the name says the shard is done
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_shard(output: Path, result: ShardResult, fmt: str) -> None:
    """Write a finished shard's files, each whole or not at all: its errors file
    (when it has records that could not be annotated), then its DocBin, the
    JSONL last, so a shard counts as done only when all its files are there."""
    errors = errors_file(output, result.index)
    if result.errors:
        _write_atomic(errors, jsonl_text(result.errors).encode("utf-8"))
    else:
        errors.unlink(missing_ok=True)
    files = shard_files(output, result.index, fmt)
    for path in sorted(files, key=lambda p: p.suffix == ".jsonl"):
        data = result.jsonl.encode("utf-8") if path.suffix == ".jsonl" else result.docbin
        _write_atomic(path, data)


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Hold the output folder for one run (a lock released even when the run is
    killed), so that what a killed run left half written (temporary files) can
    be removed, and two runs never write one folder at once."""
    try:
        fd = os.open(output / ".annotate.lock", os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise ValueError(f"Cannot write in the output folder '{output}': {err.strerror or err}") from None
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, and nothing removed
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ValueError(f"Another annotate run is writing '{output}': wait for it to finish") from None
        for stale in output.glob(TMP_GLOB):
            stale.unlink(missing_ok=True)
        yield
    finally:
        os.close(fd)


def _manifest(pipeline: str, input_path: Path, records: int, shard_size: int, fmt: str, text_field: str) -> Dict:
    digest = hashlib.sha256()
    with Path(input_path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    config = Path(pipeline) / "config.cfg"
    return {
        "pipeline": str(pipeline),
        # The pipeline's config (model, labels, prompt): shards from another one must not mix in.
        "pipeline_config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
        "input": str(input_path),
        "input_sha256": digest.hexdigest(),
        "records": records,
        "shard_size": shard_size,
        "format": fmt,
        "text_field": text_field,
    }


def check_manifest(output: Path, manifest: Dict[str, Any], write: bool = True) -> None:
    """Check that a rerun matches the folder's manifest; write it when the folder
    has none (and `write`: only once the pipeline is known to load, so that a
    mistyped pipeline does not tie the folder to itself)."""
    path = output / "manifest.json"
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} cannot be read ({err}): use a new output folder") from None
        keys = ("input_sha256", "pipeline_config_sha256", "shard_size", "format", "text_field")
        changed = [k for k in keys if not isinstance(old, dict) or old.get(k) != manifest[k]]
        if changed:
            raise ValueError(
                f"{output} holds shards made with other settings ({', '.join(changed)} differ from {path}): "
                "use a new output folder, or the settings of that run"
            )
        return
    if write:
        _write_atomic(path, json.dumps(manifest, indent=2).encode("utf-8"))


def check_pipeline(pipeline: str) -> None:
    """Fail unless `pipeline` is a pipeline folder (with a config.cfg) or an
    installed pipeline package."""
    from spacy.util import is_package

    if (Path(pipeline) / "config.cfg").is_file() or (not Path(pipeline).exists() and is_package(pipeline)):
        return
    raise ValueError(
        f"No pipeline at '{pipeline}': neither a folder with a config.cfg nor an installed pipeline package"
    )


def load_pipeline(pipeline: str) -> Any:
    """`spacy.load(pipeline)`, its errors as one-line ValueErrors."""
    import spacy

    try:
        return spacy.load(pipeline)
    except (OSError, ValueError) as err:
        raise ValueError(f"The pipeline '{pipeline}' could not be loaded: {_error(err)}") from None


class _ShardAnnotator:
    """A Ray actor: loads the pipeline once, annotates one shard per batch."""

    def __init__(self, pipeline: str, fmt: str, text_field: str, batch_size: Optional[int]):
        self.nlp = load_pipeline(pipeline)
        self.fmt, self.text_field, self.batch_size = fmt, text_field, batch_size

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        out: Dict[str, List[Any]] = {"index": [], "jsonl": [], "docbin": [], "docs": [], "failures": [], "errors": []}
        for index, payload in zip(batch["index"], batch["records"]):
            numbered = json.loads(payload)
            result = annotate_shard(
                self.nlp,
                int(index),
                [record for _, record in numbered],
                self.fmt,
                self.text_field,
                self.batch_size,
                lines=[line for line, _ in numbered],
            )
            out["index"].append(result.index)
            out["jsonl"].append(result.jsonl if result.jsonl is not None else "")
            out["docbin"].append(result.docbin or b"")
            out["docs"].append(result.docs)
            out["failures"].append(json.dumps(result.failures))
            out["errors"].append(json.dumps(result.errors))
        return out


def _run_ray(
    pipeline: str,
    shards: List[Tuple[int, List[Tuple[int, Dict[str, Any]]]]],
    fmt: str,
    text_field: str,
    batch_size: Optional[int],
    actors: int,
    gpus_per_actor: float,
    address: Optional[str],
):
    """Yield each shard's result as Ray Data's actor pool finishes it."""
    import ray

    # Our own progress bar counts docs; Ray Data's bars and per-operator logs would repeat it.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        items = [{"index": i, "records": json.dumps(numbered, ensure_ascii=False)} for i, numbered in shards]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _ShardAnnotator,
            fn_constructor_args=(pipeline, fmt, text_field, batch_size),
            batch_size=1,
            # One shard queued per actor: with more, the first actor up takes
            # the shards meant for the others while they load their pipelines.
            compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
            num_gpus=gpus_per_actor,
            num_cpus=1,
        )
        for row in dataset.iter_rows():
            failures = json.loads(row["failures"])
            yield ShardResult(
                int(row["index"]),
                jsonl=None if failures or fmt == "docbin" else row["jsonl"],
                docbin=bytes(row["docbin"]) or None,
                docs=int(row["docs"]),
                failures=failures,
                errors=json.loads(row["errors"]),
            )
    finally:
        if started:
            ray.shutdown()


def annotate(
    pipeline: str,
    input_path: Path,
    output: Path,
    *,
    fmt: str = "jsonl",
    shard_size: int = 1000,
    text_field: str = "text",
    batch_size: Optional[int] = None,
    engine: str = "local",
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    address: Optional[str] = None,
    show_progress: bool = True,
) -> Dict[str, Any]:
    """Annotate `input_path` into shards in `output`; returns a summary (shards
    written, skipped, failed with their first errors; records that could not
    be annotated, by errors file). Every problem with the arguments, the input,
    the pipeline or the output folder is a ValueError with a one-line message."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, not {fmt!r}")
    if engine not in ("local", "ray"):
        raise ValueError(f"--engine must be 'local' or 'ray', not {engine!r}")
    if shard_size < 1 or actors < 1:
        raise ValueError("--shard-size and --actors must be at least 1")
    # Actors may start in another working directory: a local pipeline folder goes by its full path.
    pipeline = str(Path(pipeline).resolve()) if Path(pipeline).exists() else pipeline
    records = numbered_input_records(input_path, text_field)
    check_pipeline(pipeline)
    output = Path(output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"The output folder '{output}' cannot be made: {err.strerror or err}") from None
    with output_lock(output):
        manifest = _manifest(pipeline, input_path, len(records), shard_size, fmt, text_field)
        check_manifest(output, manifest, write=False)
        shards = [(i // shard_size, records[i : i + shard_size]) for i in range(0, len(records), shard_size)]
        todo = [(i, rs) for i, rs in shards if not all(p.exists() for p in shard_files(output, i, fmt))]
        summary: Dict[str, Any] = {"shards": len(shards), "skipped": len(shards) - len(todo), "written": 0}
        summary["failed"] = {}
        if todo and engine == "local":
            nlp = load_pipeline(pipeline)
        check_manifest(output, manifest)
        if todo:
            if engine == "ray":
                results: Any = _run_ray(pipeline, todo, fmt, text_field, batch_size, actors, gpus_per_actor, address)
            else:
                results = (
                    annotate_shard(nlp, i, [r for _, r in rs], fmt, text_field, batch_size, lines=[n for n, _ in rs])
                    for i, rs in todo
                )
            _write_results(output, results, fmt, summary, sum(len(rs) for _, rs in todo), show_progress)
        # The records that could not be annotated, this run's and earlier runs'.
        files = [errors_file(output, i) for i, _ in shards if errors_file(output, i).exists()]
        summary["bad_records"] = {str(f): len(f.read_bytes().splitlines()) for f in files}
        return summary


def _write_results(
    output: Path, results: Any, fmt: str, summary: Dict[str, Any], total: int, show_progress: bool
) -> None:
    """Write each shard's result as it comes, and note it in `summary`."""
    progress = tqdm(total=total, unit="doc", desc="annotate", disable=not show_progress)
    try:
        for result in results:
            if result.failures:
                summary["failed"][result.index] = result.failures[0]
            else:
                write_shard(output, result, fmt)
                summary["written"] += 1
            progress.update(result.docs)
    except OSError as err:
        raise ValueError(f"Cannot write in the output folder '{output}': {_error(err)}") from None
    finally:
        progress.close()
