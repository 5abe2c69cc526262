"""RandomGaussianTask: a seeded random mean and SPD covariance; the closed-form MI against a Monte-Carlo estimate
of E[log p(x, y) - log p(x) - log p(y)] on the observed (shifted) pairs with scipy's densities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from pdlightning.data import TaskDataModule
from pdlightning.tasks import RandomGaussianTask


@pytest.mark.parametrize("dim, seed", [(2, 0), (10, 0), (20, 0), (7, 3)])
def test_closed_form_mi_matches_a_monte_carlo_estimate_on_the_observed_pairs(dim, seed):
    task = RandomGaussianTask(dim, seed=seed)
    mean, cov, dx = task.mean.numpy(), task.covariance.numpy(), task.x_dim
    assert (task.x_dim, task.y_dim) == (dim // 2, dim - dim // 2)
    sample = task.sample(100_000, generator=1, dtype=torch.float64)
    xy = torch.cat([sample.x, sample.y], 1).numpy()
    log_ratio = (
        stats.multivariate_normal(mean, cov).logpdf(xy)
        - stats.multivariate_normal(mean[:dx], cov[:dx, :dx]).logpdf(xy[:, :dx])
        - stats.multivariate_normal(mean[dx:], cov[dx:, dx:]).logpdf(xy[:, dx:])
    )
    standard_error = log_ratio.std() / np.sqrt(len(log_ratio))
    assert abs(log_ratio.mean() - task.mi) < 4 * standard_error + 1e-9
    # the exact PMI of each pair is the log-ratio of the observed densities (the mean only shifts the observations)
    np.testing.assert_allclose(sample.pmi.numpy(), log_ratio, atol=1e-8)
    # and the observations are drawn around the random mean
    assert np.abs(xy.mean(0) - mean).max() < 5 * np.sqrt(np.diag(cov).max() / len(xy))


def test_seed_fixes_the_distribution_and_the_mi_is_positive():
    a, b, c = RandomGaussianTask(10, seed=0), RandomGaussianTask(10, seed=0), RandomGaussianTask(10, seed=1)
    assert torch.equal(a.covariance, b.covariance) and torch.equal(a.mean, b.mean)
    assert not torch.equal(a.covariance, c.covariance)
    assert a.mi > 0 and a.name == "random-normal-5-5-s0"
    assert RandomGaussianTask(4, mean_scale=0.0).mean.abs().max() == 0
    assert RandomGaussianTask(5, x_dim=1).y_dim == 4


def test_a_finite_sample_datamodule_of_the_task_carries_its_mi():
    task = RandomGaussianTask(4, seed=2)
    data = TaskDataModule(task, n_samples=600, test_fraction=1 / 6, batch_size=50, steps=3)
    assert (data.n_train, data.n_test) == (500, 100)
    batch = next(iter(data.train_dataloader()))
    assert batch["x"].shape == (50, 2) and float(batch["mi"]) == pytest.approx(task.mi)


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"dim": 1}, "dim"),
        ({"dim": 4, "ridge": 0.0}, "ridge"),
        ({"dim": 4, "mean_scale": -1.0}, "mean_scale"),
        ({"dim": 4, "x_dim": 4}, "x_dim"),
        ({"dim": 4, "seed": 1.5}, "seed"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        RandomGaussianTask(**kwargs)
