"""KSG (algorithm 1) against a brute-force implementation and closed-form Gaussian MI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import digamma

from pdlightning.baselines import KSG, ksg_mi
from pdlightning.tasks import BivariateNormalTask, DenseGaussianTask, get_task


def brute_force_ksg(x: np.ndarray, y: np.ndarray, k: int, norm: float = np.inf) -> np.ndarray:
    """Local KSG-1 values from full distance matrices (O(n²) numpy, written from the paper's definitions):
    joint distance max(||x - x'||, ||y - y'||) with ``norm`` within each space."""
    dist_x = np.linalg.norm(x[:, None, :] - x[None, :, :], ord=norm, axis=-1)
    dist_y = np.linalg.norm(y[:, None, :] - y[None, :, :], ord=norm, axis=-1)
    joint = np.maximum(dist_x, dist_y)
    np.fill_diagonal(joint, np.inf)
    eps = np.sort(joint, axis=1)[:, k - 1]
    n_x = (dist_x < eps[:, None]).sum(1) - 1  # minus the point itself (distance 0)
    n_y = (dist_y < eps[:, None]).sum(1) - 1
    return digamma(k) + digamma(len(x)) - digamma(n_x + 1) - digamma(n_y + 1)


@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("metric, algorithm", [("chebyshev", "kdtree"), ("chebyshev", "brute"), ("euclidean", "brute")])
def test_matches_brute_force(k, metric, algorithm):
    sample = DenseGaussianTask(2, 3, 0.5).sample(400, generator=k, dtype=torch.float64)
    x, y = sample.x.numpy(), sample.y.numpy()
    result = ksg_mi(x, y, k=k, standardize=False, metric=metric, algorithm=algorithm)
    norm = np.inf if metric == "chebyshev" else 2
    np.testing.assert_allclose(result.pmi.numpy(), brute_force_ksg(x, y, k, norm), atol=1e-12)
    assert result.mi == pytest.approx(result.pmi.mean().item())


def test_kd_tree_and_brute_force_agree_in_high_dimension():
    sample = get_task("multinormal-dense-25-25-0.5").sample(600, generator=0)
    tree = ksg_mi(sample.x, sample.y, k=5, algorithm="kdtree")
    brute = ksg_mi(sample.x, sample.y, k=5, algorithm="brute")
    torch.testing.assert_close(tree.pmi, brute.pmi, rtol=0, atol=0)


@pytest.mark.parametrize(
    "task",
    [
        BivariateNormalTask(0.75),
        DenseGaussianTask(2, 2, 0.5),
        get_task("multinormal-sparse-2-2-2-2.0"),
        DenseGaussianTask(2, 3, 0.5),
    ],
    ids=lambda task: task.name,
)
@pytest.mark.parametrize("k", [5, 10])
def test_within_five_hundredths_of_a_nat_on_low_dimensional_gaussians(task, k):
    """n = 5,000: 2-d (1x1), 4-d (2x2) and 5-d (2x3) joint Gaussians."""
    sample = task.sample(5000, generator=0)
    assert abs(KSG(k).estimate(sample.x, sample.y).mi - task.mi) < 0.05


def test_near_zero_for_independent_variables_and_invariant_to_column_scales():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(3000, 2, generator=generator), torch.randn(3000, 3, generator=generator)
    assert abs(ksg_mi(x, y).mi) < 0.02
    sample = DenseGaussianTask(2, 2, 0.5).sample(2000, generator=2, dtype=torch.float64)
    scaled = ksg_mi(sample.x * torch.tensor([10.0, 0.1], dtype=torch.float64), sample.y * 3.0 - 1.0)
    assert scaled.mi == pytest.approx(ksg_mi(sample.x, sample.y).mi, abs=1e-9)


@pytest.mark.parametrize(
    "call, parameter",
    [
        (lambda: KSG(0), "k must be a positive integer"),
        (lambda: KSG(5, metric="manhattan"), "metric must be"),
        (
            lambda: ksg_mi(np.ones((20, 1)), np.ones((20, 1)), metric="euclidean", algorithm="kdtree"),
            "algorithm='kdtree' supports",
        ),
        (lambda: ksg_mi(np.zeros((5, 1)), np.zeros((5, 1)), k=5), "more pairs than k"),
        (lambda: ksg_mi(np.zeros((20, 1)), np.random.default_rng(0).normal(size=(20, 1))), "x has a constant column"),
        (lambda: ksg_mi(np.zeros((20, 1)), np.zeros((21, 1))), "x and y must hold the same number"),
        (lambda: ksg_mi(np.full((20, 1), np.nan), np.zeros((20, 1))), "x must be finite"),
    ],
)
def test_bad_inputs(call, parameter):
    with pytest.raises(ValueError, match=parameter):
        call()
