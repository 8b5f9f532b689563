"""RCLoss, the recall-oriented loss of ReCoT-NER, and the mask of the tokens it favours.

For a target token t with model probability p_t the loss is
`w_t * (-log p_t)` with `w_t = alpha * (1 - p_t)` when t is the `B` that opens
a BIO tag (the `B` of `(B-type)`) and `beta * (1 - p_t)` otherwise: a focal
weight that, with alpha > beta, makes missing the start of an entity cost
more than any other slip, which pushes the model towards recall.
"""

import re
from typing import Any, List, Optional, Sequence, Tuple

from .tasks.bio_tags import TAG_PATTERN

# A tag as GNER writes it (the reader's pattern), right after its word and
# followed by a space or the end of the text: in a target, that is a tag.
TARGET_TAG_RE = re.compile(TAG_PATTERN + r"(?= |$)")


def recall_oriented_loss(
    logits: Any,
    labels: Any,
    b_mask: Any,
    alpha: float = 1.2,
    beta: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Any:
    """RCLoss over a batch of target sequences.

    logits (Tensor): `[batch, seq, vocab]` scores.
    labels (Tensor): `[batch, seq]` target ids; `ignore_index` marks padding.
    b_mask (Tensor): `[batch, seq]` bool, True where the target is the `B` opening a tag.
    alpha (float): Weight scale for `B` tokens.
    beta (float): Weight scale for every other token.
    reduction (str): "mean" over the non-ignored positions, "sum", or "none"
        (`[batch, seq]`, zero at ignored positions).
    RETURNS (Tensor): The loss.
    """
    import torch

    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if logits.shape[:2] != labels.shape or labels.shape != b_mask.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)}, labels {tuple(labels.shape)} and b_mask "
            f"{tuple(b_mask.shape)} must agree on [batch, seq]"
        )
    valid = labels != ignore_index
    # Log-probabilities in float32 even under bf16 autocast: 1 - p needs the precision.
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    log_p = log_probs.gather(-1, labels.masked_fill(~valid, 0).unsqueeze(-1)).squeeze(-1)
    scale = torch.where(b_mask.bool(), torch.full_like(log_p, alpha), torch.full_like(log_p, beta))
    loss = scale * (1.0 - log_p.exp()) * (-log_p)
    loss = loss.masked_fill(~valid, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / valid.sum().clamp(min=1)


def tag_b_positions(target: str) -> List[int]:
    """Character positions of the `B` that opens each `(B-type)` tag in a target."""
    return [m.start() + 1 for m in TARGET_TAG_RE.finditer(target) if target[m.start() + 1] == "B"]


def b_mask_from_offsets(targets: Sequence[str], offsets: Any, labels: Any, ignore_index: int = -100) -> Any:
    """The `b_mask` of `labels` from the offset mapping of the same tokenization:
    True at each token whose characters hold the `B` opening a tag."""
    import torch

    mask = torch.zeros(labels.shape, dtype=torch.bool)
    rows = offsets.tolist() if hasattr(offsets, "tolist") else offsets
    for row, (target, row_offsets) in enumerate(zip(targets, rows)):
        wanted = tag_b_positions(target)
        if not wanted:
            continue
        for col, (start, end) in enumerate(row_offsets[: labels.shape[1]]):
            if end > start and any(start <= pos < end for pos in wanted):
                mask[row, col] = True
    return mask & (labels != ignore_index)


def b_token_mask(
    tokenizer: Any,
    targets: Sequence[str],
    labels: Any,
    ignore_index: int = -100,
    max_length: Optional[int] = None,
) -> Any:
    """The `b_mask` for tokenized `targets`: True at each token that holds the `B`
    opening a tag.

    Positions are found in the target text (`tag_b_positions`) and mapped to
    tokens through the tokenizer's offset mapping, which works alike for T5's
    sentencepiece and for byte-level BPE tokenizers, whatever pieces they cut
    "(B-person)" into; a `B` inside a word ("Bob(B)") is not a tag.

    labels (Tensor): `[batch, seq]` target ids as the model is trained on them
        (right-padded with `ignore_index` or the pad id).
    max_length (Optional[int]): The length `labels` were truncated to, if they
        were: the targets are tokenized the same way, so positions line up.
    RETURNS (Tensor): bool `[batch, seq]`.
    """
    enc = tokenizer(
        list(targets),
        add_special_tokens=True,
        return_offsets_mapping=True,
        max_length=max_length,
        truncation=max_length is not None,
    )
    return b_mask_from_offsets(targets, enc["offset_mapping"], labels, ignore_index)


def tokenize_with_offsets(tokenizer: Any, texts: Sequence[str], max_length: Optional[int] = None) -> Any:
    """A padded batch (tensors) with the offset mapping, truncated to `max_length`."""
    return tokenizer(
        list(texts),
        max_length=max_length,
        truncation=max_length is not None,
        padding=True,
        return_tensors="pt",
        return_offsets_mapping=True,
    )


def encode_targets(
    tokenizer: Any, targets: Sequence[str], max_length: Optional[int] = None, ignore_index: int = -100
) -> Tuple[Any, Any]:
    """Token ids of `targets` for training (padding set to `ignore_index`) and their
    `b_mask`, from one tokenization."""
    enc = tokenize_with_offsets(tokenizer, targets, max_length)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, ignore_index)
    return labels, b_mask_from_offsets(targets, enc["offset_mapping"], labels, ignore_index)
