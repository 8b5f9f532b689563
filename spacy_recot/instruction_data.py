"""Instruction data for ReCoT-NER: Pile-NER passages as (source, target) pairs.

Two input formats are read:
- the Hugging Face conversation format of `Universal-NER/Pile-NER-type`: a JSON
  list (or JSON lines) of `{"conversations": [{"from": "human", "value":
  "Text: ..."}, {"from": "gpt", ...}, {"from": "human", "value": "What
  describes <type> in the text?"}, {"from": "gpt", "value": "[\"...\"]"}, ...]}`;
  a type answered by `[]` is a negative label of that passage;
- GLiNER's token format: `{"tokenized_text": [...], "ner": [[start, end_inclusive, label], ...]}`;
and a converted CoNLL set (`.spacy`), to train on labelled data of a domain.

Each passage becomes one or more instances: source = the prompt (ReCoT's or
GNER's instruction) with the passage's labels (shuffled per instance, plus
sampled negative labels), target = every word with its BIO tag. A passage
longer than the limit is split between entities, never inside one.
"""

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .chunks import Chunk, split_chunk
from .jsonl import read_jsonl
from .tasks import bio_prompt, spans_to_tags
from .tasks.bio_tags import tags_to_spans

QUESTION_PREFIX = "What describes "
QUESTION_SUFFIX = " in the text?"


class InstructionDataError(ValueError):
    """A record of the input file is malformed; the message names file and record."""


@dataclass
class Passage:
    """A text as words, its entities as word spans (end exclusive), and the
    labels asked about that have no entity in it."""

    id: str
    words: List[str]
    spans: List[Tuple[int, int, str]]
    negatives: List[str] = field(default_factory=list)


def _gliner_passage(path: Path, i: int, record: Dict[str, Any]) -> Passage:
    words = record.get("tokenized_text")
    ner = record.get("ner")
    if not isinstance(words, list) or not isinstance(ner, list):
        raise InstructionDataError(f"{path} record {i}: expected 'tokenized_text' and 'ner' lists")
    spans = []
    for item in ner:
        if not (isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[2], str)):
            raise InstructionDataError(f"{path} record {i}: 'ner' item {item!r} is not [start, end, label]")
        start, end, label = item
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(words)):
            raise InstructionDataError(f"{path} record {i}: 'ner' span {item!r} is outside the {len(words)} words")
        spans.append((start, end + 1, label))
    return Passage(str(record.get("id", i)), [str(w) for w in words], spans)


def _conversation_passage(path: Path, i: int, record: Dict[str, Any], tokenizer: Any, counts: Counter) -> Passage:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise InstructionDataError(f"{path} record {i}: expected a 'conversations' list")
    first = turns[0].get("value", "") if isinstance(turns[0], dict) else ""
    if not first.startswith("Text:"):
        raise InstructionDataError(f"{path} record {i}: the first turn does not start with 'Text:'")
    text = first[len("Text:") :].strip()
    doc = tokenizer(text)
    words = [t.text for t in doc if not t.is_space]
    kept = [t for t in doc if not t.is_space]
    starts = {t.idx: k for k, t in enumerate(kept)}
    ends = {t.idx + len(t.text): k + 1 for k, t in enumerate(kept)}
    spans: List[Tuple[int, int, str]] = []
    negatives: List[str] = []
    for question, answer in zip(turns[2::2], turns[3::2]):
        q = question.get("value", "") if isinstance(question, dict) else ""
        if not (q.startswith(QUESTION_PREFIX) and q.endswith(QUESTION_SUFFIX)):
            counts["skipped_turns"] += 1
            continue
        label = q[len(QUESTION_PREFIX) : -len(QUESTION_SUFFIX)].strip()
        try:
            mentions = json.loads(answer.get("value", "") if isinstance(answer, dict) else "")
        except json.JSONDecodeError:
            counts["unreadable_answers"] += 1
            continue
        if not isinstance(mentions, list):
            counts["unreadable_answers"] += 1
            continue
        if not mentions:
            negatives.append(label)
            continue
        for mention in mentions:
            found = False
            needle = str(mention).strip()
            pos = text.find(needle) if needle else -1
            while pos != -1:
                if pos in starts and pos + len(needle) in ends:
                    spans.append((starts[pos], ends[pos + len(needle)], label))
                    found = True
                pos = text.find(needle, pos + 1)
            if not found:
                counts["mentions_not_found"] += 1
    return Passage(str(record.get("id", i)), words, spans, negatives)


def read_spacy_passages(path: Path) -> Iterator[Passage]:
    """Passages from a converted CoNLL set (`.spacy` from `python -m spacy_recot
    convert`); the labels of its `.labels.json` absent from a sentence are that
    sentence's negative labels."""
    from spacy.vocab import Vocab

    from .conll import read_docbin, read_labels

    docs = read_docbin(path, Vocab())
    labels = read_labels(path, docs)
    for i, doc in enumerate(docs):
        spans = [(e.start, e.end, e.label_) for e in doc.ents]
        present = {label for _, _, label in spans}
        yield Passage(str(i), [t.text for t in doc], spans, [label for label in labels if label not in present])


def read_pile_ner(path: Path, counts: Optional[Counter] = None) -> Iterator[Passage]:
    """Passages from a Pile-NER file in either format (detected per record), or
    from a converted CoNLL set (`.spacy`)."""
    counts = counts if counts is not None else Counter()
    if Path(path).suffix == ".spacy":
        yield from read_spacy_passages(Path(path))
        return
    tokenizer = None
    for i, (_, record) in enumerate(read_jsonl(path, json_file=True, error=InstructionDataError)):
        if "conversations" in record:
            if tokenizer is None:
                import spacy

                # The words the component shows a model at inference time.
                tokenizer = spacy.blank("en").tokenizer
            yield _conversation_passage(Path(path), i, record, tokenizer, counts)
        elif "tokenized_text" in record:
            yield _gliner_passage(Path(path), i, record)
        else:
            raise InstructionDataError(
                f"{path} record {i}: neither the conversation format ('conversations') "
                "nor GLiNER's token format ('tokenized_text', 'ner')"
            )


def normalize_label(label: str, lowercase: bool = True) -> str:
    """Whitespace collapsed, and lower-cased unless asked not to."""
    label = " ".join(label.split())
    return label.lower() if lowercase else label


def non_overlapping(spans: Sequence[Tuple[int, int, str]], counts: Counter) -> List[Tuple[int, int, str]]:
    """BIO holds no nested entities: keep longer spans first, then earlier ones."""
    kept: List[Tuple[int, int, str]] = []
    # The label breaks ties, so the result does not depend on set order (hash seed).
    for s, e, label in sorted(set(spans), key=lambda x: (-(x[1] - x[0]), x[0], x[2])):
        if any(s < ke and ks < e for ks, ke, _ in kept):
            counts["overlapping_spans_dropped"] += 1
            continue
        kept.append((s, e, label))
    return sorted(kept)


def make_instances(
    passage: Passage,
    prompt: Any,
    rng: random.Random,
    *,
    label_pool: Sequence[str] = (),
    n_negatives: int = 0,
    max_words: int = 120,
    tokenizer: Optional[Any] = None,
    max_source_tokens: int = 640,
    max_target_tokens: int = 640,
    lowercase: bool = True,
    counts: Optional[Counter] = None,
) -> List[Dict[str, Any]]:
    """The instances of one passage, labels shuffled. A passage is split so that
    each piece has at most `max_words` words, or, with a `tokenizer`, so that its
    source (prompt, labels and words) and its target fit the token limits."""
    counts = counts if counts is not None else Counter()

    def norm(label: str) -> str:
        return normalize_label(label, lowercase)

    spans = [(s, e, norm(label)) for s, e, label in non_overlapping(passage.spans, counts)]
    tags = spans_to_tags(len(passage.words), spans)
    chunk = Chunk.from_words(passage.words)
    # Every label asked about the passage is asked about each of its pieces.
    asked = {label for _, _, label in spans} | {norm(label) for label in passage.negatives}
    if tokenizer is None:
        costs = [1.0 / max_words] * len(passage.words)
    else:
        costs = _token_costs(
            tokenizer, prompt, passage.words, tags, asked, label_pool, n_negatives, max_source_tokens, max_target_tokens
        )
    # A piece may start at any word that does not continue an entity.
    allowed = [i for i, tag in enumerate(tags) if not tag.startswith("I-")]
    pieces = split_chunk(chunk, costs, 1.0, allowed) if passage.words else []
    if len(pieces) > 1:
        counts["passages_split"] += 1
    instances = []
    offset = 0
    for k, piece in enumerate(pieces):
        n = len(piece.words)
        piece_tags = tags[offset : offset + n]
        if piece_tags and piece_tags[0].startswith("I-"):
            counts["entities_cut"] += 1  # one entity longer than the whole budget
            piece_tags[0] = "B-" + piece_tags[0][2:]
        offset += n
        labels = set(asked)
        pool = [label for label in label_pool if label not in labels]
        labels |= set(rng.sample(pool, min(n_negatives, len(pool))))
        if not labels:
            counts["instances_without_labels"] += 1
            continue
        order = sorted(labels)
        rng.shuffle(order)
        piece_spans = list(tags_to_spans(piece_tags))
        instances.append(
            {
                "id": f"{passage.id}-{k}" if len(pieces) > 1 else passage.id,
                "words": piece.words,
                "tags": piece_tags,
                "labels": order,
                "source": prompt.render(piece, order),
                "target": prompt.render_target(piece, piece_spans),
            }
        )
    return instances


def _token_costs(
    tokenizer: Any,
    prompt: Any,
    words: List[str],
    tags: List[str],
    asked: Iterable[str],
    label_pool: Sequence[str],
    n_negatives: int,
    max_source_tokens: int,
    max_target_tokens: int,
) -> List[float]:
    """Each word's share of the tighter of the two limits: in the source its own
    tokens (after the prompt and the longest labels it may be asked with), in
    the target the tokens of `word(tag)` and a space; a piece fits at 1.0."""
    if not words:
        return []
    longest = sorted((label for label in label_pool if label not in asked), key=len, reverse=True)[:n_negatives]
    overhead = len(tokenizer(prompt.render(Chunk.from_words([]), sorted(asked) + longest))["input_ids"])
    room_source = max(max_source_tokens - overhead, 1)
    room_target = max(max_target_tokens - 1, 1)  # 1: the end-of-sequence token
    source = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    target = tokenizer([f"{w}({t})" for w, t in zip(words, tags)], add_special_tokens=False)["input_ids"]
    return [max((len(s) + 1) / room_source, (len(t) + 1) / room_target) for s, t in zip(source, target)]


def preprocess(
    input_path: Path,
    output_path: Path,
    *,
    prompt: str = "recot",
    seed: int = 0,
    n_negatives: int = 0,
    max_words: int = 120,
    tokenizer: Optional[Any] = None,
    max_source_tokens: int = 640,
    max_target_tokens: int = 640,
    lowercase: bool = True,
) -> Counter:
    """Write instruction instances (JSON lines) for a Pile-NER file; return counts."""
    renderer = bio_prompt(prompt)
    counts: Counter = Counter()
    passages = list(read_pile_ner(input_path, counts))
    pool = sorted({normalize_label(label, lowercase) for p in passages for _, _, label in p.spans})
    rng = random.Random(seed)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", encoding="utf-8") as out:
        for passage in passages:
            counts["passages"] += 1
            for instance in make_instances(
                passage,
                renderer,
                rng,
                label_pool=pool,
                n_negatives=n_negatives,
                max_words=max_words,
                tokenizer=tokenizer,
                max_source_tokens=max_source_tokens,
                max_target_tokens=max_target_tokens,
                lowercase=lowercase,
                counts=counts,
            ):
                instance["prompt"] = prompt
                out.write(json.dumps(instance, ensure_ascii=False) + "\n")
                counts["instances"] += 1
                counts["entities"] += sum(t.startswith("B-") for t in instance["tags"])
    return counts


def read_instances(path: Path) -> List[Dict[str, Any]]:
    """Instances written by `preprocess` (words, tags, labels, source, target)."""
    rows = []
    for number, row in read_jsonl(path, error=InstructionDataError):
        missing = [k for k in ("words", "tags", "labels") if k not in row]
        if missing:
            raise InstructionDataError(f"{path}:{number}: missing {missing}")
        rows.append(row)
    return rows
