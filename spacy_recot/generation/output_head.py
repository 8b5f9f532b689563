"""The output layer applied to the tokens a grammar allows, not the whole
vocabulary: inside an entity string or between JSON tokens few are allowed, and
at 152k tokens the full output layer is a quarter of a decode step."""

from collections import Counter
from typing import Any, Optional, Tuple

# Architectures whose logits are exactly `lm_head(model(...).last_hidden_state)`.
PLAIN_HEAD_TYPES = ("qwen2", "qwen3", "llama")


def output_head(model: Any) -> Optional[Tuple[Any, Any]]:
    """(the model without its output layer, the output layer's weight), for
    architectures whose logits are a plain linear map of the last hidden
    state; None for others (soft-capped or scaled logits, a bias)."""
    import torch

    head = model.get_output_embeddings()
    base = getattr(model, "model", None)
    if model.config.model_type not in PLAIN_HEAD_TYPES or base is None:
        return None
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        return None
    return base, head.weight


def allowed_argmax(
    hidden: Any, weight: Any, bitmask: Any, sparse_share: float = 0.25, stats: Optional[Counter] = None
) -> Tuple[Any, Any]:
    """The grammar's greedy choice per row and its log-probability under the
    masked distribution, from the last hidden states. When the allowed
    tokens of the batch are few (inside an entity string, between JSON
    tokens), the output layer is applied to them alone: at 152k tokens it
    is a quarter of a decode step. The same choice and scores as masking
    the full logits, up to the rounding of a smaller matrix product."""
    import torch

    vocab = weight.shape[0]
    bits = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask.unsqueeze(-1) >> bits) & 1).bool().reshape(bitmask.shape[0], -1)[:, :vocab]
    allowed = allowed.to(hidden.device)
    union = allowed.any(0).nonzero().squeeze(1)
    if len(union) <= sparse_share * vocab:
        if stats is not None:
            stats["sparse_head_steps"] += 1
        logits = torch.nn.functional.linear(hidden, weight[union]).float()
        logits.masked_fill_(~allowed[:, union], float("-inf"))
        best = logits.argmax(-1)
        scores = torch.log_softmax(logits, dim=-1).gather(1, best[:, None]).squeeze(1)
        return union[best], scores
    logits = torch.nn.functional.linear(hidden, weight).float()
    logits.masked_fill_(~allowed, float("-inf"))
    best = logits.argmax(-1)
    return best, torch.log_softmax(logits, dim=-1).gather(1, best[:, None]).squeeze(1)
