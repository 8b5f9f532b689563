"""The reasoning a model writes before its answer: one splitter of the
`<think>...</think>` block for every reader of answers (the tasks, the GRPO
rewards, the teacher's chains), and the rationale cut into sentences so that
each entity can be given the sentence that explains it."""

import re
from typing import List, Optional, Sequence, Tuple

THINK_RE = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)
THINK_CLOSE = "</think>"


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


def answer_after_reasoning(output: str) -> str:
    """What follows the reasoning (all of `output` when there is none)."""
    return split_rationale(output)[1]


def reasoning_end(output: str) -> int:
    """Where the answer after the reasoning starts: just past `</think>`, or 0."""
    end = output.find(THINK_CLOSE)
    return end + len(THINK_CLOSE) if end != -1 else 0
