"""Confidence per entity from the model's own token probabilities.

A backend that can, returns each answer as an `Answer`: the text, plus the
log-probability of every generated token and where the token lies in the
text. Under constrained decoding the probabilities are those of the
distribution the grammar leaves (the masked logits, renormalized), which is
what the model chose from. An entity's score is the geometric mean of the
probabilities of the tokens that spell it in the answer: probability-like, in
(0, 1], and comparable across entities of different lengths.
"""

import bisect
import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


class TokenLogprobRecorder:
    """A logits processor, placed last, that records the log-probability of the
    token chosen at each step: at step t it keeps the log-softmax of the scores,
    and at step t + 1 reads off the token that was appended. Only one
    [batch, vocab] tensor is kept, whatever the answer's length."""

    def __init__(self) -> None:
        self._previous: Any = None
        self.steps: List[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._previous is not None:
            self.steps.append(self._previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self._previous = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, sequences: Any) -> List[List[float]]:
        """The chosen tokens' log-probabilities per row, given the final sequences."""
        if self._previous is not None:
            self.steps.append(self._previous.gather(1, sequences[:, -1:]).squeeze(1))
            self._previous = None
        if not self.steps:
            return [[] for _ in range(sequences.shape[0])]
        import torch

        return torch.stack(self.steps, dim=1).tolist()


def token_offsets(tokenizer: Any, ids: Sequence[int], window: int = 32) -> List[Tuple[int, int]]:
    """Where each token lies in `tokenizer.decode(ids)`: decoded incrementally from
    a checkpoint that moves every `window` tokens (so the cost stays linear),
    waiting out tokens that end inside a multi-byte character."""
    offsets: List[Tuple[int, int]] = []
    base_index, base_len, prev_end = 0, 0, 0
    for k in range(len(ids)):
        text = tokenizer.decode(ids[base_index : k + 1], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd"):
            offsets.append((prev_end, prev_end))  # part of a character: placed with the token that completes it
            continue
        end = base_len + len(text)
        offsets.append((prev_end, end))
        prev_end = end
        if k + 1 - base_index >= window:
            base_index, base_len = k + 1, end
    return offsets


def scored_answer(tokenizer: Any, ids: Sequence[int], logprobs: Sequence[float], stop_ids: Sequence[int]) -> Answer:
    """An `Answer` for one row of generated ids (cut at the first stop token)."""
    n = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    ids, logprobs = list(ids[:n]), list(logprobs[:n])
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    offsets = token_offsets(tokenizer, ids)
    return Answer.scored(text, [(s, e, lp) for (s, e), lp in zip(offsets, logprobs) if e > s or lp < 0])


class _TokenIndex:
    """An answer's token scores, searchable by character span in logarithmic
    time (their starts and ends are in order, as every backend writes them)."""

    def __init__(self, token_scores: Sequence[TokenScore]):
        self.starts = [s for s, _, _ in token_scores]
        self.ends = [e for _, e, _ in token_scores]
        self.logprobs = [lp for _, _, lp in token_scores]

    def score(self, start: int, end: int) -> Optional[float]:
        """The geometric mean probability of the tokens overlapping [start, end)."""
        first = bisect.bisect_right(self.ends, start)  # the first token ending after `start`
        last = bisect.bisect_left(self.starts, end)  # past the last token starting before `end`
        logprobs = self.logprobs[first:last]
        if not logprobs:
            return None
        return math.exp(sum(logprobs) / len(logprobs))


def span_score(answer: Any, start: int, end: int) -> Optional[float]:
    """The geometric mean probability of the tokens overlapping answer[start:end]."""
    return _TokenIndex(getattr(answer, "token_scores", ())).score(start, end)


def entity_scores(answer: Any, entities: Sequence[Tuple[str, str]], start: int = 0) -> Dict[Tuple[str, str], float]:
    """A score for each (text, label) an entity-list answer wrote, found as a JSON
    string in the answer in order (after `start`, say the end of the reasoning);
    keyed by (lower-cased text, label). Empty when the answer has no scores."""
    if not getattr(answer, "token_scores", ()):
        return {}
    index = _TokenIndex(answer.token_scores)  # once per answer, not per entity
    scores: Dict[Tuple[str, str], float] = {}
    pos = start
    for text, label in entities:
        for written in (json.dumps(text, ensure_ascii=False), json.dumps(text)):
            found = answer.find(written, pos)
            if found != -1:
                score = index.score(found + 1, found + len(written) - 1)
                if score is not None:
                    key = (text.lower(), label)
                    scores[key] = max(score, scores.get(key, 0.0))
                pos = found + len(written)
                break
    return scores
