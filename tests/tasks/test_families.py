"""Closed forms of each family checked against independent formulas and scipy, and bad parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from pdlightning.tasks import (
    AdditiveUniformTask,
    BivariateNormalTask,
    DenseGaussianTask,
    GaussianTask,
    SparseGaussianTask,
    StudentTTask,
    TransformedTask,
    get_task,
    student_t_mi_correction,
)


def random_covariance(dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(dim, dim))
    return factor @ factor.T / dim + 0.3 * np.eye(dim)


@pytest.mark.parametrize("x_dim, y_dim, seed", [(1, 1, 0), (2, 3, 1), (4, 4, 2), (6, 2, 3)])
def test_gaussian_mi_matches_log_determinants_and_canonical_correlations(x_dim, y_dim, seed):
    cov = random_covariance(x_dim + y_dim, seed)
    task = GaussianTask(cov.tolist(), x_dim)
    log_dets = 0.5 * (
        np.linalg.slogdet(cov[:x_dim, :x_dim])[1]
        + np.linalg.slogdet(cov[x_dim:, x_dim:])[1]
        - np.linalg.slogdet(cov)[1]
    )
    assert task.mi == pytest.approx(log_dets, abs=1e-12)

    def inverse_sqrt(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(w**-0.5) @ v.T

    rho = np.linalg.svd(
        inverse_sqrt(cov[:x_dim, :x_dim]) @ cov[:x_dim, x_dim:] @ inverse_sqrt(cov[x_dim:, x_dim:]), compute_uv=False
    )
    assert task.mi == pytest.approx(-0.5 * np.log(1 - rho**2).sum(), abs=1e-10)


def test_gaussian_pmi_matches_scipy_log_densities():
    cov = random_covariance(5, 4)
    task = GaussianTask(cov.tolist(), 2)
    sample = task.sample(500, generator=0, dtype=torch.float64)
    xy = torch.cat([sample.x, sample.y], 1).numpy()
    expected = (
        stats.multivariate_normal(np.zeros(5), cov).logpdf(xy)
        - stats.multivariate_normal(np.zeros(2), cov[:2, :2]).logpdf(xy[:, :2])
        - stats.multivariate_normal(np.zeros(3), cov[2:, 2:]).logpdf(xy[:, 2:])
    )
    np.testing.assert_allclose(sample.pmi.numpy(), expected, atol=1e-10)
    # and the sampler draws from N(0, Σ): sample covariance of 2e4 draws within a few standard errors
    big = task.sample(20_000, generator=1, dtype=torch.float64)
    empirical = np.cov(torch.cat([big.x, big.y], 1).numpy().T)
    assert np.abs(empirical - cov).max() < 5 * np.sqrt(2 * np.diag(cov).max() ** 2 / 20_000)


def test_suite_gaussian_parametrisations():
    assert BivariateNormalTask(0.75).mi == pytest.approx(-0.5 * math.log(1 - 0.75**2), abs=1e-14)
    dense = DenseGaussianTask(3, 2, 0.5).covariance
    assert torch.equal(dense.diagonal(), torch.ones(5)) and (dense - torch.eye(5) == 0.5 - 0.5 * torch.eye(5)).all()
    sparse = SparseGaussianTask(4, 3, n_interacting=2, strength=2.0)
    cov = sparse.covariance
    assert cov[0, 4] == cov[1, 5] == pytest.approx(0.8) and cov[2, 6] == 0 and cov[0, 5] == 0
    # The suite's latent-variable description: X_i = λ Z_i + E_i (i < K), else η V_i + E_i, λ = η = 2; same for Y.
    assert sparse.mi == pytest.approx(-2 * 0.5 * math.log(1 - 0.8**2), abs=1e-14)


@pytest.mark.parametrize(
    "x_dim, y_dim, dof, dispersion",
    [
        (1, 1, 1.0, None),
        (2, 2, 2.0, None),
        (3, 3, 3.0, None),
        (2, 3, 4.5, random_covariance(5, 7)),
    ],
)
def test_student_mi_matches_a_monte_carlo_of_scipy_densities(x_dim, y_dim, dof, dispersion):
    """Independent of our sampler and PMI: scipy draws the t and evaluates its log-densities."""
    task = StudentTTask(x_dim, y_dim, dof, dispersion=None if dispersion is None else dispersion.tolist())
    scale = np.eye(x_dim + y_dim) if dispersion is None else dispersion
    joint = stats.multivariate_t(np.zeros(x_dim + y_dim), scale, df=dof)
    marginal_x = stats.multivariate_t(np.zeros(x_dim), scale[:x_dim, :x_dim], df=dof)
    marginal_y = stats.multivariate_t(np.zeros(y_dim), scale[x_dim:, x_dim:], df=dof)
    xy = joint.rvs(size=40_000, random_state=np.random.default_rng(int(10 * dof)))
    pmi = joint.logpdf(xy) - marginal_x.logpdf(xy[:, :x_dim]) - marginal_y.logpdf(xy[:, x_dim:])
    assert abs(pmi.mean() - task.mi) < 4 * pmi.std() / math.sqrt(len(pmi)), (pmi.mean(), task.mi)
    # our PMI at scipy's points equals scipy's
    ours = task.pmi_of_latents(torch.from_numpy(xy[:200, :x_dim]), torch.from_numpy(xy[:200, x_dim:]))
    np.testing.assert_allclose(ours.numpy(), pmi[:200], atol=1e-9)


def test_student_correction_vanishes_as_dof_grows_and_the_sampler_has_t_marginals():
    assert student_t_mi_correction(3, 3, 1e7) == pytest.approx(0.0, abs=1e-6)
    assert student_t_mi_correction(1, 1, 1.0) > student_t_mi_correction(1, 1, 2.0) > 0
    sample = StudentTTask(1, 2, 3.0).sample(20_000, generator=4, dtype=torch.float64)
    assert stats.kstest(sample.x[:, 0].numpy(), stats.t(df=3.0).cdf).pvalue > 1e-3
    assert stats.kstest(sample.y[:, 1].numpy(), stats.t(df=3.0).cdf).pvalue > 1e-3


@pytest.mark.parametrize("epsilon", [0.1, 0.5, 0.75, 2.0])
def test_additive_uniform_mi_matches_numerical_integration(epsilon):
    """I = ∫ p(y) (-log L(y)) dy with p(y) = L(y)/(2ε) and L(y) = |[0,1] ∩ [y-ε, y+ε]|."""

    def overlap(y):
        return min(1.0, y + epsilon) - max(0.0, y - epsilon)

    breaks = sorted({-epsilon, epsilon, 1 - epsilon, 1 + epsilon})
    value = sum(
        integrate.quad(lambda y: -math.log(overlap(y)) * overlap(y) / (2 * epsilon), a, b)[0]
        for a, b in zip(breaks[:-1], breaks[1:])
    )
    assert AdditiveUniformTask(epsilon).mi == pytest.approx(value, abs=1e-9)


def test_additive_uniform_pmi_is_minus_infinity_outside_the_joint_support():
    task = AdditiveUniformTask(0.1)
    x = torch.tensor([[0.5], [0.5], [0.05]], dtype=torch.float64)
    y = torch.tensor([[0.55], [0.65], [0.0]], dtype=torch.float64)
    pmi = task.pmi_of_latents(x, y)
    assert pmi[0].item() == pytest.approx(-math.log(0.2))
    assert pmi[1].item() == -math.inf
    assert pmi[2].item() == pytest.approx(-math.log(0.1))  # near the edge L(y) = 0.1


@pytest.mark.parametrize(
    "build, parameter",
    [
        (lambda: BivariateNormalTask(1.0), "correlation"),
        (lambda: BivariateNormalTask(-1.5), "correlation"),
        (lambda: DenseGaussianTask(2, 2, 1.2), "correlation"),
        (lambda: DenseGaussianTask(2, 2, -0.4), "correlation"),  # not positive definite for 4 coordinates
        (lambda: DenseGaussianTask(0, 2, 0.5), "x_dim"),
        (lambda: SparseGaussianTask(2, 2, n_interacting=3), "n_interacting"),
        (lambda: SparseGaussianTask(3, 3, strength=-1.0), "strength"),
        (lambda: StudentTTask(2, 2, -1.0), "dof"),
        (lambda: StudentTTask(2, 2, 0.0), "dof"),
        (lambda: StudentTTask(2, 2, 1.0, dispersion=np.eye(5).tolist()), "dispersion"),
        (lambda: StudentTTask(1, 1, 1.0, dispersion=[[1.0, 2.0], [2.0, 1.0]]), "dispersion"),
        (lambda: GaussianTask([[1.0, 0.5], [0.4, 1.0]], 1), "covariance"),
        (lambda: GaussianTask([[1.0, 0.0], [0.0, 1.0]], 2), "x_dim"),
        (lambda: AdditiveUniformTask(0.0), "epsilon"),
        (lambda: get_task("1v1-normal-0.75").sample(0), "n"),
        (lambda: get_task("1v1-normal-0.75").sample(5, dtype=torch.int64), "dtype"),
    ],
)
def test_bad_parameters_raise_a_value_error_naming_the_parameter(build, parameter):
    with pytest.raises(ValueError, match=parameter):
        build()


def test_transforms_that_do_not_fit_the_dims_name_the_dimension():
    from pdlightning.tasks import Spiral, SwissRoll

    with pytest.raises(ValueError, match="y_dim must be at least 3"):
        TransformedTask(get_task("multinormal-dense-2-2-0.5"), Spiral((0, 1)), Spiral((1, 2)))
    with pytest.raises(ValueError, match="x_dim must be 1"):
        TransformedTask(get_task("multinormal-dense-2-2-0.5"), SwissRoll(), None)
    with pytest.raises(ValueError, match="transform_x and transform_y"):
        TransformedTask(get_task("1v1-normal-0.75"))
