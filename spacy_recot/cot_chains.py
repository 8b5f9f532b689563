"""NER-CoT chains: reasoning chains written for labelled sentences (Pile-NER, a
converted `.spacy` set), giving records as `cot_data` describes them, in three
stages, each writing JSON lines and counting what it dropped and why:

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
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

from .chunks import Chunk, Request
from .cot_data import (
    CoTDataError,
    JsonlWriter,
    Record,
    entity_list,
    has_chains,
    ner_cot_record,
    read_labelled,
    read_stage,
    read_training_records,
)
from .jsonl import write_jsonl
from .labels import LabelMatcher
from .rewards import answer_text, entity_pairs
from .tasks import REASONING_NER_TEMPLATE, EntityListPrompt, read_entities

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
