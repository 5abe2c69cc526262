"""The high-MI suite (the TRE protocol's correlated Gaussians at 10-80 nats and their non-Gaussian versions): MI
against the closed forms, sampler, PMI and MI against each other, PMI against scipy's densities, the non-Gaussian
versions' MI and PMI, and the reachability limit named by its parameter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pdlightning.report.suite import resolve_suite_tasks
from pdlightning.tasks import (
    HIGH_MI_LEVELS,
    CorrelatedGaussianTask,
    CorrelatedStudentTTask,
    TransformedTask,
    correlation_for_mi,
    get_task,
    student_t_mi_correction,
    suite_task_ids,
)

HIGH_MI = suite_task_ids("high-mi")


def test_the_suite_holds_the_four_tre_levels_in_four_families():
    assert len(HIGH_MI) == 16 == len(set(HIGH_MI))
    levels = [(d, mi) for d, mi in HIGH_MI_LEVELS]
    assert levels == [(20, 10.0), (40, 20.0), (80, 40.0), (160, 80.0)]  # Rhodes, Xu & Gutmann (2020), Fig. 4
    assert list(HIGH_MI[:4]) == [f"tre-normal-{d}-{mi}" for d, mi in levels]
    for prefix in ("half_cube-tre-normal", "asinh-tre-normal", "tre-student"):
        assert sum(name.startswith(prefix) for name in HIGH_MI) == 4
    # resolvable wherever suites are resolved (pdlightning-report --suite high-mi)
    assert resolve_suite_tasks("high-mi", None) == list(HIGH_MI)
    assert resolve_suite_tasks("high-mi", ["tre-normal-40-20.0"]) == ["tre-normal-40-20.0"]


@pytest.mark.parametrize("task_id", HIGH_MI)
def test_dims_and_closed_form_mi(task_id):
    task = get_task(task_id)
    dim, mi = next((d, m) for d, m in HIGH_MI_LEVELS if f"-{d}-" in task_id and task_id.endswith(f"-{m}"))
    assert (task.x_dim, task.y_dim) == (dim, dim)
    assert task.mi == pytest.approx(mi, abs=1e-9) and task.mi_error == 0.0
    if task_id.startswith("tre-normal"):
        rho = task.correlation
        assert -dim / 2 * math.log(1 - rho**2) == pytest.approx(mi, abs=1e-9)


@pytest.mark.parametrize("task_id", HIGH_MI)
def test_the_mean_joint_pmi_is_the_mi_and_the_sampler_has_the_correlation(task_id):
    """E_p[PMI] = I within 4 standard errors of a 20,000-pair Monte Carlo (sampler, PMI and MI agree), and the
    latents have the per-coordinate correlation of the task (Gaussian: rho; Student: the dispersion's rho)."""
    task = get_task(task_id)
    n = 20_000
    sample = task.sample(n, generator=11, dtype=torch.float64)
    assert torch.isfinite(sample.pmi).all() and torch.isfinite(sample.x).all() and torch.isfinite(sample.y).all()
    standard_error = sample.pmi.std().item() / math.sqrt(n)
    assert abs(sample.pmi.mean().item() - task.mi) < 4 * standard_error, (sample.pmi.mean().item(), task.mi)
    base = task.base if isinstance(task, TransformedTask) else task
    u, v = sample.latent_x, sample.latent_y
    if isinstance(base, CorrelatedGaussianTask):
        correlation = ((u * v).mean(0) / (u.std(0) * v.std(0))).mean().item()  # averaged over the coordinates
        assert correlation == pytest.approx(base.correlation, abs=4 * (1 - base.correlation**2) / math.sqrt(n * 20))


@pytest.mark.parametrize(
    "task", [CorrelatedGaussianTask(3, 2.0), CorrelatedStudentTTask(3, 2.0, dof=4.0)], ids=lambda t: t.name
)
def test_pmi_of_joint_and_product_pairs_matches_scipy_densities(task):
    """PMI = log p(x, y) - log p(x) - log p(y) with scipy's densities, on joint pairs and on product pairs."""
    sample = task.sample(400, generator=3, dtype=torch.float64)
    shifted = torch.roll(sample.latent_y, 1, 0)  # (x_i, y_{i-1}): product-of-marginals pairs
    d = task.x_dim
    if isinstance(task, CorrelatedStudentTTask):
        dispersion = task.dispersion.numpy()
        joint = stats.multivariate_t(np.zeros(2 * d), dispersion, df=task.dof)
        marginal = stats.multivariate_t(np.zeros(d), np.eye(d), df=task.dof)
    else:
        joint = stats.multivariate_normal(np.zeros(2 * d), task.covariance.numpy())
        marginal = stats.multivariate_normal(np.zeros(d), np.eye(d))
    for y in (sample.latent_y, shifted):
        xy = torch.cat([sample.latent_x, y], 1).numpy()
        expected = joint.logpdf(xy) - marginal.logpdf(xy[:, :d]) - marginal.logpdf(xy[:, d:])
        got = task.pmi_of_latents(sample.latent_x, y).numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)


def test_low_mi_members_of_the_families_integrate_e_pmi_to_one_under_the_product():
    """E_{p(x)p(y)}[e^PMI] = 1 (within 4 standard errors) at a level where that Monte Carlo has a finite, small
    variance; at 10+ nats its variance is of order e^{2I} and no sample can check it."""
    for task in (CorrelatedGaussianTask(2, 0.5), CorrelatedStudentTTask(2, 0.5, dof=5.0)):
        a, b = task.sample(100_000, generator=1, dtype=torch.float64), task.sample(100_000, generator=2)
        ratio = task.pmi_of_latents(a.latent_x, b.latent_y).exp()
        assert abs(ratio.mean().item() - 1.0) < 4 * ratio.std().item() / math.sqrt(100_000), task.name


@pytest.mark.parametrize("dim, mi", HIGH_MI_LEVELS)
def test_non_gaussian_versions_keep_the_mi_and_the_pmi_of_every_pair(dim, mi):
    """half_cube / asinh observe the same latents through injective maps: MI and PMI of every pair are the base's
    (the maps invert back to the latents), while the observations are far from Gaussian."""
    gaussian = CorrelatedGaussianTask(dim, mi)
    for prefix in ("half_cube", "asinh"):
        task = get_task(f"{prefix}-{gaussian.name}")
        assert isinstance(task, TransformedTask) and task.mi == gaussian.mi
        sample = task.sample(2000, generator=5, dtype=torch.float64)
        reference = gaussian.sample(2000, generator=5, dtype=torch.float64)
        assert torch.equal(sample.latent_x, reference.latent_x) and torch.equal(sample.pmi, reference.pmi)
        assert task.transform_x is not None and task.transform_y is not None
        recovered_x, recovered_y = task.transform_x.inverse(sample.x), task.transform_y.inverse(sample.y)
        torch.testing.assert_close(recovered_x, sample.latent_x, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(task.pmi_of_latents(recovered_x, recovered_y), sample.pmi, rtol=0, atol=1e-6)
        kurtosis = stats.kurtosis(sample.x.flatten().numpy())  # 0 for a Gaussian; SE about sqrt(24 / n) = 0.02
        assert abs(kurtosis) > 0.5, (prefix, kurtosis)


def test_the_student_version_matches_the_mi_with_a_closed_form_correction():
    for dim, mi in HIGH_MI_LEVELS:
        task = CorrelatedStudentTTask(dim, mi, dof=5.0)
        correction = student_t_mi_correction(dim, dim, 5.0)
        assert task.gaussian_part == pytest.approx(mi - correction, abs=1e-9)
        assert task.correlation == pytest.approx(correlation_for_mi(mi - correction, dim), abs=1e-15)
        assert task.correlation < CorrelatedGaussianTask(dim, mi).correlation  # the shared chi-square carries some


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: CorrelatedGaussianTask(2, 80.0), r"^mi: 80 nats in dim=2 .* 2\^-23 .* can reach 15\.9"),
        (lambda: CorrelatedGaussianTask(20, 160.0), r"^mi: 160 nats in dim=20"),
        (lambda: CorrelatedStudentTTask(2, 80.0), r"^mi: "),
        (lambda: CorrelatedGaussianTask(20, -1.0), r"^mi must be a finite number of nats >= 0"),
        (lambda: CorrelatedGaussianTask(20, math.nan), r"^mi must be"),
        (lambda: CorrelatedGaussianTask(0, 1.0), r"^dim must be a positive integer"),
        (lambda: CorrelatedStudentTTask(20, 0.1, dof=5.0), r"^mi: a 20-dimensional t with dof=5 holds at least"),
        (lambda: CorrelatedStudentTTask(20, 10.0, dof=0.0), r"^dof"),
    ],
)
def test_unreachable_or_bad_parameters_raise_naming_the_parameter(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_the_reachability_limit_is_float32s_resolution_of_the_correlation():
    """Just inside the limit, rho is below 1 in float32 and the float32 observations' covariance is non-singular;
    just past it, construction fails."""
    limit = -0.5 * math.log(2.0**-23)
    task = CorrelatedGaussianTask(2, 2 * limit * 0.999)
    assert torch.tensor(task.correlation, dtype=torch.float32).item() < 1.0
    sample = task.sample(50_000, generator=0)
    assert torch.linalg.eigvalsh(torch.cov(torch.cat([sample.x, sample.y], 1).T.double())).min() > 0
    with pytest.raises(ValueError, match="^mi: "):
        CorrelatedGaussianTask(2, 2 * limit * 1.001)
