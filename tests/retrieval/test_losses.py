"""Losses against hand-computed values and brute-force loops."""

import math

import pytest
import torch

from retrieval.losses import hinge_triplet, info_nce, soft_margin_triplet


def brute_force_hinge(scores, ids, margin, hardest):
    total = 0.0
    n = len(scores)
    for p in range(n):
        costs_i2t = [max(0.0, margin - scores[p][p] + scores[p][q]) for q in range(n)
                     if ids[q] != ids[p]]
        costs_t2i = [max(0.0, margin - scores[p][p] + scores[q][p]) for q in range(n)
                     if ids[q] != ids[p]]
        agg = max if hardest else sum
        total += (agg(costs_i2t) if costs_i2t else 0.0) + (agg(costs_t2i) if costs_t2i else 0.0)
    return total


@pytest.mark.parametrize("hardest", [True, False])
def test_hinge_triplet_matches_brute_force(hardest):
    torch.manual_seed(0)
    scores = torch.rand(6, 6) * 2 - 1
    ids = torch.tensor([0, 0, 1, 2, 2, 3])  # captions of the same image are not negatives
    expected = brute_force_hinge(scores.tolist(), ids.tolist(), 0.2, hardest)
    assert hinge_triplet(scores, ids, margin=0.2, hardest=hardest).item() == \
        pytest.approx(expected, rel=1e-5)


def test_info_nce_hand_computed_and_masked():
    scores = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    ids = torch.tensor([0, 1])
    tau = 0.5
    row = [-math.log(math.exp(2) / (math.exp(2) + 1)), -math.log(math.exp(2) / (math.exp(1) + math.exp(2)))]
    col = [-math.log(math.exp(2) / (math.exp(2) + math.exp(1))), -math.log(math.exp(2) / (1 + math.exp(2)))]
    expected = 0.5 * (sum(row) / 2 + sum(col) / 2)
    assert info_nce(scores, ids, temperature=tau).item() == pytest.approx(expected, rel=1e-6)
    # Two captions of the same image: the off-diagonal same-image entries are not negatives,
    # so a perfect-looking similarity between them costs nothing.
    same = torch.tensor([0, 0])
    masked = info_nce(torch.tensor([[1.0, 1.0], [1.0, 1.0]]), same, temperature=0.1)
    assert masked.item() == pytest.approx(0.0, abs=1e-6)


def test_soft_margins():
    scores = torch.tensor([[0.5, 0.45], [0.45, 0.5]])
    ids = torch.tensor([0, 1])
    clean = soft_margin_triplet(scores, ids, torch.ones(2), margin=0.2)
    assert clean.item() == pytest.approx(hinge_triplet(scores, ids, margin=0.2).item())
    assert soft_margin_triplet(scores, ids, torch.zeros(2), margin=0.2).item() == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_margin_triplet(scores, ids, torch.tensor([1.5, 0.0]))


def test_shape_errors():
    with pytest.raises(ValueError, match="do not match"):
        info_nce(torch.zeros(3, 3), torch.arange(2))
    with pytest.raises(ValueError, match="square"):
        hinge_triplet(torch.zeros(2, 3), torch.arange(2), torch.arange(3))


def test_matching_loss_is_hinge_or_scaled_infonce():
    from retrieval.losses import hinge_triplet, info_nce, matching_loss

    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 6, generator=generator) * 4 - 2
    ids = torch.arange(6)
    assert torch.equal(matching_loss(scores, ids, kind="hinge", margin=0.3, hardest=False),
                       hinge_triplet(scores, ids, margin=0.3, hardest=False))
    # A score summed over 4 chunks is scaled back to the range of a cosine before InfoNCE.
    assert torch.allclose(matching_loss(scores, ids, kind="infonce", temperature=0.1,
                                        score_range=4.0),
                          info_nce(scores / 4.0, ids, temperature=0.1))
