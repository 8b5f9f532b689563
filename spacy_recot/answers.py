"""A model's answer as backends return it: the text, plus where each generated
token lies in it and its log-probability (what the entity scores are made of:
`tasks.confidence`). Under constrained decoding the probabilities are those of
the distribution the grammar leaves (the masked logits, renormalized), which is
what the model chose from. Token scores from a server or a cache file are
untrusted: `checked_token_scores` is their one check.
"""

from typing import Any, List, Optional, Sequence, Tuple

# (start_char, end_char, logprob) of each generated token in the answer text.
TokenScore = Tuple[int, int, float]


class Answer(str):
    """A model's answer text that also carries its tokens' log-probabilities."""

    token_scores: Tuple[TokenScore, ...] = ()
    # False for an answer that is read but must not be cached (one a server cut
    # at the runaway cap: its ending is not the model's own).
    cacheable: bool = True

    @classmethod
    def scored(cls, text: str, token_scores: Sequence[TokenScore]) -> "Answer":
        answer = cls(text)
        answer.token_scores = tuple(token_scores)
        return answer


def checked_token_scores(length: int, token_scores: Any) -> Optional[Tuple[TokenScore, ...]]:
    """`token_scores` for an answer of `length` characters as a tuple, or None
    when they are not what a backend writes: (start, end, logprob) triples with
    0 <= start <= end <= length, starts and ends in order, and log-probabilities
    that are numbers at most 0 (-inf too: probability 0; never NaN), so that
    every score is a probability in [0, 1]. Scores from a server or a cache
    file are untrusted; this is their one check."""
    if not isinstance(token_scores, (list, tuple)):
        return None
    checked: List[TokenScore] = []
    last_start = last_end = 0
    for item in token_scores:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            return None
        start, end, logprob = item
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            return None
        if isinstance(logprob, bool) or not isinstance(logprob, (int, float)) or not logprob <= 0.0:
            return None
        if not (last_start <= start <= end <= length and last_end <= end):
            return None
        last_start, last_end = start, end
        checked.append((start, end, float(logprob)))
    return tuple(checked)
