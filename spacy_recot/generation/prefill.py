"""The prompts' pass: one padded pass, or, on a CPU where the padding would cost
more than passes of their own, the prompts laid end to end in one row."""

from collections import Counter
from typing import Any, Callable, List, Tuple

from .gqa_attention import NAME as GQA_ATTENTION
from .output_head import PLAIN_HEAD_TYPES
from .settings import DecodingSettings


def full_attention(cache: Any) -> bool:
    """Whether every layer of a transformers cache keeps every position (no
    sliding window, no recurrent state): only such caches can hold masked-out
    positions or be laid side by side."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def prefill(
    model: Any,
    forward: Callable[..., Tuple[Any, Any]],
    ids: Any,
    mask: Any,
    positions: Any,
    cache: Any,
    done: int,
    settings: DecodingSettings,
    stats: Counter,
) -> Tuple[Any, Any]:
    """The prompts' pass after the `done` tokens already in `cache`: the
    cache, and each prompt's last output. One batched pass computes the
    padding too. On a CPU, when the padding costs more than a pass of its
    own would, the prompts' own tokens are laid end to end in one row
    instead (packs of at most settings.pack_tokens), each attending to the shared
    tokens and to itself only (a 4D mask), and the row's cache is cut back
    into one row per prompt, the padding as zeros (masked, as before)."""
    import torch
    from transformers.cache_utils import DynamicCache

    lengths = mask[:, done:].sum(-1).tolist()
    rows, width = len(lengths), ids.shape[1] - done
    padding = rows * width - sum(lengths)

    def padded() -> Tuple[Any, Any]:
        stats["prompt_passes"] += 1
        return forward(
            1, input_ids=ids[:, done:], attention_mask=mask, position_ids=positions[:, done:], past_key_values=cache
        )

    if (
        model.device.type != "cpu"
        or rows == 1
        or padding <= settings.pass_cost * rows
        # Models and attention known to take a boolean 4D mask as it is.
        or model.config.model_type not in PLAIN_HEAD_TYPES
        or model.config._attn_implementation not in ("sdpa", GQA_ATTENTION)
        # A sliding window or a recurrent state: caches cannot be cut into rows.
        or not full_attention(cache if cache is not None else DynamicCache(config=model.config))
    ):
        return padded()
    packs: List[List[int]] = [[]]
    for b, n in enumerate(lengths):
        if packs[-1] and sum(lengths[r] for r in packs[-1]) + n > settings.pack_tokens:
            packs.append([])
        packs[-1].append(b)
    # The shared tokens' cache (every row holds the same).
    shared = [] if cache is None else [(layer.keys[:1], layer.values[:1]) for layer in cache.layers]
    merged: List[Tuple[Any, Any]] = []
    lasts: List[Any] = [None] * rows
    stats["prompt_passes"] += len(packs)
    for pack in packs:
        starts = [sum(lengths[r] for r in pack[:j]) for j in range(len(pack))]
        total = starts[-1] + lengths[pack[-1]]
        attend = torch.zeros((1, 1, total, done + total), dtype=torch.bool, device=model.device)
        attend[..., :done] = True
        for b, start in zip(pack, starts):
            n = lengths[b]
            attend[0, 0, start : start + n, done + start : done + start + n] = torch.ones(
                (n, n), dtype=torch.bool, device=model.device
            ).tril()
        row_cache, out = forward(
            [start + lengths[b] - 1 for b, start in zip(pack, starts)],
            input_ids=torch.cat([ids[b, -lengths[b] :] for b in pack])[None],
            attention_mask=attend,
            position_ids=torch.cat([positions[b, -lengths[b] :] for b in pack])[None],
            past_key_values=DynamicCache(ddp_cache_data=shared) if shared else None,
        )
        if not merged:
            for layer in row_cache.layers:
                shape = (rows, layer.keys.shape[1], done + width, layer.keys.shape[3])
                keys, values = layer.keys.new_zeros(shape), layer.values.new_zeros(shape)
                keys[:, :, :done], values[:, :, :done] = layer.keys[:, :, :done], layer.values[:, :, :done]
                merged.append((keys, values))
        for j, (b, start) in enumerate(zip(pack, starts)):
            n = lengths[b]
            for (keys, values), layer in zip(merged, row_cache.layers):
                keys[b, :, done + width - n :] = layer.keys[0, :, done + start : done + start + n]
                values[b, :, done + width - n :] = layer.values[0, :, done + start : done + start + n]
            lasts[b] = out[:, j : j + 1]
    stats["padding_tokens_skipped"] += padding
    return DynamicCache(ddp_cache_data=merged), torch.cat(lasts)
