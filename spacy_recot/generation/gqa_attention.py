"""Grouped-query attention on a CPU without copying the key-value cache.

transformers' "sdpa" attention gives torch's kernel grouped-query heads as
they are (`enable_gqa`) only without a mask, or packs them for one query
position. Our decoding steps have both a mask (left padding, guesses masked
out) and several query positions (the guessed tokens), so there it repeats
each key-value head for every query head it serves: a copy of the whole cache
in every layer at every step (14 % of a 16-row step of the 1.5B model in a
profile here). torch's CPU kernel takes the mask together with `enable_gqa`, and
its outputs are the same bit for bit (tested).
"""

from typing import Any, Optional, Tuple

NAME = "recot_sdpa"


def gqa_sdpa_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Optional[Any],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    **kwargs: Any,
) -> Tuple[Any, None]:
    """transformers' `sdpa_attention_forward`, except for masked grouped-query
    attention over several query positions on a CPU, which is given to torch's
    kernel with `enable_gqa` instead of with repeated key-value heads."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    special = any(kwargs.get(k) is not None for k in ("position_bias", "cache", "softcap"))
    if (
        getattr(module, "num_key_value_groups", 1) == 1
        or query.shape[2] == 1
        or attention_mask is None
        or query.device.type != "cpu"
        or special
        or kwargs.get("output_attentions")
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # With a mask, transformers' sdpa is not causal either: the mask says it all.
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make NAME an attention implementation transformers knows, with sdpa's masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, gqa_sdpa_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_gqa_attention(model: Any) -> bool:
    """Switch a model on a CPU from "sdpa" to NAME when it has grouped-query
    heads (a no-op otherwise); whether it was switched."""
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if (
        config is None
        or getattr(model, "device", None) is None
        or model.device.type != "cpu"
        or getattr(config, "_attn_implementation", None) != "sdpa"
        or not heads
        or kv_heads == heads
    ):
        return False
    register()
    model.set_attn_implementation(NAME)
    return True
