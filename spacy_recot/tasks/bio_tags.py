"""Reading GNER-format output (`word(B-type) word(O) ...`) back onto the input words.

The model's text is untrusted: nothing here raises on it. `parse_bio` pulls
(word, tag) pairs out of the text, `align_tags` carries the tags over to the
input words with GNER's hierarchical matching, and `tags_to_spans` turns a
tag sequence into word spans. Every repair is counted in a `Counter`.
"""

import re
import unicodedata
from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from ..labels import LabelMatcher

# A tag in parentheses: (O), (B-anything), (I-anything); labels may hold spaces
# ("programming language") but not parentheses or line breaks.
TAG_PATTERN = r"\((?:[BI]-[^()\n]*|O)\)"
TAG_RE = re.compile(TAG_PATTERN)
# A tag as a CoNLL file's column holds it: O, B-type, I-type.
COLUMN_TAG_RE = re.compile(r"^(O|[BI]-\S.*)$")


def parse_bio(text: str, counts: Optional[Counter] = None) -> Tuple[List[str], List[str]]:
    """Split GNER-format output into words and raw tags.

    Like GNER's `extract`, the words are whatever stands between two tags, so
    missing spaces (`forces(O).(O)`) and words that contain parentheses
    (`(1999)(O)`) are read right. A tag written as a word (`(O)(O)`) is read as
    a word. Untagged text between tags becomes untagged words (tag "O"), and
    text after the last tag (truncated output) is counted and dropped.
    """
    counts = counts if counts is not None else Counter()
    words: List[str] = []
    tags: List[str] = []
    matches = list(TAG_RE.finditer(text))
    prev = 0
    i = 0
    while i < len(matches):
        m = matches[i]
        segment = text[prev : m.start()]
        if not segment.strip():
            nxt = matches[i + 1] if i + 1 < len(matches) else None
            if nxt is not None and nxt.start() == m.end():
                # "(O)(O)": the first tag-shaped string is the word itself.
                words.append(m.group(0))
                tags.append(nxt.group(0)[1:-1].strip())
                prev = nxt.end()
                i += 2
                continue
            counts["tag_without_word"] += 1
            prev = m.end()
            i += 1
            continue
        pieces = segment.split()
        if len(pieces) > 1:
            # Several words before one tag: only the last one was tagged.
            counts["untagged_words"] += len(pieces) - 1
            for piece in pieces[:-1]:
                words.append(piece)
                tags.append("O")
        words.append(pieces[-1])
        tags.append(m.group(0)[1:-1].strip())
        prev = m.end()
        i += 1
    tail = text[prev:].split()
    if tail:
        counts["untagged_tail_words"] += len(tail)
    return words, tags


def normalize_tags(tags: Sequence[str], labels: Sequence[str], counts: Optional[Counter] = None) -> List[str]:
    """Map raw tags onto the offered labels; anything else becomes "O".

    Labels match case-insensitively and with runs of whitespace folded, and
    are written back in the offered spelling. An `I-x` that does not continue
    an entity of type x becomes `B-x` (GNER's scorer starts a new entity there
    too).
    """
    counts = counts if counts is not None else Counter()
    match = LabelMatcher(labels)
    out: List[str] = []
    for tag in tags:
        prefix, _, name = tag.partition("-")
        label = match(name) if prefix in ("B", "I") else None
        if tag != "O" and label is None:
            counts["unknown_label"] += 1
        elif label is not None and label != name:
            counts["label_respelled"] += 1
        out.append(f"{prefix}-{label}" if label is not None else "O")
    return repair_orphans(out, counts, "orphan_inside")


def repair_orphans(tags: Sequence[str], counts: Counter, key: str) -> List[str]:
    """Turn each `I-x` that does not continue an entity of type x into `B-x`."""
    out: List[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            counts[key] += 1
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def word_key(word: str) -> str:
    """The comparison key of a word: NFKC-normalized, lower-cased, stripped."""
    return unicodedata.normalize("NFKC", word).lower().strip()


def _loose_key(word: str) -> str:
    """Letters and digits only: survives lost punctuation and spacing."""
    return "".join(ch for ch in word_key(word) if ch.isalnum())


def contains_in_order(raw: Sequence[str], pred: Sequence[str]) -> Optional[List[int]]:
    """Greedy scan: if `pred` is an in-order subsequence of `raw`, the match
    index of each raw word (-1 where unmatched), else None."""
    match = [-1] * len(raw)
    j = 0
    if not pred:
        return match
    for i, word in enumerate(raw):
        if word == pred[j]:
            match[i] = j
            j += 1
            if j == len(pred):
                return match
    return None


def lcs_match(raw: Sequence[str], pred: Sequence[str]) -> List[int]:
    """Longest common subsequence of two word lists, as match indices into `pred`.

    As in GNER, the LCS is reduced to a longest strictly increasing
    subsequence over the positions in `pred` of each raw word (listed in
    decreasing order per word, so that one raw word takes at most one), solved
    by patience sorting in O(k log k) for k candidate pairs.
    """
    positions: Dict[str, List[int]] = defaultdict(list)
    for j in range(len(pred) - 1, -1, -1):
        positions[pred[j]].append(j)
    seq: List[Tuple[int, int]] = []  # (raw index, pred index)
    for i, word in enumerate(raw):
        for j in positions.get(word, ()):
            seq.append((i, j))
    tails: List[int] = []  # smallest pred index ending an increasing run of each length
    tail_idx: List[int] = []  # index into seq of that element
    parent = [-1] * len(seq)
    for k, (_, j) in enumerate(seq):
        pos = bisect_left(tails, j)
        if pos == len(tails):
            tails.append(j)
            tail_idx.append(k)
        else:
            tails[pos] = j
            tail_idx[pos] = k
        parent[k] = tail_idx[pos - 1] if pos > 0 else -1
    match = [-1] * len(raw)
    k = tail_idx[-1] if tail_idx else -1
    while k != -1:
        i, j = seq[k]
        match[i] = j
        k = parent[k]
    return match


def align_tags(
    raw_words: Sequence[str],
    pred_words: Sequence[str],
    pred_tags: Sequence[str],
    counts: Optional[Counter] = None,
) -> List[str]:
    """Carry predicted tags over to the input words (GNER's hierarchical matching).

    1. equal word lists (compared by `word_key`): tags as they are;
    2. predicted words an in-order subsequence of the input: carry tags over;
    3. otherwise longest common subsequence.
    Input words left unmatched get "O". After step 3, unmatched words that sit
    in gaps of equal length between two matched anchors, or that agree on
    letters and digits alone, are paired too (a repair, counted): that is what
    a model that re-spells a word (lost accents, dropped punctuation) needs.
    """
    counts = counts if counts is not None else Counter()
    raw = [word_key(w) for w in raw_words]
    pred = [word_key(w) for w in pred_words]
    if raw == pred:
        return list(pred_tags)
    match = contains_in_order(raw, pred)
    if match is not None:
        counts["aligned_subsequence"] += 1
    else:
        counts["aligned_lcs"] += 1
        match = lcs_match(raw, pred)
        _pair_gaps(raw, pred, match, counts)
    unmatched = sum(1 for m in match if m == -1)
    if unmatched:
        counts["input_words_unmatched"] += unmatched
    extra = len(pred) - (len(raw) - unmatched)
    if extra > 0:
        counts["output_words_unmatched"] += extra
    return [pred_tags[m] if m != -1 else "O" for m in match]


def _pair_gaps(raw: Sequence[str], pred: Sequence[str], match: List[int], counts: Counter) -> None:
    """Pair unmatched words between consecutive anchors of an LCS match (in place)."""
    anchors = [(-1, -1)] + [(i, m) for i, m in enumerate(match) if m != -1]
    anchors.append((len(raw), len(pred)))
    for (i0, j0), (i1, j1) in zip(anchors, anchors[1:]):
        raw_gap = list(range(i0 + 1, i1))
        pred_gap = list(range(j0 + 1, j1))
        if not raw_gap or not pred_gap:
            continue
        if len(raw_gap) == len(pred_gap):
            for i, j in zip(raw_gap, pred_gap):
                match[i] = j
            counts["words_paired_by_position"] += len(raw_gap)
            continue
        # Different lengths: match letters and digits alone, in order.
        loose_raw = [_loose_key(raw[i]) or None for i in raw_gap]
        loose_pred = [_loose_key(pred[j]) or "" for j in pred_gap]
        for gi, gj in enumerate(lcs_match(loose_raw, loose_pred)):
            if gj != -1:
                match[raw_gap[gi]] = pred_gap[gj]
                counts["words_paired_loosely"] += 1


def tags_to_spans(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """Word spans (start, end_exclusive, label) from clean BIO tags."""
    spans: List[Tuple[int, int, str]] = []
    start: Optional[int] = None
    label: Optional[str] = None
    for i, tag in enumerate(list(tags) + ["O"]):
        if tag == "O" or tag.startswith("B-") or (tag.startswith("I-") and tag[2:] != label):
            if start is not None and label is not None:
                spans.append((start, i, label))
            start, label = (i, tag[2:]) if tag != "O" else (None, None)
    return spans
