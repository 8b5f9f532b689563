"""The tokens every prompt of a batch starts with (the instruction and the
labels), computed once and reused: for every prompt of the batch, and for the
next batches that start the same way (prompts differ only in their text at
the end)."""

import copy
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple


class SharedPrefixCache:
    """The key-value cache of the last shared beginning seen, for one model.

    min_length (int): Shorter shared beginnings are not worth a cache.
    """

    def __init__(self, min_length: int = 16):
        self.min_length = min_length
        self.tokens: Tuple[int, ...] = ()
        self.cache: Any = None

    def clear(self) -> None:
        self.tokens, self.cache = (), None

    def prefix(self, model: Any, ids: List[List[int]]) -> List[int]:
        """The tokens all prompts start with (at least `min_length`, and short of
        every prompt's end), their cache built or reused; [] if none."""
        import torch

        if self.cache is not None:
            known = list(self.tokens)
            if all(len(row) > len(known) and row[: len(known)] == known for row in ids):
                return known
        shortest = min(len(row) for row in ids) - 1
        n = 0
        while n < shortest and all(row[n] == ids[0][n] for row in ids):
            n += 1
        if n < self.min_length:
            return []
        prefix = ids[0][:n]
        with torch.inference_mode():
            # (Only the cache is used: logits for one position, not for all.)
            out = model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True, logits_to_keep=1)
        self.tokens, self.cache = tuple(prefix), out.past_key_values
        return prefix


def encode_prompts(
    model: Any,
    tokenizer: Any,
    texts: List[str],
    prefix_cache: Optional[SharedPrefixCache] = None,
    stats: Optional[Counter] = None,
) -> Dict[str, Any]:
    """The batch's input ids and attention mask, left-padded; with a
    `prefix_cache`, the tokens every prompt starts with come first, then the
    padding, then each prompt's own rest, and `past_key_values` holds the
    shared tokens' cache (a copy: the batch extends it)."""
    import torch

    # The chat template already holds the special tokens.
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    prefix = prefix_cache.prefix(model, ids) if prefix_cache is not None else []
    pad = tokenizer.pad_token_id
    width = max(len(row) for row in ids) - len(prefix)
    input_ids, mask = [], []
    for row in ids:
        rest = row[len(prefix) :]
        fill = width - len(rest)
        # Padding between the shared part and the rest: positions come from
        # the attention mask, so each prompt is positioned as if alone.
        input_ids.append(prefix + [pad] * fill + rest)
        mask.append([1] * len(prefix) + [0] * fill + [1] * len(rest))
    device = model.device
    enc: Dict[str, Any] = {
        "input_ids": torch.tensor(input_ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }
    if prefix:
        cache = copy.deepcopy(prefix_cache.cache)
        cache.batch_repeat_interleave(len(ids))
        enc["past_key_values"] = cache
        if stats is not None:
            stats["prefix_tokens_reused"] += len(prefix) * len(ids)
    return enc
