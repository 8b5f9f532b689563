"""Candidate tokens for the greedy loop to check in the same pass: prompt lookup."""

from typing import List, Sequence


def lookup_draft(context: Sequence[int], n: int, longest_ngram: int = 3) -> List[int]:
    """Up to `n` tokens guessed to follow `context`: what followed the latest
    earlier occurrence of its last `longest_ngram` tokens (or fewer: down to 1).
    Prompt lookup decoding (Saxena 2023, `prompt_lookup_num_tokens` in
    transformers), which `generate` cannot combine with our loop."""
    end = len(context)
    for size in range(min(longest_ngram, end - 1), 0, -1):
        tail = list(context[end - size :])
        first = tail[0]
        for start in range(end - size - 1, -1, -1):
            if context[start] == first and list(context[start : start + size]) == tail:
                return list(context[start + size : start + size + n])
    return []
