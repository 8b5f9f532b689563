"""Logits processors of our own: the overflow check (NaN or +inf scores stop
generation with an error that says what to do) and the recorder of each chosen
token's log-probability (what entity scores are made of)."""

from typing import Any, List


def overflow_error(name_or_path: str, dtype: Any) -> FloatingPointError:
    """The error for a model whose activations overflowed its precision."""
    return FloatingPointError(
        f"'{name_or_path}' computed non-finite values in {dtype} "
        "(its activations overflow it): set model.dtype to float32 or bfloat16"
    )


class OverflowCheck:
    """A logits processor, placed before any of ours, that stops `generate` with
    `overflow_error` on NaN or +inf scores (-inf is how processors forbid a
    token), as the greedy loop does on any non-finite output."""

    def __init__(self, name_or_path: str, dtype: Any):
        self.name_or_path, self.dtype = name_or_path, dtype

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if torch.isnan(scores).any() or torch.isposinf(scores).any():
            raise overflow_error(self.name_or_path, self.dtype)
        return scores


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
