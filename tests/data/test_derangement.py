"""Derangements: no fixed points, uniform over the derangements of n (exact small-n counts, chi-square), drawn on
the CPU from a seeded generator; a batch gets one (x_i, y_sigma(i)) marginal pair per row."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from scipy import stats

from pdlightning.bounds import PairScores
from pdlightning.data import check_mi_batch, random_derangement, with_derangement_pairs


def derangements(n: int) -> set[tuple[int, ...]]:
    return {p for p in itertools.permutations(range(n)) if all(p[i] != i for i in range(n))}


@pytest.mark.parametrize("n", [2, 3, 5, 17, 256, 1000])
def test_no_fixed_points_and_a_permutation(n):
    generator = torch.Generator().manual_seed(n)
    for _ in range(20):
        sigma = random_derangement(n, generator)
        assert sigma.dtype == torch.int64 and sigma.device.type == "cpu"
        assert torch.equal(sigma.sort().values, torch.arange(n))
        assert not (sigma == torch.arange(n)).any()


@pytest.mark.parametrize("n, count", [(2, 1), (3, 2), (4, 9), (5, 44)])
def test_every_derangement_of_small_n_is_drawn_equally_often(n, count):
    """D_n derangements (1, 2, 9, 44), each drawn with probability 1/D_n: a chi-square goodness-of-fit test over
    200 D_n draws does not reject uniformity (p > 1e-3), and no draw is anything but a derangement."""
    expected = derangements(n)
    assert len(expected) == count
    generator = torch.Generator().manual_seed(100 + n)
    draws = Counter(tuple(random_derangement(n, generator).tolist()) for _ in range(200 * count))
    assert set(draws) == expected
    if count > 1:
        assert stats.chisquare([draws[p] for p in sorted(expected)]).pvalue > 1e-3


def test_the_generator_makes_draws_reproducible():
    first = random_derangement(64, torch.Generator().manual_seed(3))
    assert torch.equal(first, random_derangement(64, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, random_derangement(64, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("n", [1, 0, -3, 2.0, True])
def test_a_batch_of_one_has_no_derangement(n):
    with pytest.raises(ValueError, match=r"^n \(the batch size\) must be an integer >= 2"):
        random_derangement(n)


def test_the_batch_gets_one_deranged_marginal_pair_per_row():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=generator)
    y = torch.randn(32, 2, generator=generator)
    batch = {"x": x, "y": y, "mi": 1.0}
    out = with_derangement_pairs(batch, torch.Generator().manual_seed(1))
    assert set(out) == {"x", "y", "mi", "x_marginal", "y_marginal"} and "x_marginal" not in batch
    assert out["x_marginal"] is x and out["y_marginal"].shape == y.shape
    sigma = random_derangement(32, torch.Generator().manual_seed(1))  # the same draw
    assert torch.equal(out["y_marginal"], y[sigma])
    check_mi_batch(out)  # the batch contract's explicit pairs
    # every bound then sees k = 1 marginal pair per row
    scores = PairScores.from_pairs((x[:, :2] * y).sum(1), (out["x_marginal"][:, :2] * out["y_marginal"]).sum(1))
    assert scores.negatives_per_row == 1


def test_stacked_replicates_share_one_derangement_along_the_pair_dimension():
    y = torch.arange(3 * 6, dtype=torch.float32).view(3, 6, 1)
    out = with_derangement_pairs({"x": y.clone(), "y": y}, torch.Generator().manual_seed(2), pair_dim=1)
    sigma = random_derangement(6, torch.Generator().manual_seed(2))
    assert torch.equal(out["y_marginal"], y[:, sigma])


def test_bad_batches_name_the_problem():
    with pytest.raises(ValueError, match=r"^n \(the batch size\)"):
        with_derangement_pairs({"x": torch.zeros(1, 2), "y": torch.zeros(1, 2)})
    with pytest.raises(ValueError, match="already carries explicit marginal pairs"):
        with_derangement_pairs({"x": torch.zeros(4, 1), "y": torch.zeros(4, 1), "x_marginal": 0, "y_marginal": 0})
    with pytest.raises(ValueError, match="pair_dim"):
        with_derangement_pairs({"x": torch.zeros(4, 1), "y": torch.zeros(4, 1)}, pair_dim=2)
    with pytest.raises(ValueError, match="expected a tensor under 'y'"):
        with_derangement_pairs({"x": torch.zeros(4, 1)})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA generator")
def test_an_accelerator_generator_is_refused():
    with pytest.raises(ValueError, match="^generator: expected a CPU"):
        random_derangement(8, torch.Generator(device="cuda"))
