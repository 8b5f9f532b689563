"""NER-CoT data: sentences with a reasoning chain and entities, for CoT tuning.

A record is `{guid, sentence, schema, cot, entities: [{text, label}], source}`
(the public NER-CoT files call `source` `dataset`; both are read). Records are
built from labelled data (Pile-NER, a converted `.spacy` set) in three stages,
each writing JSON lines and counting what it dropped and why:

(a) `teach`: a teacher model (any backend the component supports) writes a
    reasoning chain and an entity list for each sentence and schema; the
    answer is read with the component's reader;
(b) `validate`: a record is kept only if the answer's JSON parses as written,
    every label is in the schema, every entity is in the sentence, and the
    chain mentions every entity it outputs (and, with `match_gold`, the
    entities are the annotated ones);
(c) `judge`: a judge model scores the chain against the sentence and the
    entities (0-10); records at or above a threshold are kept.

Every stage appends one line per record and flushes it, and skips the guids
its output already holds: Ctrl-C or a crash loses nothing written, and a rerun
resumes. A last line cut off by a crash is dropped on resume.
"""

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from .chunks import Chunk, Request
from .jsonl import JsonlAppender, load_jsonl, read_jsonl, write_jsonl
from .labels import LabelMatcher
from .rewards import answer_text, entity_pairs
from .tasks import REASONING_NER_TEMPLATE, EntityListPrompt, read_entities

Record = Dict[str, Any]

# The teacher's instruction: ReasoningNER's prompt (so the chains fit the
# prompt the student is trained on), asked to reason first.
TEACHER_SUFFIX = (
    "\n\nFirst think step by step inside <think> and </think>: go through the sentence, and for "
    "each entity you extract say in a short sentence why it is an entity of its type, naming it "
    "exactly as written. Then give the JSON."
)
GOLD_HINT = "\n\nThe annotated entities of this sentence are: {gold}. Explain why each is an entity of its type."
JUDGE_TEMPLATE = (
    "Sentence: {sentence}\nEntity types: {schema}\nReasoning: {cot}\nEntities: {entities}\n\n"
    "On a scale from 0 to 10, how well does the reasoning justify exactly these entities "
    "for this sentence, with nothing missing and nothing wrong? Answer with one integer."
)
# The teacher answers ReasoningNER's prompt: an entity list.
TEACHER_TASK = EntityListPrompt()
SCORE_RE = re.compile(r"\b(10|[0-9])\b")


class CoTDataError(ValueError):
    """An input record is malformed; the message names the file and record."""


def entity_list(entities: Any) -> List[Dict[str, str]]:
    """`[{text, label}]` from the shapes NER-CoT files use."""
    if isinstance(entities, dict):
        entities = entities.get("entities", entities)
    if isinstance(entities, dict):
        return [{"text": t, "label": label} for label, texts in entities.items() for t in (texts or [])]
    out = []
    for item in entities or []:
        if isinstance(item, dict) and "text" in item:
            out.append({"text": str(item["text"]), "label": str(item.get("label", item.get("type", "")))})
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append({"text": str(item[0]), "label": str(item[1])})
    return out


def schema_list(schema: Any) -> List[str]:
    """A schema as a list of labels: a list, or a JSON list written as a string."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema) if schema.strip().startswith("[") else [schema]
        except ValueError:
            schema = [schema]
    return [str(label) for label in schema or []] if isinstance(schema, (list, tuple)) else []


def read_ner_cot(path: Path) -> Iterator[Record]:
    """Records of a NER-CoT file (JSON list or JSON lines): guid, dataset or
    source, sentence, schema, cot, entities (a list of {text, label} or a
    {label: [text]} object)."""
    for i, (number, raw) in enumerate(read_jsonl(path, json_file=True, error=CoTDataError)):
        if not isinstance(raw.get("sentence"), str):
            raise CoTDataError(f"{path}:{number}: expected a 'sentence' string")
        schema = schema_list(raw.get("schema"))
        yield {
            "guid": str(raw.get("guid", f"{Path(path).stem}-{i}")),
            "sentence": raw["sentence"],
            "schema": schema,
            "cot": str(raw.get("cot") or ""),
            "entities": entity_list(raw.get("entities")),
            "source": str(raw.get("source", raw.get("dataset", Path(path).stem))),
        }


def read_labelled(path: Path, source: Optional[str] = None, limit: int = 0) -> Iterator[Record]:
    """Records to annotate from labelled data: a converted `.spacy` set (schema:
    its label list) or a Pile-NER file (schema: the passage's labels and its
    negative ones). The annotation is kept as `gold`."""
    from .instruction_data import read_pile_ner

    path = Path(path)
    source = source or (path.parent.name if path.stem in ("train", "dev", "test") else path.stem)
    if path.suffix == ".spacy":
        from spacy.vocab import Vocab

        from .conll import read_docbin, read_labels

        docs = read_docbin(path, Vocab(), limit)
        schema = read_labels(path, docs)
        for i, doc in enumerate(docs):
            gold = [{"text": e.text, "label": e.label_} for e in doc.ents]
            yield {
                "guid": f"{source}-{path.stem}-{i}",
                "sentence": doc.text,
                "schema": list(schema),
                "gold": gold,
                "source": source,
            }
        return
    for i, passage in enumerate(read_pile_ner(path)):
        if limit and i >= limit:
            return
        chunk = Chunk.from_words(passage.words)
        gold = [{"text": chunk.slice_text(s, e), "label": label} for s, e, label in passage.spans]
        schema = sorted({g["label"] for g in gold} | set(passage.negatives))
        yield {
            "guid": f"{source}-{passage.id}",
            "sentence": chunk.text,
            "schema": schema,
            "gold": gold,
            "source": source,
        }


class JsonlWriter(JsonlAppender):
    """Appends a stage's records to its JSON lines file, one flushed line each;
    `done` holds the records already written, by guid (a cut-off last line is
    dropped first)."""

    def __init__(self, path: Path):
        super().__init__(path, key="guid", error=CoTDataError)


def teacher_prompt(record: Record, show_gold: bool = False) -> str:
    """ReasoningNER's prompt for the record, asking for reasoning first (and,
    with `show_gold`, naming the annotated entities to explain)."""
    schema = sorted(label.lower() for label in record["schema"])
    example = {"entities": {label: [] for label in schema}}
    text = REASONING_NER_TEMPLATE.format(
        schema=json.dumps(schema, ensure_ascii=False),
        example=json.dumps(example, ensure_ascii=False, indent=2),
        sentence=record["sentence"],
    )
    if show_gold:
        gold = json.dumps({"entities": _grouped(record.get("gold", []))}, ensure_ascii=False)
        text += GOLD_HINT.format(gold=gold)
    return text + TEACHER_SUFFIX


def _grouped(entities: Sequence[Dict[str, str]]) -> Dict[str, List[str]]:
    grouped: Dict[str, List[str]] = {}
    for e in entities:
        grouped.setdefault(e["label"].lower(), []).append(e["text"])
    return grouped


def _batches(records: Iterable[Record], size: int) -> Iterator[List[Record]]:
    batch: List[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def teach(
    records: Iterable[Record],
    output: Path,
    teacher: Callable[[Sequence[Request]], List[str]],
    *,
    show_gold: bool = False,
    batch_size: int = 8,
    show_progress: bool = True,
) -> Counter:
    """Stage (a): the teacher writes a chain and entities for each record."""
    counts: Counter = Counter()
    with JsonlWriter(output) as out:
        todo = [r for r in records if r["guid"] not in out.done]
        counts["already_done"] = len(out.done)
        for batch in tqdm(list(_batches(todo, batch_size)), desc="annotate", disable=not show_progress):
            requests = []
            for r in batch:
                chunk = Chunk.from_text(r["sentence"])
                schema = sorted(label.lower() for label in r["schema"])
                # The answer's JSON: an entity-list answer, constrained when the teacher is.
                requests.append(
                    Request(
                        teacher_prompt(r, show_gold), chunk, schema, constraint=TEACHER_TASK.constraint(chunk, schema)
                    )
                )
            for record, request, answer in zip(batch, requests, teacher(requests)):
                reading = read_entities(request.chunk, answer, record["schema"])
                entities = [{"text": record["sentence"][s:e], "label": label} for s, e, label in reading.spans]
                out.write({**record, "cot": reading.rationale, "entities": entities, "answer": answer})
                counts["annotated"] += 1
    return counts


def check_record(record: Record, match_gold: bool = False) -> Optional[str]:
    """Why stage (b) drops a record, or None to keep it."""
    cot = record.get("cot") or ""
    if not cot.strip():
        return "no_chain"
    answer = record.get("answer")
    if answer is None:
        # A NER-CoT file: the entities are the answer.
        entities = record.get("entities") or []
    else:
        try:
            value = json.loads(answer_text(answer))
        except (ValueError, RecursionError):
            return "json_invalid"
        if not isinstance(value, dict) or not isinstance(value.get("entities"), dict):
            return "json_not_an_entity_object"
        entities = entity_list(value["entities"])
    labels = LabelMatcher(record.get("schema") or [])
    for entity in entities:
        if labels(entity["label"]) is None:
            return "label_not_in_schema"
        if not entity["text"].strip() or entity["text"] not in record["sentence"]:
            return "entity_not_in_sentence"
        if entity["text"].lower() not in cot.lower():
            return "chain_misses_an_entity"
    if match_gold and "gold" in record and entity_pairs(entities) != entity_pairs(record["gold"]):
        return "differs_from_gold"
    return None


def with_gold_answer(record: Record) -> Record:
    """The record answered with its annotated entities and the teacher's chain
    (ReasoningNER's recipe: the chain explains the gold answer). The teacher's
    own JSON is dropped; its chain must be complete (the think block closed)."""
    out = {k: v for k, v in record.items() if k != "answer"}
    out["entities"] = list(record.get("gold") or [])
    if "</think>" not in (record.get("answer") or ""):
        out["cot"] = ""  # cut off before the end of its reasoning: no chain
    return out


def validate(
    records: Iterable[Record], output: Path, rejected: Path, match_gold: bool = False, gold_answer: bool = False
) -> Counter:
    """Stage (b): keep records that pass `check_record`; the others go to `rejected` with the reason.

    gold_answer (bool): Answer each record with its annotated entities
        (`with_gold_answer`) and keep it when the chain names every one of
        them, instead of checking the teacher's JSON."""
    counts: Counter = Counter()
    with JsonlWriter(output) as out, JsonlWriter(rejected) as bad:
        for record in records:
            if record["guid"] in out.done or record["guid"] in bad.done:
                counts["already_done"] += 1
                continue
            if gold_answer and "gold" in record:
                record = with_gold_answer(record)
            reason = check_record(record, match_gold)
            if reason is None:
                out.write(record)
                counts["kept"] += 1
            else:
                bad.write({**record, "dropped": reason})
                counts[f"dropped_{reason}"] += 1
    return counts


def parse_score(text: str) -> Optional[int]:
    """The judge's score, after any reasoning: an integer written as "N/10",
    else the last integer from 0 to 10; None when the reasoning never closed
    or no score is there."""
    if "<think>" in text and "</think>" not in text:
        return None
    answer = text.rsplit("</think>", 1)[-1]
    out_of_ten = re.search(r"\b(10|[0-9])\s*/\s*10\b", answer)
    if out_of_ten:
        return int(out_of_ten.group(1))
    found = SCORE_RE.findall(answer)
    return int(found[-1]) if found else None


def judge(
    records: Iterable[Record],
    output: Path,
    rejected: Path,
    judge_model: Callable[[Sequence[Request]], List[str]],
    *,
    threshold: int = 9,
    batch_size: int = 8,
    show_progress: bool = True,
) -> Counter:
    """Stage (c): a judge scores each chain 0-10; scores >= threshold are kept."""
    counts: Counter = Counter()
    with JsonlWriter(output) as out, JsonlWriter(rejected) as bad:
        todo = [r for r in records if r["guid"] not in out.done and r["guid"] not in bad.done]
        counts["already_done"] = len(out.done) + len(bad.done)
        for batch in tqdm(list(_batches(todo, batch_size)), desc="judge", disable=not show_progress):
            requests = [
                Request(
                    JUDGE_TEMPLATE.format(
                        sentence=r["sentence"],
                        schema=", ".join(r["schema"]),
                        cot=r["cot"],
                        entities=json.dumps(_grouped(r["entities"]), ensure_ascii=False),
                    ),
                    Chunk.from_text(r["sentence"]),
                )
                for r in batch
            ]
            for record, answer in zip(batch, judge_model(requests)):
                score = parse_score(answer)
                if score is None:
                    bad.write({**record, "judge_answer": answer, "dropped": "judge_unparseable"})
                    counts["dropped_judge_unparseable"] += 1
                elif score < threshold:
                    bad.write({**record, "judge_score": score, "dropped": "below_threshold"})
                    counts["dropped_below_threshold"] += 1
                else:
                    out.write({**record, "judge_score": score})
                    counts["kept"] += 1
    return counts


def read_stage(path: Path) -> List[Record]:
    """The records a stage wrote (JSON lines), none before it has run; a bad
    line fails naming file:line."""
    return load_jsonl(path, error=CoTDataError) if Path(path).exists() else []


def has_chains(path: Path) -> bool:
    """Whether a file holds NER-CoT records (JSON with a "cot" field), not labelled data to annotate."""
    path = Path(path)
    if path.suffix not in (".json", ".jsonl"):
        return False
    with open(path, encoding="utf-8", errors="replace") as f:  # a bad byte is for the reader to name
        return '"cot"' in f.read(20000)


def read_training_records(path: Path, limit: int = 0) -> List[Record]:
    """Records with gold `entities` (and a `cot`, empty without a chain) from
    any input the training commands take: NER-CoT files (with their chains) or
    labelled data (no chain)."""
    if has_chains(path):
        return list(read_ner_cot(path))[: limit or None]
    return [{**r, "entities": r.pop("gold"), "cot": ""} for r in read_labelled(path, limit=limit)]


def ner_cot_record(record: Record) -> Record:
    """A record in the public NER-CoT format (what `read_ner_cot` reads)."""
    return {
        "guid": record["guid"],
        "dataset": record.get("source", ""),
        "sentence": record["sentence"],
        "schema": record["schema"],
        "cot": record["cot"],
        "entities": [{"text": e["text"], "label": e["label"]} for e in record["entities"]],
    }


Model = Callable[[Sequence[Request]], List[str]]


def make_ner_cot(
    inputs: Sequence[Path],
    output_dir: Path,
    *,
    teacher: Optional[Callable[[], Model]] = None,
    judge_model: Optional[Callable[[], Model]] = None,
    threshold: int = 9,
    show_gold: bool = False,
    match_gold: bool = False,
    gold_answer: bool = False,
    limit: int = 0,
    batch_size: int = 8,
    show_progress: bool = True,
) -> Tuple[Dict[str, Dict[str, int]], int]:
    """NER-CoT records from `inputs` in `output_dir`: labelled data goes through
    the three stages, NER-CoT files (records with a chain) skip stage (a). Each
    stage writes its JSON lines there (`annotated.jsonl`, `validated.jsonl`,
    `judged.jsonl` and the rejects) and resumes what a stopped run left; then
    `ner_cot.jsonl` (the records kept, in the public NER-CoT format) and
    `counts.json` (each stage's counts). Returns the counts and the number of
    records kept.

    teacher, judge_model (Optional[Callable[[], Model]]): Load the backend of
        stage (a) / (c), called only when the stage runs; without a judge,
        stage (c) is skipped.
    The other settings are `teach`'s, `validate`'s and `judge`'s; `limit` takes
    the first records of each input (0: all).
    """
    if not 0 <= threshold <= 10:
        raise CoTDataError(f"--threshold must be 0-10, not {threshold}")
    to_teach: List[Record] = []
    given: List[Record] = []
    for path in inputs:
        if not Path(path).exists():
            raise CoTDataError(f"{path} does not exist")
        if has_chains(path):
            given.extend(read_training_records(path, limit))
        else:
            to_teach.extend(read_labelled(path, limit=limit))
    out = Path(output_dir)
    counts: Dict[str, Counter] = {}
    if to_teach:
        if teacher is None:
            raise CoTDataError("--teacher is needed to annotate labelled data (stage a)")
        counts["annotate"] = teach(
            to_teach,
            out / "annotated.jsonl",
            teacher(),
            show_gold=show_gold,
            batch_size=batch_size,
            show_progress=show_progress,
        )
    records = read_stage(out / "annotated.jsonl") + given
    counts["validate"] = validate(
        records, out / "validated.jsonl", out / "rejected_validation.jsonl", match_gold, gold_answer
    )
    kept = read_stage(out / "validated.jsonl")
    if judge_model is not None:
        backend = judge_model()
        if getattr(backend, "constrained", False):
            raise CoTDataError("--judge: a judge answers with a number; use a backend with constrained = false")
        counts["judge"] = judge(
            kept,
            out / "judged.jsonl",
            out / "rejected_judge.jsonl",
            backend,
            threshold=threshold,
            batch_size=batch_size,
            show_progress=show_progress,
        )
        kept = read_stage(out / "judged.jsonl")
    write_jsonl(out / "ner_cot.jsonl", (ner_cot_record(r) for r in kept))
    sorted_counts = {stage: dict(sorted(c.items())) for stage, c in counts.items()}
    (out / "counts.json").write_text(json.dumps(sorted_counts, indent=2) + "\n", encoding="utf-8")
    return sorted_counts, len(kept)


# The seven zero-shot evaluation sets (and CrossNER's domains by their folder
# names): kept out of training samples by default.
EVALUATION_SETS = (
    "crossner_ai",
    "crossner_literature",
    "crossner_music",
    "crossner_politics",
    "crossner_science",
    "mit-movie",
    "mit-restaurant",
)


def is_evaluation_set(source: str) -> bool:
    """Whether a source set is (the training data of) one of the evaluation sets."""
    name = source.lower().replace("_", "-").replace(" ", "-")
    keys = {s.replace("_", "-") for s in EVALUATION_SETS} | {s.split("_", 1)[1] for s in EVALUATION_SETS if "_" in s}
    return name in keys or name.removeprefix("crossner-") in keys


def stratified_sample(
    records: Sequence[Record],
    num_samples: int,
    max_count: int,
    seed: int = 0,
    exclude_evaluation_sets: bool = True,
) -> tuple:
    """ReasoningNER's GRPO sample: each source set capped at `max_count`
    records, then `num_samples` drawn in proportion to the capped sizes.
    Returns the sample and what was taken and left out, per set."""
    import random

    rng = random.Random(seed)
    by_source: Dict[str, List[Record]] = {}
    for record in records:
        by_source.setdefault(record.get("source", ""), []).append(record)
    report: Dict[str, Any] = {"excluded_evaluation_sets": [], "taken": {}}
    pools: Dict[str, List[Record]] = {}
    for source, items in sorted(by_source.items()):
        if exclude_evaluation_sets and is_evaluation_set(source):
            report["excluded_evaluation_sets"].append(source)
            continue
        items = list(items)
        rng.shuffle(items)
        pools[source] = items[:max_count]
    total = sum(len(p) for p in pools.values())
    sample: List[Record] = []
    if total:
        want = min(num_samples, total)
        # Largest-remainder allocation so the shares add up to `want` exactly.
        shares = {s: want * len(p) / total for s, p in pools.items()}
        counts = {s: int(v) for s, v in shares.items()}
        for s in sorted(shares, key=lambda k: shares[k] - counts[k], reverse=True)[: want - sum(counts.values())]:
            counts[s] += 1
        for source, pool in pools.items():
            sample.extend(pool[: counts[source]])
            report["taken"][source] = counts[source]
    rng.shuffle(sample)
    return sample, report


def chat_example(record: Record, prompt: Any = None, with_cot: bool = True) -> Record:
    """A record as a conversational prompt-completion pair for TRL: the user turn
    is ReasoningNER's prompt (what `spacy_recot.ReasoningNERPrompt.v1` renders at
    inference), the assistant turn `<think>\\n{cot}\\n</think>\\n{json}` (`with_cot`
    false: the JSON alone, the paper's ablation). The sentence, schema and
    entities stay as columns for the rewards."""
    from .tasks import make_reasoning_ner_prompt

    prompt = prompt or make_reasoning_ner_prompt()
    chunk = Chunk.from_text(record["sentence"])
    schema = prompt.schema(record["schema"])
    # ReasoningNER drops generic labels ("misc", "other") from the schema: their entities go too.
    entities = [(e["text"], e["label"]) for e in record.get("entities", []) if e["label"].lower() in schema]
    completion = prompt.render_answer(entities, record.get("cot", "") if with_cot else "")
    return {
        "prompt": [{"role": "user", "content": prompt.render(chunk, record["schema"])}],
        "completion": [{"role": "assistant", "content": completion}],
        "sentence": record["sentence"],
        "schema": schema,
        "entities": [{"text": t, "label": label.lower()} for t, label in entities],
    }
