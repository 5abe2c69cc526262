"""The maps are injective (inverses recover the pre-images), match their published formulas, and leave the MI
and PMI of every task unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg, stats

from pdlightning.tasks import (
    WIGGLY_X,
    WIGGLY_Y,
    Asinh,
    GaussianMixtureQuantile,
    HalfCube,
    NormalCDF,
    Spiral,
    SwissRoll,
    Task,
    TransformedTask,
    Wiggly,
    get_task,
    suite_task_ids,
)

MAPS = {
    "normal_cdf": (NormalCDF(), 1),
    "half_cube": (HalfCube(), 3),
    "asinh": (Asinh(), 3),
    "wiggly_x": (Wiggly(**WIGGLY_X), 3),
    "wiggly_y": (Wiggly(**WIGGLY_Y), 3),
    "spiral": (Spiral((1, 2), speed=1.0), 4),
    "mixture": (GaussianMixtureQuantile([0.3, 0.7], [0.0, 5.0]), 2),
}


@pytest.mark.parametrize("key", MAPS)
def test_inverse_recovers_the_pre_image(key):
    transform, dim = MAPS[key]
    z = torch.randn(2000, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.0
    if key == "normal_cdf":  # Φ(z) rounds to 1 in float64 with relative error ~1e-16 / Φ(-|z|): stay in |z| <= 5
        z = z.clamp(-5.0, 5.0)
    torch.testing.assert_close(transform.inverse(transform(z)), z, rtol=0, atol=1e-8)


def test_swiss_roll_inverse_and_formula():
    u = torch.rand(1000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = SwissRoll()(u)
    s = 1.5 * np.pi * (1 + 2 * u[:, 0].numpy())
    np.testing.assert_allclose(t.numpy(), np.stack([s * np.cos(s), s * np.sin(s)], 1) / 21.0, atol=1e-14)
    torch.testing.assert_close(SwissRoll().inverse(t), u, rtol=0, atol=1e-12)


def test_elementwise_maps_match_their_formulas_and_increase():
    z = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    torch.testing.assert_close(HalfCube()(z), torch.sign(z) * z.abs() ** 1.5)
    zn = z.numpy()
    wiggly_x = zn + 0.4 * np.sin(zn) + 0.2 * np.sin(1.7 * zn + 1) + 0.03 * np.sin(3.3 * zn - 2.5)
    wiggly_y = zn - 0.4 * np.sin(0.4 * zn) + 0.17 * np.sin(1.3 * zn + 3.5) + 0.02 * np.sin(4.3 * zn - 2.5)
    np.testing.assert_allclose(Wiggly(**WIGGLY_X)(z).numpy(), wiggly_x, atol=1e-14)
    np.testing.assert_allclose(Wiggly(**WIGGLY_Y)(z).numpy(), wiggly_y, atol=1e-14)
    for transform in (
        NormalCDF(),
        HalfCube(),
        Asinh(),
        Wiggly(**WIGGLY_X),
        Wiggly(**WIGGLY_Y),
        GaussianMixtureQuantile([0.5, 0.5], [-1.0, 3.0]),
    ):
        values = transform(z[(z > -6) & (z < 6)])
        assert (values.diff() > 0).all(), transform
    with pytest.raises(ValueError, match="sum"):
        Wiggly([1.0], [1.5], [0.0])


def test_spiral_is_the_matrix_exponential_of_the_so_n_generator():
    """R(z) = expm(speed/d · ||z||² · A) with A[i, j] = -1, A[j, i] = 1 (scipy's expm, independently)."""
    dim, (i, j) = 5, (1, 2)
    generator = np.zeros((dim, dim))
    generator[i, j], generator[j, i] = -1.0, 1.0
    z = np.random.default_rng(0).normal(size=(20, dim)) * 2
    expected = np.stack([linalg.expm(generator * (1.0 / dim) * (p @ p)) @ p for p in z])
    np.testing.assert_allclose(Spiral((i, j))(torch.from_numpy(z)).numpy(), expected, atol=1e-12)


def test_mixture_quantile_gives_the_mixture_marginal_and_finite_tails():
    sample = get_task("1v1-bimodal-0.75").sample(20_000, generator=0, dtype=torch.float64)
    for values, weights, means in ((sample.x, (0.3, 0.7), (0.0, 5.0)), (sample.y, (0.5, 0.5), (-1.0, 3.0))):

        def cdf(t, weights=weights, means=means):
            return sum(w * stats.norm.cdf(t - m) for w, m in zip(weights, means))

        assert stats.kstest(values[:, 0].numpy(), cdf).pvalue > 1e-3
    tails = GaussianMixtureQuantile([0.3, 0.7], [0.0, 5.0])(torch.tensor([-30.0, -9.0, 9.0, 30.0], dtype=torch.float64))
    assert torch.isfinite(tails).all() and (tails.diff() > 0).all()
    assert tails[-1].item() == pytest.approx(35.0, abs=0.5)  # the upper tail follows the N(5, 1) component


def test_normal_cdf_marginals_are_uniform():
    sample = get_task("normal_cdf-multinormal-sparse-3-3-2-2.0").sample(20_000, generator=0, dtype=torch.float64)
    for column in torch.cat([sample.x, sample.y], 1).T:
        assert stats.kstest(column.numpy(), "uniform").pvalue > 1e-3


def invert_observations(task: Task, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk a chain of transformed tasks back to the base pre-images."""
    while isinstance(task, TransformedTask):
        x = x if task.transform_x is None else task.transform_x.inverse(x)
        y = y if task.transform_y is None else task.transform_y.inverse(y)
        task = task.base
    return x, y


@pytest.mark.parametrize("task_id", [t for t in suite_task_ids() if isinstance(get_task(t), TransformedTask)])
def test_transformed_tasks_keep_the_base_mi_and_pmi_and_their_observations_invert_to_the_latents(task_id):
    task = get_task(task_id)
    base = task
    while isinstance(base, TransformedTask):
        base = base.base
    assert task.mi == base.mi
    sample = task.sample(500, generator=9, dtype=torch.float64)
    base_sample = base.sample(500, generator=9, dtype=torch.float64)
    assert torch.equal(sample.pmi, base_sample.pmi)
    assert torch.equal(sample.latent_x, base_sample.latent_x)
    assert not torch.equal(sample.x, base_sample.x) or not torch.equal(sample.y, base_sample.y)
    # Injective: the observations determine the pre-images, so the PMI is a function of (x, y).
    latent_x, latent_y = invert_observations(task, sample.x, sample.y)
    torch.testing.assert_close(latent_x, sample.latent_x, rtol=0, atol=1e-6)
    torch.testing.assert_close(latent_y, sample.latent_y, rtol=0, atol=1e-6)
    torch.testing.assert_close(task.pmi_of_latents(latent_x, latent_y), sample.pmi, rtol=0, atol=1e-5)


def test_default_names_follow_the_suite_scheme():
    base = get_task("1v1-normal-0.75")
    assert TransformedTask(base, HalfCube(), HalfCube()).name == "half_cube-1v1-normal-0.75"
    assert TransformedTask(base, None, Asinh()).name == "asinh_y-1v1-normal-0.75"
    assert TransformedTask(base, HalfCube(), Asinh()).name == "half_cube_x-asinh_y-1v1-normal-0.75"
    assert TransformedTask(base, HalfCube(), HalfCube(), name="mine").name == "mine"
    assert math.isclose(TransformedTask(base, HalfCube(), None).mi, base.mi)
