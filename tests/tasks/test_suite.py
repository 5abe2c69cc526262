"""The registered v1 suite: ids, dims and MI against the published values, and sampler, PMI and MI checked
against each other on every task (E_p[PMI] = I and E_{p(x)p(y)}[exp PMI] = 1)."""

from __future__ import annotations

import math

import pytest
import torch

from pdlightning.tasks import (
    SUITES,
    UnknownTaskError,
    available_tasks,
    get_task,
    register_task,
    suite_task_ids,
    suite_tasks,
    unregister_task,
)

# Czyż et al. (NeurIPS 2023), v1 benchmark: id -> (x_dim, y_dim, MI in nats to 3 decimals), as published.
PUBLISHED = {
    "1v1-normal-0.75": (1, 1, 0.413),
    "normal_cdf-1v1-normal-0.75": (1, 1, 0.413),
    "1v1-additive-0.1": (1, 1, 1.709),
    "1v1-additive-0.75": (1, 1, 0.333),
    "1v1-bimodal-0.75": (1, 1, 0.413),
    "wiggly-1v1-normal-0.75": (1, 1, 0.413),
    "half_cube-1v1-normal-0.75": (1, 1, 0.413),
    "student-identity-1-1-1": (1, 1, 0.224),
    "asinh-student-identity-1-1-1": (1, 1, 0.224),
    "swissroll_x-normal_cdf-1v1-normal-0.75": (2, 1, 0.413),
    "multinormal-dense-2-2-0.5": (2, 2, 0.294),
    "multinormal-dense-3-3-0.5": (3, 3, 0.413),
    "multinormal-dense-5-5-0.5": (5, 5, 0.593),
    "multinormal-dense-25-25-0.5": (25, 25, 1.292),
    "multinormal-dense-50-50-0.5": (50, 50, 1.624),
    "multinormal-sparse-2-2-2-2.0": (2, 2, 1.022),
    "multinormal-sparse-3-3-2-2.0": (3, 3, 1.022),
    "multinormal-sparse-5-5-2-2.0": (5, 5, 1.022),
    "multinormal-sparse-25-25-2-2.0": (25, 25, 1.022),
    "student-identity-2-2-1": (2, 2, 0.432),
    "student-identity-2-2-2": (2, 2, 0.193),
    "student-identity-3-3-2": (3, 3, 0.291),
    "student-identity-3-3-3": (3, 3, 0.179),
    "student-identity-5-5-2": (5, 5, 0.448),
    "student-identity-5-5-3": (5, 5, 0.299),
    **{
        f"{t}-multinormal-sparse-{d}-{d}-2-2.0": (d, d, 1.022)
        for t in ("normal_cdf", "half_cube", "spiral", "spiral-normal_cdf")
        for d in (3, 5, 25)
    },
    "asinh-student-identity-2-2-1": (2, 2, 0.432),
    "asinh-student-identity-3-3-2": (3, 3, 0.291),
    "asinh-student-identity-5-5-2": (5, 5, 0.448),
}
V1_IDS = suite_task_ids("bmi-v1")


def test_the_v1_suite_has_the_40_published_ids():
    assert len(V1_IDS) == 40 == len(set(V1_IDS))
    assert set(V1_IDS) == set(PUBLISHED)
    assert [task.name for task in suite_tasks("bmi-v1")] == list(V1_IDS)


@pytest.mark.parametrize("task_id", V1_IDS)
def test_dims_and_mi_match_the_published_values(task_id):
    task = get_task(task_id)
    x_dim, y_dim, mi = PUBLISHED[task_id]
    assert (task.x_dim, task.y_dim) == (x_dim, y_dim)
    assert abs(task.mi - mi) <= 5e-4 + 1e-12  # the published value is rounded to 3 decimals
    assert task.mi_error <= 1e-12


@pytest.mark.parametrize("task_id", V1_IDS)
def test_pmi_is_normalised_under_the_joint_and_the_product_of_marginals(task_id):
    """E_p[PMI] = I (sampler, PMI and MI agree) and E_{p(x)p(y)}[e^PMI] = 1, each within 4 standard errors,
    with 1e5 joint pairs and 1e5 independent product pairs (x of one sample with y of another)."""
    task = get_task(task_id)
    n = 100_000
    joint = task.sample(n, generator=2024, dtype=torch.float64)
    assert torch.isfinite(joint.pmi).all()
    standard_error = joint.pmi.std().item() / math.sqrt(n)
    assert abs(joint.pmi.mean().item() - task.mi) < 4 * standard_error, (joint.pmi.mean().item(), task.mi)

    other = task.sample(n, generator=2025, dtype=torch.float64)
    ratio = task.pmi_of_latents(joint.latent_x, other.latent_y).exp()
    assert abs(ratio.mean().item() - 1.0) < 4 * ratio.std().item() / math.sqrt(n), ratio.mean().item()


@pytest.mark.parametrize("task_id", V1_IDS)
def test_sample_shapes_dtypes_and_determinism(task_id):
    task = get_task(task_id)
    sample = task.sample(64, generator=7)
    assert sample.x.shape == (64, task.x_dim) and sample.y.shape == (64, task.y_dim)
    assert sample.pmi.shape == (64,) and len(sample) == 64
    assert sample.x.dtype == sample.y.dtype == sample.pmi.dtype == torch.float32
    assert sample.latent_x.dtype == sample.latent_y.dtype == torch.float64
    assert all(torch.isfinite(t).all() for t in (sample.x, sample.y, sample.pmi))
    again = task.sample(64, generator=torch.Generator().manual_seed(7))
    assert torch.equal(sample.x, again.x) and torch.equal(sample.y, again.y) and torch.equal(sample.pmi, again.pmi)
    assert not torch.equal(sample.x, task.sample(64, generator=8).x)


@pytest.mark.parametrize("task_id", V1_IDS)
def test_pmi_matrix_diagonal_is_the_joint_pmi_and_entries_are_the_pairs_pmi(task_id):
    task = get_task(task_id)
    sample = task.sample(300, generator=3, dtype=torch.float64)
    matrix = task.pmi_matrix(sample)
    assert matrix.shape == (300, 300) and matrix.dtype == torch.float64
    torch.testing.assert_close(matrix.diagonal(), sample.pmi, rtol=0, atol=1e-10)
    # Off-diagonal entry (i, j) is the PMI of the pair (x_i, y_j), i.e. of the pre-images (u_i, v_j).
    shift = torch.roll(torch.arange(300), 1)
    torch.testing.assert_close(
        matrix[torch.arange(300), shift],
        task.pmi_of_latents(sample.latent_x, sample.latent_y[shift]),
        rtol=0,
        atol=1e-10,
    )


@pytest.mark.parametrize("task_id", ["multinormal-dense-3-3-0.5", "1v1-additive-0.1", "student-identity-2-2-1"])
def test_exp_pmi_matrix_off_diagonal_averages_to_one(task_id):
    """The product-of-marginals pairs of one sample (the off-diagonal) integrate e^PMI to 1."""
    task = get_task(task_id)
    matrix = task.pmi_matrix(task.sample(2000, generator=5, dtype=torch.float64))
    off = matrix[~torch.eye(2000, dtype=torch.bool)].exp()
    assert off.mean().item() == pytest.approx(1.0, abs=0.03)


def test_global_rng_is_used_without_a_generator():
    task = get_task("1v1-normal-0.75")
    torch.manual_seed(11)
    first = task.sample(10)
    torch.manual_seed(11)
    assert torch.equal(first.x, task.sample(10).x)


def test_unknown_id_lists_close_matches():
    with pytest.raises(UnknownTaskError, match=r"1v1-normal-0\.7'.*closest: 1v1-normal-0\.75"):
        get_task("1v1-normal-0.7")
    with pytest.raises(ValueError, match="multinormal-dense-25-25-0.5"):
        get_task("multinormal-dense-25-25-0.6")
    with pytest.raises(ValueError, match="suite must be one of"):
        suite_task_ids("bmi-v9")


def test_user_registration():
    from pdlightning.tasks import DenseGaussianTask

    name = register_task(lambda: DenseGaussianTask(4, 4, 0.3))
    try:
        assert name == "multinormal-dense-4-4-0.3"
        assert get_task(name).x_dim == 4
        with pytest.raises(ValueError, match="already registered"):
            register_task(DenseGaussianTask(4, 4, 0.3))
        register_task(DenseGaussianTask(4, 4, 0.2), name=name, overwrite=True)
        assert get_task(name).mi == pytest.approx(DenseGaussianTask(4, 4, 0.2).mi)
        with pytest.raises(TypeError, match="task must be a Task"):
            register_task(3)
    finally:
        unregister_task(name)
    assert name not in available_tasks() and "bmi-v1" in SUITES
    with pytest.raises(ValueError, match="belongs to a registered suite"):
        unregister_task("1v1-normal-0.75")


def test_tasks_build_from_class_path_with_jsonargparse():
    """A task (nested transforms included) is constructible from plain init args, as a config would give it."""
    from jsonargparse import ArgumentParser

    from pdlightning.tasks import Task

    parser = ArgumentParser()
    parser.add_argument("--task", type=Task)
    config = parser.parse_object(
        {
            "task": {
                "class_path": "pdlightning.tasks.TransformedTask",
                "init_args": {
                    "base": {
                        "class_path": "pdlightning.tasks.SparseGaussianTask",
                        "init_args": {"x_dim": 5, "y_dim": 5, "n_interacting": 2, "strength": 2.0},
                    },
                    "transform_x": {"class_path": "pdlightning.tasks.Spiral", "init_args": {"plane": [0, 1]}},
                    "transform_y": {"class_path": "pdlightning.tasks.Spiral", "init_args": {"plane": [1, 2]}},
                },
            }
        }
    )
    task = parser.instantiate_classes(config).task
    reference = get_task("spiral-multinormal-sparse-5-5-2-2.0")
    assert task.name == reference.name and task.mi == reference.mi
    assert torch.equal(task.sample(50, generator=1).x, reference.sample(50, generator=1).x)
