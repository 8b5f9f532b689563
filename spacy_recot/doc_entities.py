"""From a doc's readings to its entities: character spans aligned to the doc's
tokens, the score threshold, overlaps resolved, and the per-doc record of what
was kept (with each entity's score and reason) and what was dropped.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from .tasks import CharSpan, Reading
from .tasks.think import rationale_sentences, reason_for

ALIGNMENT_MODES = ("strict", "contract", "expand")
OVERLAP_POLICIES = ("longest", "score")
# Where each component keeps its per-doc record: doc.user_data[USER_DATA_KEY][name].
USER_DATA_KEY = "recot"
# The span extension that gives an entity's score: span._.recot_score.
SCORE_EXTENSION = "recot_score"


def span_score(span: Span) -> Optional[float]:
    """The score a recot_ner component gave `span` (an entity in `doc.ents` or a
    span in a spans group it wrote), or None: read from the doc's own records, so
    it survives pickling, `nlp.pipe(n_process=...)` and a DocBin with user data."""
    key = (span.start_char, span.end_char, span.label_)
    for record in span.doc.user_data.get(USER_DATA_KEY, {}).values():
        for entity in record.get("entities", ()) if isinstance(record, dict) else ():
            if (entity.get("start_char"), entity.get("end_char"), entity.get("label")) == key:
                return entity.get("score")
    for group in span.doc.spans.values():
        scores = group.attrs.get("scores")
        if isinstance(scores, list) and len(scores) == len(group):
            for other, score in zip(group, scores):
                if (other.start_char, other.end_char, other.label_) == key:
                    return score
    return None


if not Span.has_extension(SCORE_EXTENSION):
    Span.set_extension(SCORE_EXTENSION, getter=span_score)


def resolve_overlaps(spans: List[Span], scores: Dict[CharSpan, float], policy: str = "score") -> List[Span]:
    """The spans `doc.ents` keeps: spaCy's `filter_spans` (longest first), or
    with policy "score" the most confident first (spans without a score after
    those with one), then the longest."""
    if policy == "longest":
        return filter_spans(spans)

    def rank(span: Span) -> Tuple[float, int, int]:
        score = scores.get((span.start_char, span.end_char, span.label_), -1.0)
        return (score, len(span), -span.start)

    kept: List[Span] = []
    taken: set = set()
    for span in sorted(spans, key=rank, reverse=True):
        if not taken.intersection(range(span.start, span.end)):
            kept.append(span)
            taken.update(range(span.start, span.end))
    return sorted(kept, key=lambda s: s.start)


@dataclass
class DocEntities:
    """A doc's entities as read from its chunks' answers.

    spans (List[Span]): Every aligned span above the threshold, overlapping or not.
    kept (List[Span]): The spans `doc.ents` gets, overlaps resolved.
    scores (Dict[CharSpan, float]): Each scored span's score, by (start, end, label).
    counts (Counter): What was repaired, merged and dropped, by kind.
    rationales (List[str]): The reasoning written for each chunk, where there was some.
    """

    spans: List[Span] = field(default_factory=list)
    kept: List[Span] = field(default_factory=list)
    scores: Dict[CharSpan, float] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    rationales: List[str] = field(default_factory=list)

    def score(self, span: Span) -> Optional[float]:
        """The span's score, or None when the backend gave none."""
        return self.scores.get((span.start_char, span.end_char, span.label_))

    def rounded_score(self, span: Span) -> Optional[float]:
        """The span's score to 4 decimals, as records and span groups keep it."""
        score = self.score(span)
        return None if score is None else round(score, 4)

    def record(self) -> Dict[str, Any]:
        """The per-doc record, as plain JSON values: the kept entities (with score
        and reason when known), the counts, and the rationale."""
        sentences = rationale_sentences("\n".join(self.rationales))
        entities = []
        for s in self.kept:
            entity: Dict[str, Any] = {
                "text": s.text,
                "label": s.label_,
                "start_char": s.start_char,
                "end_char": s.end_char,
            }
            score = self.rounded_score(s)
            if score is not None:
                entity["score"] = score
            reason = reason_for(sentences, s.text)
            if reason is not None:
                entity["reason"] = reason
            entities.append(entity)
        record: Dict[str, Any] = {"entities": entities, "counts": dict(sorted(self.counts.items()))}
        if self.rationales:
            record["rationale"] = "\n\n".join(self.rationales)
        return record


def doc_entities(
    doc: Doc, readings: Sequence[Reading], *, threshold: float, alignment_mode: str, overlaps: str
) -> DocEntities:
    """Place the readings of a doc's chunks on the doc: spans found twice by
    overlapping chunks kept once (with their best score), spans below
    `threshold` and spans that do not align to tokens dropped, overlaps
    resolved by `overlaps` (see `resolve_overlaps`); everything dropped is counted."""
    result = DocEntities()
    char_spans: List[CharSpan] = []
    scores: Dict[CharSpan, float] = {}
    for reading in readings:
        result.counts.update(reading.counts)
        char_spans.extend(reading.spans)
        if reading.rationale:
            result.rationales.append(reading.rationale)
        for span, score in reading.scores.items():
            scores[span] = max(score, scores.get(span, 0.0))
    if len(readings) > 1:
        # Overlapping windows see the same entity twice: keep it once.
        unique = list(dict.fromkeys(char_spans))
        if len(unique) < len(char_spans):
            result.counts["merged_across_chunks"] += len(char_spans) - len(unique)
        char_spans = unique
    for start, end, label in char_spans:
        score = scores.get((start, end, label))
        if score is not None and score < threshold:
            result.counts["dropped_below_threshold"] += 1
            continue
        span = doc.char_span(start, end, label=label, alignment_mode=alignment_mode)
        if span is None or len(span) == 0:
            result.counts["dropped_unaligned"] += 1
            continue
        result.spans.append(span)
        if score is not None:
            result.scores[(span.start_char, span.end_char, label)] = score
    result.kept = resolve_overlaps(result.spans, result.scores, overlaps)
    if len(result.kept) < len(result.spans):
        result.counts["dropped_overlapping"] += len(result.spans) - len(result.kept)
    return result
