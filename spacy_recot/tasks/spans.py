"""Finding entity strings in the text: in order of appearance, as spacy-llm's
`find_substrings(..., find_after=...)` does, then case-insensitively, then
tolerant to spacing and punctuation; preferring token boundaries and spans that
overlap nothing placed yet. Linear in the answer (a string repeated a thousand
times costs a thousand searches, not a million comparisons); counts what it
could not place exactly."""

import re
from collections import Counter
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple


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
