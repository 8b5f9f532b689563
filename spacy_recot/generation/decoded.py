"""Generated token ids as the answer text, with each token's place in it and
its log-probability (`answers.Answer`)."""

from typing import Any, List, Sequence, Tuple

from ..answers import Answer


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
