"""CCA is exact for Gaussians: the MI of the fitted Gaussian equals the truth when the covariance does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pdlightning.baselines import CCA, canonical_correlations, cca_mi
from pdlightning.tasks import DenseGaussianTask, GaussianTask, get_task


def with_exact_covariance(task: GaussianTask, n: int, seed: int) -> np.ndarray:
    """n points whose (1/n, centred) sample covariance is exactly the task's covariance."""
    z = np.random.default_rng(seed).normal(size=(n, task.x_dim + task.y_dim))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(z.T @ z / n)).T  # whiten: sample covariance I
    return z @ np.linalg.cholesky(task.covariance.numpy()).T


@pytest.mark.parametrize(
    "task_id",
    ["1v1-normal-0.75", "multinormal-dense-5-5-0.5", "multinormal-dense-25-25-0.5", "multinormal-sparse-5-5-2-2.0"],
)
def test_exact_when_the_sample_covariance_is_the_true_covariance(task_id):
    task = get_task(task_id)
    data = with_exact_covariance(task, 2000, seed=0)
    result = CCA().estimate(data[:, : task.x_dim], data[:, task.x_dim :])
    assert result.mi == pytest.approx(task.mi, abs=1e-10)
    assert result.pmi.mean().item() == pytest.approx(result.mi, abs=1e-10)


def test_canonical_correlations_of_the_sparse_task():
    task = get_task("multinormal-sparse-5-5-2-2.0")
    data = with_exact_covariance(task, 500, seed=1)
    np.testing.assert_allclose(canonical_correlations(data[:, :5], data[:, 5:]), [0.8, 0.8, 0, 0, 0], atol=1e-10)


def test_matches_the_log_determinant_formula_of_the_sample_covariance_and_the_truth_within_the_noise():
    task = get_task("multinormal-dense-5-5-0.5")
    sample = task.sample(5000, generator=0, dtype=torch.float64)
    result = cca_mi(sample.x, sample.y)
    cov = np.cov(torch.cat([sample.x, sample.y], 1).numpy().T)
    log_dets = 0.5 * (np.linalg.slogdet(cov[:5, :5])[1] + np.linalg.slogdet(cov[5:, 5:])[1] - np.linalg.slogdet(cov)[1])
    assert result.mi == pytest.approx(log_dets, abs=1e-10)
    # sampling noise (4 standard errors) plus the estimator's O(dx dy / 2n) upward bias
    assert abs(result.mi - task.mi) < 4 * sample.pmi.std().item() / math.sqrt(5000) + 25 / (2 * 5000)
    # its per-pair PMI converges to the exact PMI
    assert (result.pmi - sample.pmi).pow(2).mean().sqrt().item() < 0.1


def test_bad_inputs():
    with pytest.raises(ValueError, match="more pairs than"):
        cca_mi(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="singular"):
        x = np.random.default_rng(0).normal(size=(50, 2))
        cca_mi(x, x[:, :1] * 2)
    assert DenseGaussianTask(1, 1, 0.0).mi == 0.0
