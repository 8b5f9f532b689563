"""The unit of work sent to a model: a run of a doc's words with their offsets.

A doc longer than the model's input limit is cut into several chunks, at
sentence boundaries when the doc has them and at word windows otherwise. Every
chunk keeps the absolute character offsets of its words, so whatever the model
says about a chunk maps straight back onto the original doc.
"""
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

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
    """What a backend is asked: a prompt, and the chunk it was made from.

    Model backends only read `prompt`; the oracle backend reads the chunk to
    look up the gold answer.
    """

    prompt: str
    chunk: Chunk
    labels: List[str] = field(default_factory=list)


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
) -> List[Chunk]:
    """Cut a chunk into pieces whose summed word costs fit into `budget`.

    Pieces are packed greedily from whole units: sentences when `boundaries`
    (word indices where a sentence starts) are given, else single words. A
    sentence that is too long on its own is cut into word windows.

    word_costs (Sequence[float]): The cost (e.g. subword tokens) of each word.
    budget (float): The largest summed cost of a piece; at least one word goes
        into every piece, so a single over-long word still gets a chunk.
    """
    n = len(chunk.words)
    if n == 0:
        return []
    starts = sorted(set(b for b in (boundaries or []) if 0 < b < n))
    units: List[Tuple[int, int]] = []
    prev = 0
    for b in starts + [n]:
        units.append((prev, b))
        prev = b
    # Cut units that are too long on their own into word windows.
    fine_units: List[Tuple[int, int]] = []
    for s, e in units:
        if sum(word_costs[s:e]) <= budget:
            fine_units.append((s, e))
            continue
        w_start = s
        cost = 0.0
        for i in range(s, e):
            if cost + word_costs[i] > budget and i > w_start:
                fine_units.append((w_start, i))
                w_start, cost = i, 0.0
            cost += word_costs[i]
        fine_units.append((w_start, e))
    pieces: List[Tuple[int, int]] = []
    cur_s, cur_e, cost = fine_units[0][0], fine_units[0][0], 0.0
    for s, e in fine_units:
        unit_cost = sum(word_costs[s:e])
        if cur_e > cur_s and cost + unit_cost > budget:
            pieces.append((cur_s, cur_e))
            cur_s, cost = s, 0.0
        cur_e = e
        cost += unit_cost
    pieces.append((cur_s, cur_e))
    return [
        Chunk(text=chunk.text, words=chunk.words[s:e], offsets=chunk.offsets[s:e])
        for s, e in pieces
    ]


def sentence_starts(doc: Doc, chunk: Chunk) -> Optional[List[int]]:
    """Word indices (into `chunk`) where a sentence of `doc` starts, if known."""
    if not (doc.has_annotation("SENT_START") or doc.has_annotation("DEP")):
        return None
    char_starts = {sent.start_char for sent in doc.sents}
    return [i for i, (start, _) in enumerate(chunk.offsets) if start in char_starts]

