"""The unit of work sent to a model: a run of a doc's words with their offsets.

A doc longer than the model's input limit is cut into several chunks, at
sentence boundaries when the doc has them and at word windows otherwise. Every
chunk keeps the absolute character offsets of its words, so whatever the model
says about a chunk maps straight back onto the original doc.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from spacy.tokens import Doc


@dataclass
class Chunk:
    """A run of words from one text, with absolute character offsets.

    text (str): The whole text the words come from (the doc's text).
    words (List[str]): The words shown to the model.
    offsets (List[Tuple[int, int]]): Start and end character of each word in `text`.
    """

    text: str
    words: List[str]
    offsets: List[Tuple[int, int]]

    @classmethod
    def from_words(cls, words: Sequence[str]) -> "Chunk":
        """Build a chunk whose text is the words joined by single spaces."""
        offsets = []
        pos = 0
        for word in words:
            offsets.append((pos, pos + len(word)))
            pos += len(word) + 1
        return cls(text=" ".join(words), words=list(words), offsets=offsets)

    @classmethod
    def from_text(cls, text: str) -> "Chunk":
        """Build a chunk of a text's whitespace-separated words, with their offsets."""
        matches = list(re.finditer(r"\S+", text))
        return cls(text=text, words=[m.group() for m in matches], offsets=[m.span() for m in matches])

    @property
    def start_char(self) -> int:
        return self.offsets[0][0] if self.offsets else 0

    @property
    def end_char(self) -> int:
        return self.offsets[-1][1] if self.offsets else 0

    def slice_text(self, start_word: int, end_word: int) -> str:
        """The original text covering words [start_word, end_word)."""
        return self.text[self.offsets[start_word][0] : self.offsets[end_word - 1][1]]


@dataclass
class Request:
    """What a backend is asked: a prompt, and what its answer may be.

    prompt (str): The model input (the backend wraps it in its chat template).
    chunk (Chunk): The words the prompt was made from: the component reads
        the answer back onto them (and the oracle backend looks up the gold
        answer by them); a model backend never reads it.
    schema (List[str]): The labels as the prompt shows them.
    answer_budget (Optional[int]): What the longest valid answer costs in the
        model's tokens, reasoning aside (None when unknown): a backend may stop
        an answer that runs far past it.
    constraint: The valid answers, as the task describes them for a backend
        that enforces them (`tasks.grammar.EntityListConstraint`,
        `tasks.bio.BIOConstraint`); None when there is none.
    """

    prompt: str
    chunk: Chunk
    schema: List[str] = field(default_factory=list)
    answer_budget: Optional[int] = None
    constraint: Any = None


class Limits(NamedTuple):
    """What fits a model, the same for every doc of a task and label set.

    room_in (Optional[int]): Tokens left for the words in the prompt (None: no limit).
    room_out (Optional[int]): Tokens left for the words in the answer (None: no limit).
    per_word (int): What the answer adds to each word (a tag, quotes).
    fixed (int): What the answer costs besides its words.
    """

    room_in: Optional[int]
    room_out: Optional[int]
    per_word: int
    fixed: int

    def answer_budget(self, chunk: "Chunk", count_tokens: Callable[[Sequence[str]], List[int]]) -> Optional[int]:
        """The longest valid answer for `chunk`, reasoning aside: the fixed part,
        then every word with what the format adds to it."""
        if self.room_out is None:
            return None
        return self.fixed + sum(max(c, 1) + self.per_word for c in count_tokens(chunk.words))


def fitting_chunks(
    doc: Doc, limits: Limits, count_tokens: Callable[[Sequence[str]], List[int]], overlap: int
) -> List["Chunk"]:
    """The doc's words, split into chunks that fit `limits` (none for a doc
    without words), overlapping by `overlap` words where a sentence must be cut."""
    chunk = doc_words(doc)
    if not chunk.words or (limits.room_in is None and limits.room_out is None):
        return [chunk] if chunk.words else []
    word_costs = [max(c, 1) for c in count_tokens(chunk.words)]
    # A word's cost is the share of the tightest limit it uses up; a chunk
    # fits when its costs sum to at most 1.
    costs = [
        max(
            w / limits.room_in if limits.room_in else 0.0,
            (w + limits.per_word) / limits.room_out if limits.room_out else 0.0,
        )
        for w in word_costs
    ]
    if sum(costs) <= 1.0:
        return [chunk]
    return split_chunk(chunk, costs, 1.0, sentence_starts(doc, chunk), overlap=overlap)


def doc_words(doc: Doc) -> Chunk:
    """All non-whitespace tokens of a doc as one chunk."""
    words = []
    offsets = []
    for token in doc:
        if token.is_space:
            continue
        words.append(token.text)
        offsets.append((token.idx, token.idx + len(token.text)))
    return Chunk(text=doc.text, words=words, offsets=offsets)


def split_chunk(
    chunk: Chunk,
    word_costs: Sequence[float],
    budget: float,
    boundaries: Optional[Iterable[int]] = None,
    overlap: int = 0,
) -> List[Chunk]:
    """Cut a chunk into pieces whose summed word costs fit into `budget`.

    Pieces are packed greedily from whole units: sentences when `boundaries`
    (word indices where a sentence starts) are given, else single words. A
    run of words with no sentence boundary (the whole chunk when there are
    none, or a sentence too long on its own) is cut into word windows that
    share `overlap` words with the previous window, so that an entity on a
    cut is seen whole in one of them.

    word_costs (Sequence[float]): The cost (e.g. subword tokens) of each word.
    budget (float): The largest summed cost of a piece; at least one word goes
        into every piece, so a single over-long word still gets a chunk.
    overlap (int): Words shared by consecutive windows (at most half a window).
    """
    n = len(chunk.words)
    if n == 0:
        return []
    starts = sorted(set(b for b in (boundaries or []) if 0 < b < n))
    pieces: List[Tuple[int, int]] = []
    cur_s, cur_e, cost = 0, 0, 0.0
    for s, e in zip([0] + starts, starts + [n]):
        unit_cost = sum(word_costs[s:e])
        if unit_cost > budget or not starts:
            # No sentence boundary inside: word windows (flushing what was packed).
            if cur_e > cur_s:
                pieces.append((cur_s, cur_e))
            pieces.extend(_windows(word_costs, s, e, budget, overlap))
            cur_s, cur_e, cost = e, e, 0.0
            continue
        if cur_e > cur_s and cost + unit_cost > budget:
            pieces.append((cur_s, cur_e))
            cur_s, cost = s, 0.0
        cur_e = e
        cost += unit_cost
    if cur_e > cur_s:
        pieces.append((cur_s, cur_e))
    return [Chunk(text=chunk.text, words=chunk.words[s:e], offsets=chunk.offsets[s:e]) for s, e in pieces]


def _windows(word_costs: Sequence[float], start: int, end: int, budget: float, overlap: int) -> List[Tuple[int, int]]:
    """Windows over words [start, end) that fit `budget`, each sharing up to
    `overlap` words (and at most half of itself) with the one before."""
    windows: List[Tuple[int, int]] = []
    s = start
    while s < end:
        e, cost = s, 0.0
        while e < end and (e == s or cost + word_costs[e] <= budget):
            cost += word_costs[e]
            e += 1
        windows.append((s, e))
        if e >= end:
            break
        # Share as many words as fit beside the next one, so each window
        # reaches past the one before.
        k = min(overlap, (e - s) // 2)
        while k > 0 and sum(word_costs[e - k : e]) + word_costs[e] > budget:
            k -= 1
        s = e - k
    return windows


def sentence_starts(doc: Doc, chunk: Chunk) -> Optional[List[int]]:
    """Word indices (into `chunk`) where a sentence of `doc` starts, if known."""
    if not (doc.has_annotation("SENT_START") or doc.has_annotation("DEP")):
        return None
    # A sentence may open with whitespace tokens ("\n\n"), which are not words:
    # its start is its first word's.
    char_starts = {next((t.idx for t in sent if not t.is_space), sent.start_char) for sent in doc.sents}
    return [i for i, (start, _) in enumerate(chunk.offsets) if start in char_starts]
