"""Reading entity-list output (JSON) and finding the entity strings in the text.

`parse_entity_list` takes a model answer such as
`<think>...</think>{"entities": {"person": ["Obama"]}}` (or the variants models
really write) and returns the rationale and a list of (text, label) pairs.
`find_spans` maps those strings to character spans by in-order search, as
spacy-llm's `find_substrings(..., find_after=...)` does. Nothing here raises
on model output; what was repaired or dropped is counted.
"""

import ast
import json
import re
import warnings
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .labels import LabelMatcher

THINK_RE = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)

TEXT_KEYS = ("text", "name", "entity", "span", "mention", "value")
LABEL_KEYS = ("label", "type", "entity_type", "category", "tag")


def split_rationale(output: str) -> Tuple[str, str]:
    """Split `<think>...</think>` reasoning from the answer that follows it."""
    m = THINK_RE.search(output)
    if m is None:
        if "</think>" in output:
            # The chat template opened <think> in the prompt: only the close is here.
            head, _, tail = output.partition("</think>")
            return head.strip(), tail
        return "", output
    return m.group(1).strip(), output[: m.start()] + output[m.end() :]


# A sentence ends at . ! or ? before whitespace, unless the word the period
# ends is short or dotted ("Mr.", "U.S."): those are mostly abbreviations.
SENTENCE_END_RE = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


def _ends_abbreviation(text: str) -> bool:
    word = text.rsplit(None, 1)[-1] if text.strip() else ""
    return word.endswith(".") and (len(word) <= 3 or "." in word[:-1])


def rationale_sentences(rationale: str) -> List[str]:
    """The rationale cut into sentences (at . ! ? before a space, not after an
    abbreviation, and at line breaks). Linear in its length: the pieces of a
    sentence are joined once, when it ends."""
    sentences: List[str] = []
    pos = 0
    pending: List[str] = []  # the pieces of a sentence that ran past abbreviations
    for m in SENTENCE_END_RE.finditer(rationale):
        piece = rationale[pos : m.start()]
        pos = m.end()
        # (A piece before a space ends in . ! or ?: its last word is its own.)
        if "\n" not in m.group() and _ends_abbreviation(piece):
            pending.append(piece + " ")
            continue
        sentence = ("".join(pending) + piece).strip()
        pending = []
        if sentence:
            sentences.append(sentence)
    last = ("".join(pending) + rationale[pos:]).strip()
    if last:
        sentences.append(last)
    return sentences


def reason_for(sentences: Sequence[str], text: str) -> Optional[str]:
    """The first sentence that mentions `text` as whole words (case-insensitively), if any."""
    words = text.split()
    if not words:
        return None
    pattern = re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)", re.IGNORECASE)
    for sentence in sentences:
        if pattern.search(sentence):
            return sentence
    return None


def _pairs_hook(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """Keep duplicate keys by merging their lists instead of keeping the last
    (in place: the parser's own lists and objects, so an answer that repeats a
    key many times costs its length, not its square)."""
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out and isinstance(out[key], list) and isinstance(value, list):
            out[key].extend(value)
        elif key in out and isinstance(out[key], dict) and isinstance(value, dict):
            merged = out[key]
            for k, v in value.items():
                if isinstance(v, list) and isinstance(merged.get(k), list):
                    merged[k].extend(v)
                else:
                    merged[k] = v
        else:
            out[key] = value
    return out


def _close(text: str) -> Optional[str]:
    """Close the lists and objects a truncated JSON text left open; None when
    it stops inside a string (a half-written entity is not an entity)."""
    stack: List[str] = []
    in_str: Optional[str] = None
    escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == in_str:
                in_str = None
        elif ch in "\"'":
            in_str = ch
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    if in_str:
        return None
    out = re.sub(r"[,:\s]+$", "", text)
    return out + "".join(reversed(stack))


def _truncation_repairs(text: str, tries: int = 4) -> List[str]:
    """Ways to finish a truncated JSON text: close it as it is, then cut back to
    each of its last few commas (dropping a half-written item) and close."""
    repairs = [_close(text)]
    for _ in range(tries):
        cut = text.rfind(",")
        if cut == -1:
            break
        text = text[:cut]
        repairs.append(_close(text))
    return [r for r in repairs if r is not None]


def _load(candidate: str) -> Optional[Any]:
    try:
        return json.loads(candidate, object_pairs_hook=_pairs_hook)
    except (ValueError, RecursionError):
        pass
    try:
        # Single quotes, Python literals (True/None): a Python dict literal.
        # Compiling the answer can warn (invalid escapes, "is" with a literal):
        # a model's answer must not print to the user's stderr.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(candidate)
        return value if isinstance(value, (dict, list)) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _json_candidates(answer: str) -> List[str]:
    fenced = [m.group(1) for m in FENCE_RE.finditer(answer)]
    candidates = []
    for text in fenced + [answer]:
        start = min((i for i in (text.find("{"), text.find("[")) if i != -1), default=-1)
        if start == -1:
            continue
        body = text[start:]
        end = max(body.rfind("}"), body.rfind("]"))
        if end != -1:
            candidates.append(body[: end + 1])
        candidates.append(body)
    return candidates


def parse_json_answer(answer: str, counts: Optional[Counter] = None) -> Optional[Any]:
    """The first JSON value found in the answer, repairing what models get wrong."""
    counts = counts if counts is not None else Counter()
    for candidate in _json_candidates(answer):
        value = _load(candidate)
        if value is not None:
            return value
        for repair in _truncation_repairs(candidate):
            value = _load(repair)
            if value is not None:
                counts["json_repaired"] += 1
                return value
    return None


def _entity_items(value: Any) -> List[Tuple[Any, Any]]:
    """(text, label) pairs from the shapes models use for entity lists."""
    items: List[Tuple[Any, Any]] = []
    if isinstance(value, dict):
        inner = None
        for key in ("entities", "Entities", "entity", "result", "results", "ner"):
            if key in value:
                inner = value[key]
                break
        if inner is None:
            inner = value
        value = inner
    if isinstance(value, dict):
        for label, texts in value.items():
            if isinstance(texts, (list, tuple)):
                items.extend((text, label) for text in texts)
            else:
                items.append((texts, label))
    elif isinstance(value, list):
        for obj in value:
            if isinstance(obj, dict):
                text = next((obj[k] for k in TEXT_KEYS if k in obj), None)
                label = next((obj[k] for k in LABEL_KEYS if k in obj), None)
                if text is None and label is None and len(obj) == 1:
                    # [{"person": "Obama"}]
                    ((label, text),) = obj.items()
                items.append((text, label))
            elif isinstance(obj, (list, tuple)) and len(obj) == 2:
                items.append((obj[0], obj[1]))
            else:
                items.append((obj, None))
    return items


def parse_entity_list(
    output: str, labels: Sequence[str], counts: Optional[Counter] = None
) -> Tuple[str, List[Tuple[str, str]]]:
    """Read the rationale and the (text, label) pairs from a model's answer.

    Labels are matched case-insensitively to the offered labels; entities
    with any other label, or with no usable text, are dropped and counted.
    """
    counts = counts if counts is not None else Counter()
    rationale, answer = split_rationale(output)
    value = parse_json_answer(answer, counts)
    if value is None:
        # No JSON at all: garbage, nothing after the reasoning, or reasoning
        # cut off by the token limit before any answer.
        counts["unparseable"] += 1
        return rationale, []
    match = LabelMatcher(labels)
    entities: List[Tuple[str, str]] = []
    for text, label in _entity_items(value):
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str) or not text.strip():
            counts["entity_without_text"] += 1
            continue
        name = match(label)
        if name is None:
            counts["unknown_label"] += 1
            continue
        if name != label:
            counts["label_respelled"] += 1
        entities.append((text.strip(), name))
    return rationale, entities


def _tolerant_pattern(text: str) -> Optional[re.Pattern]:
    """A pattern that matches `text` with any spacing and punctuation between its
    letter/digit runs, case-insensitively."""
    # Letter/digit runs without "_": the separators between them then match
    # unambiguously (with "_" in both, a run of underscores backtracks
    # exponentially); at most 12 runs, as long entities need no fuzzier match.
    parts = re.findall(r"[^\W_]+", text)
    if not parts or len(parts) > 12:
        return None
    return re.compile(r"[\W_]*".join(re.escape(p) for p in parts), re.IGNORECASE)


def _overlapping(pattern: re.Pattern, text: str, start: int, end: int) -> Iterator[Tuple[int, int]]:
    """Every match of `pattern` in `text[start:end]`, overlapping ones included."""
    pos = start
    while pos < end:
        m = pattern.search(text, pos, end)
        if m is None or m.end() == m.start():
            return
        yield m.start(), m.end()
        pos = m.start() + 1


def find_spans(
    text: str,
    entities: Sequence[Tuple[str, str]],
    on_boundaries: Callable[[int, int], bool],
    region: Tuple[int, int] = (0, -1),
    all_occurrences: bool = False,
    counts: Optional[Counter] = None,
) -> List[Tuple[int, int, str]]:
    """Character spans for entity strings, searched in order of appearance.

    Each label's strings are searched forward from the end of that label's
    previous match (`find_after`); a string found only before that point is
    taken from the start of the region (counted as `out_of_order`). Exact
    matches come first, then case-insensitive ones, then ones tolerant to
    spacing and punctuation. Matches on token boundaries
    (`on_boundaries(start, end)`) are preferred, and among those the first
    that does not overlap a span already placed; a match off the token
    boundaries is counted (`off_token_boundaries`) and left for
    `doc.char_span(..., alignment_mode=...)` to snap. A string that lands on
    a span it already placed (an answer repeating itself) is counted
    (`duplicate_entity`), not placed twice.

    region (Tuple[int, int]): The character range searched (end -1: the end).
    all_occurrences (bool): Place a string at each of its occurrences.
    """
    counts = counts if counts is not None else Counter()
    region_start, region_end = region
    if region_end < 0:
        region_end = len(text)
    placed: List[Tuple[int, int, str]] = []
    alternatives: List[List[Tuple[int, int, Optional[str]]]] = []
    find_after: Dict[str, int] = {}
    # The region's characters covered by a placed span: an overlap test costs the
    # candidate's length, not the number of spans placed.
    taken = bytearray(max(region_end - region_start, 0))

    def occurrences(needle: str, start: int) -> Iterator[Tuple[int, int, Optional[str]]]:
        pos = text.find(needle, start, region_end)
        while pos != -1:
            yield pos, pos + len(needle), None
            pos = text.find(needle, pos + 1, region_end)
        # Case-insensitive matches are searched in the text itself, not in a
        # lower-cased copy: offsets stay exact where a character's lower case
        # has another length ("İ"), and no copy of the doc is made per chunk.
        insensitive = re.compile(re.escape(needle), re.IGNORECASE)
        for m in _overlapping(insensitive, text, start, region_end):
            yield m[0], m[1], "case_insensitive_match"
        pattern = _tolerant_pattern(needle)
        if pattern is not None:
            for m in pattern.finditer(text, start, region_end):
                yield m.start(), m.end(), "tolerant_match"

    def overlaps(s: int, e: int) -> bool:
        return taken.find(1, s - region_start, e - region_start) != -1

    placed_set: set = set()
    for needle, label in entities:
        found: List[Tuple[int, int, Optional[str]]] = []
        after = find_after.get(label, region_start)
        # Every occurrence is wanted, or the search restarts from the region's
        # start when nothing follows the previous match.
        begins = (after, region_start) if after > region_start and not all_occurrences else (region_start,)
        duplicate = False
        for begin in begins:
            candidates = list(dict.fromkeys(occurrences(needle, begin)))
            if not candidates:
                continue
            aligned = [c for c in candidates if on_boundaries(c[0], c[1])]
            if not aligned:
                counts["off_token_boundaries"] += 1
                aligned = candidates[:1]
            if all_occurrences:
                # Every occurrence, nested ones included (doc.ents resolves
                # overlaps later), but only of the best kind of match: every
                # exact occurrence, say, not also the lower-cased ones.
                best = aligned[0][2]
                found = [c for c in dict.fromkeys(aligned) if c[2] == best and (c[0], c[1], label) not in placed_set]
            else:
                choice = next((c for c in aligned if not overlaps(c[0], c[1])), aligned[0])
                found = [choice] if (choice[0], choice[1], label) not in placed_set else []
                if found and begin != after:
                    counts["out_of_order"] += 1
            duplicate = not found
            break
        if not found:
            counts["duplicate_entity" if duplicate else "not_found"] += 1
            continue
        for s, e, kind in found:
            if kind:
                counts[kind] += 1
            placed.append((s, e, label))
            placed_set.add((s, e, label))
            taken[s - region_start : e - region_start] = b"\x01" * (e - s)
            alternatives.append([c for c in aligned if c[2] == kind])
        find_after[label] = max(e for _, e, _ in found)
    if not all_occurrences:
        _move_off_overlaps(placed, alternatives, counts)
    return placed


def _move_off_overlaps(
    placed: List[Tuple[int, int, str]],
    alternatives: List[List[Tuple[int, int, Optional[str]]]],
    counts: Counter,
) -> None:
    """A span placed inside a longer one placed after it (the same string seen
    twice, or nested in another entity) moves to another occurrence of its
    string that overlaps nothing, when there is one (in place)."""
    for i, (s, e, label) in enumerate(placed):
        others = [p for j, p in enumerate(placed) if j != i]
        if not any(s < pe and ps < e and pe - ps >= e - s for ps, pe, _ in others):
            continue
        for cs, ce, _ in alternatives[i]:
            if not any(cs < pe and ps < ce for ps, pe, _ in others):
                placed[i] = (cs, ce, label)
                counts["moved_off_overlap"] += 1
                break
