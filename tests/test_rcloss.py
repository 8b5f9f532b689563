"""RCLoss numerics and the detection of the B tokens it weights."""

import math

import pytest
import torch

from spacy_recot.rcloss import b_token_mask, encode_targets, recall_oriented_loss, tag_b_positions


def test_loss_matches_hand_computation():
    # One sequence, vocabulary of 2, three targets: a B token, another token, padding.
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [5.0, -5.0]]])
    labels = torch.tensor([[0, 0, -100]])
    b_mask = torch.tensor([[True, False, False]])
    p0 = 0.5
    p1 = math.exp(2) / (math.exp(2) + 1)
    want0 = 1.2 * (1 - p0) * -math.log(p0)
    want1 = 1.0 * (1 - p1) * -math.log(p1)
    none = recall_oriented_loss(logits, labels, b_mask, reduction="none")
    assert none[0, 0].item() == pytest.approx(want0)
    assert none[0, 1].item() == pytest.approx(want1)
    assert none[0, 2].item() == 0.0
    assert recall_oriented_loss(logits, labels, b_mask, reduction="sum").item() == pytest.approx(want0 + want1)
    assert recall_oriented_loss(logits, labels, b_mask).item() == pytest.approx((want0 + want1) / 2)
    # alpha and beta scale their own tokens only
    assert recall_oriented_loss(logits, labels, b_mask, alpha=2.0, beta=0.5, reduction="sum").item() == pytest.approx(
        2.0 * (1 - p0) * -math.log(p0) + 0.5 * (1 - p1) * -math.log(p1)
    )


def test_alpha_beta_one_is_focal_weighted_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5))
    labels[1, 3:] = -100
    b_mask = torch.rand(3, 5) > 0.5
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none", ignore_index=-100)
    p = torch.exp(-ce)
    focal = ((1 - p) * ce)[labels != -100].mean()
    assert recall_oriented_loss(logits, labels, b_mask, alpha=1.0, beta=1.0).item() == pytest.approx(
        focal.item(), rel=1e-6
    )


def test_ignored_positions_contribute_nothing():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 7, requires_grad=True)
    labels = torch.tensor([[1, 2, -100, -100], [3, -100, -100, -100]])
    b_mask = torch.ones(2, 4, dtype=torch.bool)
    loss = recall_oriented_loss(logits, labels, b_mask)
    loss.backward()
    assert torch.all(logits.grad[labels == -100] == 0)
    changed = logits.detach().clone()
    changed[labels == -100] = 100.0
    assert recall_oriented_loss(changed, labels, b_mask).item() == pytest.approx(loss.item())


def test_mean_of_two_halves_times_counts_equals_whole():
    """What gradient accumulation needs: sums add up across micro-batches."""
    torch.manual_seed(2)
    logits = torch.randn(4, 6, 9)
    labels = torch.randint(0, 9, (4, 6))
    labels[0, 4:] = -100
    b_mask = torch.rand(4, 6) > 0.7
    whole = recall_oriented_loss(logits, labels, b_mask, reduction="sum")
    halves = sum(
        recall_oriented_loss(logits[i : i + 2], labels[i : i + 2], b_mask[i : i + 2], reduction="sum") for i in (0, 2)
    )
    assert halves.item() == pytest.approx(whole.item())


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduction"):
        recall_oriented_loss(
            torch.zeros(1, 1, 2),
            torch.zeros(1, 1, dtype=torch.long),
            torch.zeros(1, 1, dtype=torch.bool),
            reduction="avg",
        )
    with pytest.raises(ValueError, match="agree"):
        recall_oriented_loss(
            torch.zeros(1, 2, 2), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.bool)
        )


PAIRS = [
    ("Bob", "B-person"),
    ("Smith", "I-person"),
    ("said", "O"),
    ("(B)", "O"),
    ("to", "O"),
    ("BBC", "B-organisation"),
    ("Bach", "O"),
    ("x", "B-programming language"),
]
TARGET = " ".join(f"{w}({t})" for w, t in PAIRS)


def test_b_positions_are_structural():
    positions = tag_b_positions(TARGET)
    assert [TARGET[p - 1 : p + 2] for p in positions] == ["(B-", "(B-", "(B-"]
    # Where render_target put each B tag; the B of "Bob", "(B)", "BBC" and
    # "Bach" belong to words, not tags.
    expected, pos = [], 0
    for word, tag in PAIRS:
        if tag.startswith("B-"):
            expected.append(pos + len(word) + 1)
        pos += len(word) + len(tag) + 3
    assert positions == expected


@pytest.mark.parametrize("fixture", ["t5_tokenizer", "bpe_tokenizer"])
def test_b_token_mask_for_sentencepiece_and_byte_level_bpe(fixture, request):
    tokenizer = request.getfixturevalue(fixture)
    targets = [TARGET, "Paris(B-location) is(O) big(O)"]
    labels, mask = encode_targets(tokenizer, targets)
    assert mask.shape == labels.shape and mask.dtype == torch.bool
    for row, target in enumerate(targets):
        offsets = tokenizer(target, return_offsets_mapping=True)["offset_mapping"]
        marked = [offsets[i] for i in range(len(offsets)) if mask[row, i]]
        # One token per tag, and each holds the B that opens it.
        assert len(marked) == target.count("(B-")
        starts = tag_b_positions(target)
        assert sorted(next(p for p in starts if s <= p < e) for s, e in marked) == starts
    assert not mask[labels == -100].any()
    # The function on its own gives the same mask.
    assert torch.equal(b_token_mask(tokenizer, targets, labels), mask)


def test_b_token_mask_lines_up_with_truncated_labels(t5_tokenizer):
    target = " ".join(f"w{i}(B-person)" for i in range(40))
    labels, mask = encode_targets(t5_tokenizer, [target], max_length=16)
    assert labels.shape[1] == 16
    # The last position holds </s> after truncation: never a B.
    assert labels[0, -1].item() == t5_tokenizer.eos_token_id and not mask[0, -1]
    ids = labels[0][mask[0]].tolist()
    assert ids and all("B" in t5_tokenizer.convert_ids_to_tokens(i) for i in ids)
