"""NER-CoT data: sentences with a reasoning chain and entities, for CoT tuning.

A record is `{guid, sentence, schema, cot, entities: [{text, label}], source}`
(the public NER-CoT files call `source` `dataset`; both are read). This module
reads and writes such records, reads labelled data into them, turns them into
chat examples for tuning, and draws ReasoningNER's stratified GRPO sample;
`cot_chains` writes the chains.
"""

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from .chunks import Chunk
from .jsonl import JsonlAppender, load_jsonl, read_jsonl

Record = Dict[str, Any]


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
