"""Reading a model's answer: one public reader per output format.

A reader is pure: given a chunk (its words and their character offsets in the
doc's text), the answer text and the offered labels, it returns labelled
character spans, the rationale the model wrote and the counts of what it had
to repair or drop. The component, `evaluate`, training's dev scorer and the
GRPO rewards all read answers through `read_answer`, so an answer means the
same thing everywhere. A model's answer is untrusted input: a reader never
raises on it, never returns a span outside the chunk, and takes time linear in
its length (a server may ignore max_tokens): what an answer says past
`item_limit(chunk)` entities or words is dropped and counted.

    >>> chunk = Chunk.from_words(["Barack", "Obama", "visited", "Paris", "."])
    >>> read_answer("bio", chunk, "Barack(B-person) Obama(I-person) visited(O) Paris(B-location) .(O)",
    ...             ["person", "location"]).spans
    [(0, 12, 'person'), (21, 26, 'location')]
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .bio import align_tags, normalize_tags, parse_bio, tags_to_spans
from .chunks import Chunk
from .entities import find_spans, parse_entity_list

# (start_char, end_char, label): offsets into the chunk's text (the doc's text).
CharSpan = Tuple[int, int, str]


@dataclass
class Reading:
    """What an answer says about a chunk.

    spans (List[CharSpan]): Labelled character spans, offered labels only, in
        the order the answer gives them; they may overlap (the caller resolves).
    rationale (str): The text of the `<think>...</think>` block, if any.
    entities (List[Tuple[str, str]]): Entity-list answers: the (text, label)
        pairs as written, before they were searched in the text.
    counts (Counter): What was repaired or dropped, by kind.
    """

    spans: List[CharSpan] = field(default_factory=list)
    rationale: str = ""
    entities: List[Tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)


def read_bio(
    chunk: Chunk,
    answer: str,
    labels: Sequence[str],
    *,
    written_words: Optional[Sequence[str]] = None,
) -> Reading:
    """Read GNER-format output (`word(B-type) word(O) ...`).

    written_words (Optional[Sequence[str]]): The chunk's words as the model can
        write them back (a T5 tokenizer loses some characters); default: the
        words themselves.
    """
    counts: Counter = Counter()
    words, raw_tags = parse_bio(answer, counts)
    limit = item_limit(chunk)
    if len(words) > limit:
        counts["words_cut"] += len(words) - limit
        words, raw_tags = words[:limit], raw_tags[:limit]
    reference = list(written_words) if written_words is not None else chunk.words
    tags = align_tags(reference, words, raw_tags, counts)
    tags = normalize_tags(tags, labels, counts)
    spans = [(chunk.offsets[s][0], chunk.offsets[e - 1][1], label) for s, e, label in tags_to_spans(tags)]
    return Reading(spans=spans, counts=counts)


def read_entities(
    chunk: Chunk,
    answer: str,
    labels: Sequence[str],
    *,
    all_occurrences: bool = False,
) -> Reading:
    """Read an entity-list answer (`<think>...</think>` then JSON) and find each
    entity string in the chunk's text, in order of appearance.

    all_occurrences (bool): Place a string at every occurrence in the chunk.
    """
    counts: Counter = Counter()
    rationale, items = parse_entity_list(answer, labels, counts)
    limit = item_limit(chunk)
    if len(items) > limit:
        counts["entities_cut"] += len(items) - limit
        items = items[:limit]
    starts = {s for s, _ in chunk.offsets}
    ends = {e for _, e in chunk.offsets}
    spans = find_spans(
        chunk.text,
        items,
        lambda s, e: s in starts and e in ends,
        region=(chunk.start_char, chunk.end_char),
        all_occurrences=all_occurrences,
        counts=counts,
    )
    return Reading(spans=spans, rationale=rationale, entities=items, counts=counts)


def item_limit(chunk: Chunk) -> int:
    """The most entities (entity-list output) or words (BIO output) read from an
    answer about `chunk`: twice its words plus 16. A valid answer writes each
    word, or names each mention, once; the room is for re-split words and a
    mention under two labels. Past it an answer only repeats itself, and the
    work of placing it would grow with its length times the chunk's."""
    return 2 * len(chunk.words) + 16


Reader = Callable[..., Reading]
READERS: Dict[str, Reader] = {"bio": read_bio, "entities": read_entities}
OUTPUT_FORMATS = tuple(READERS)


def read_answer(output_format: str, chunk: Chunk, answer: str, labels: Sequence[str], **options) -> Reading:
    """Read `answer` with the reader of `output_format` ("bio" or "entities").

    options: the reader's keyword options (`written_words` for "bio",
        `all_occurrences` for "entities"); options of the other format are
        ignored, so callers need not branch on the format.
    """
    if output_format not in READERS:
        raise ValueError(f"Unknown output format {output_format!r}: use one of {list(OUTPUT_FORMATS)}")
    accepted = {"bio": ("written_words",), "entities": ("all_occurrences",)}[output_format]
    return READERS[output_format](chunk, answer, labels, **{k: v for k, v in options.items() if k in accepted})
