"""Corpus-scale annotation: a pipeline over a text or JSONL file, written in shards.

The input is cut into shards of `shard_size` records. Each finished shard is
written as JSONL (the record's fields, its entities and the per-doc record of
every recot_ner component) and/or a DocBin, each file under a temporary name
renamed into place, so a shard on disk is whole. A rerun skips the shards
that are there; a shard with a doc that failed (spaCy's error handler) is not
written, and the next run tries it again (with a response cache, only the
failed answers cost anything). `manifest.json` ties the folder to its input
and settings, so a rerun with other ones stops instead of mixing outputs.

The shards run in this process, or on Ray Data (`engine="ray"`): one pipeline
per actor in an actor pool, each actor annotating whole shards; the driver
writes them. Both engines call `annotate_shard`, so their outputs are the same.
"""

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from .component import USER_DATA_KEY

FORMATS = ("jsonl", "docbin", "both")


@dataclass
class ShardResult:
    """What annotating one shard gives: the files' contents, or the failures."""

    index: int
    jsonl: Optional[str] = None
    docbin: Optional[bytes] = None
    docs: int = 0
    failures: List[str] = field(default_factory=list)


def read_records(path: Path, text_field: str = "text") -> List[Dict[str, Any]]:
    """The input's records: one per line of a text file (`{"text": line}`), or
    one per line of a JSONL file (an object with a string `text_field`). A line
    that is not that fails here, before any model runs, naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The input file '{path}' does not exist")
    records: List[Dict[str, Any]] = []
    jsonl = path.suffix in (".jsonl", ".ndjson")
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not jsonl:
                records.append({text_field: line})
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{path}:{number}: not a JSON object ({err})") from err
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise ValueError(f"{path}:{number}: needs a string field '{text_field}' (--text-field)")
            records.append(record)
    return records


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


def annotate_shard(
    nlp: Any, index: int, records: Sequence[Dict[str, Any]], fmt: str, text_field: str, batch_size: Optional[int]
) -> ShardResult:
    """Annotate one shard's records with `nlp`; its files' contents, or its failures."""
    from spacy.tokens import DocBin

    failures: List[str] = []

    def handler(name: str, proc: Any, docs: List[Any], err: Exception) -> None:
        failures.extend(f"{name}: {type(err).__name__}: {err}" for _ in docs)

    nlp.set_error_handler(handler)
    try:
        docs = list(nlp.pipe((r[text_field] for r in records), batch_size=batch_size))
    except Exception as err:  # noqa: BLE001 - a component without error handling: the shard fails
        return ShardResult(index, docs=len(records), failures=[f"{type(err).__name__}: {err}"])
    if failures or len(docs) != len(records):
        return ShardResult(index, docs=len(records), failures=failures or ["docs went missing"])
    result = ShardResult(index, docs=len(docs))
    if fmt in ("jsonl", "both"):
        lines = (json.dumps(doc_record(d, r, text_field), ensure_ascii=False) for d, r in zip(docs, records))
        result.jsonl = "".join(line + "\n" for line in lines)
    if fmt in ("docbin", "both"):
        result.docbin = DocBin(docs=docs, store_user_data=True).to_bytes()
    return result


def shard_files(output: Path, index: int, fmt: str) -> List[Path]:
    suffixes = {"jsonl": [".jsonl"], "docbin": [".spacy"], "both": [".jsonl", ".spacy"]}[fmt]
    return [output / f"shard-{index:05d}{s}" for s in suffixes]


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on disk before the name says the shard is done
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_shard(output: Path, result: ShardResult, fmt: str) -> None:
    """Write a finished shard's files, each whole or not at all; the JSONL last,
    so a shard counts as done only when all its files are there."""
    files = shard_files(output, result.index, fmt)
    for path in sorted(files, key=lambda p: p.suffix == ".jsonl"):
        data = result.jsonl.encode("utf-8") if path.suffix == ".jsonl" else result.docbin
        _write_atomic(path, data)


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


def check_manifest(output: Path, manifest: Dict[str, Any]) -> None:
    """Write the folder's manifest, or check that a rerun matches it."""
    path = output / "manifest.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        keys = ("input_sha256", "pipeline_config_sha256", "shard_size", "format", "text_field")
        changed = [k for k in keys if old.get(k) != manifest[k]]
        if changed:
            raise ValueError(
                f"{output} holds shards made with other settings ({', '.join(changed)} differ from {path}): "
                "use a new output folder, or the settings of that run"
            )
        return
    _write_atomic(path, json.dumps(manifest, indent=2).encode("utf-8"))


class _ShardAnnotator:
    """A Ray actor: loads the pipeline once, annotates one shard per batch."""

    def __init__(self, pipeline: str, fmt: str, text_field: str, batch_size: Optional[int]):
        import spacy

        self.nlp = spacy.load(pipeline)
        self.fmt, self.text_field, self.batch_size = fmt, text_field, batch_size

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        out: Dict[str, List[Any]] = {"index": [], "jsonl": [], "docbin": [], "docs": [], "failures": []}
        for index, payload in zip(batch["index"], batch["records"]):
            result = annotate_shard(
                self.nlp, int(index), json.loads(payload), self.fmt, self.text_field, self.batch_size
            )
            out["index"].append(result.index)
            out["jsonl"].append(result.jsonl or "")
            out["docbin"].append(result.docbin or b"")
            out["docs"].append(result.docs)
            out["failures"].append(json.dumps(result.failures))
        return out


def _run_ray(
    pipeline: str,
    shards: List[Tuple[int, List[Dict[str, Any]]]],
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
        items = [{"index": i, "records": json.dumps(records, ensure_ascii=False)} for i, records in shards]
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
            yield ShardResult(
                int(row["index"]),
                jsonl=row["jsonl"] or None,
                docbin=bytes(row["docbin"]) or None,
                docs=int(row["docs"]),
                failures=json.loads(row["failures"]),
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
    written, skipped, failed with their first errors)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, not {fmt!r}")
    if engine not in ("local", "ray"):
        raise ValueError(f"--engine must be 'local' or 'ray', not {engine!r}")
    if shard_size < 1 or actors < 1:
        raise ValueError("--shard-size and --actors must be at least 1")
    # Actors may start in another working directory: a local pipeline folder goes by its full path.
    pipeline = str(Path(pipeline).resolve()) if Path(pipeline).exists() else pipeline
    records = read_records(input_path, text_field)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    check_manifest(output, _manifest(pipeline, input_path, len(records), shard_size, fmt, text_field))
    shards = [(i // shard_size, records[i : i + shard_size]) for i in range(0, len(records), shard_size)]
    todo = [(i, rs) for i, rs in shards if not all(p.exists() for p in shard_files(output, i, fmt))]
    summary: Dict[str, Any] = {"shards": len(shards), "skipped": len(shards) - len(todo), "written": 0, "failed": {}}
    if not todo:
        return summary
    progress = tqdm(total=sum(len(rs) for _, rs in todo), unit="doc", desc="annotate", disable=not show_progress)
    try:
        if engine == "ray":
            results: Any = _run_ray(pipeline, todo, fmt, text_field, batch_size, actors, gpus_per_actor, address)
        else:
            import spacy

            nlp = spacy.load(pipeline)
            results = (annotate_shard(nlp, i, rs, fmt, text_field, batch_size) for i, rs in todo)
        for result in results:
            if result.failures:
                summary["failed"][result.index] = result.failures[0]
            else:
                write_shard(output, result, fmt)
                summary["written"] += 1
            progress.update(result.docs)
    finally:
        progress.close()
    return summary
