"""When an answer stops: its runaway cap (`answer_cap`), for the greedy loop
and, as a stopping criterion, for transformers' `generate`."""

from typing import Any, Optional, Sequence


def answer_cap(budget: Optional[int]) -> Optional[int]:
    """The most tokens an answer without reasoning may take: twice its budget
    plus 16, room for the indented JSON models copy from the prompt, none for an
    answer that repeats itself until max_new_tokens (it holds up its batch, or
    a server's slot). None when the budget is unknown."""
    return None if budget is None else 2 * budget + 16


class AnswerCap:
    """Each answer's cap of new tokens (None: no cap), which does not apply to
    an answer that opened with a `<think>` block (no budget knows its length).
    Used by the greedy loop (`reached`) and, as a stopping criterion, by
    `generate`, where a row that ends early is padded while the batch goes on."""

    def __init__(self, caps: Sequence[Optional[int]], tokenizer: Any, prompt_length: int = 0):
        self.caps = list(caps)
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.thinking = [False] * len(self.caps)

    def reached(self, row: int, new_ids: Sequence[int]) -> bool:
        """Whether answer `row`, with these new tokens so far, is at its cap."""
        n = len(new_ids)
        if n <= 8:  # how the answer opens is known after a few tokens
            self.thinking[row] = self.tokenizer.decode(new_ids).lstrip().startswith("<think")
        cap = self.caps[row]
        return cap is not None and n >= cap and not self.thinking[row]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        rows = input_ids[:, self.prompt_length :].tolist()
        return torch.tensor([self.reached(r, ids) for r, ids in enumerate(rows)], device=input_ids.device)
