"""Device placement: a seed names the same sample on every device; CUDA draws and PMI matrices where available."""

from __future__ import annotations

import pytest
import torch

from pdlightning.metrics import PMIRootMeanSquaredError
from pdlightning.tasks import get_task

TASK_IDS = [
    "multinormal-sparse-5-5-2-2.0",
    "student-identity-3-3-2",
    "1v1-additive-0.1",
    "1v1-bimodal-0.75",
    "spiral-normal_cdf-multinormal-sparse-5-5-2-2.0",
    "swissroll_x-normal_cdf-1v1-normal-0.75",
]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_sample_to_keeps_every_field():
    sample = get_task("1v1-normal-0.75").sample(10, generator=0, device="cpu")
    moved = sample.to("cpu")
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            (sample.x, sample.y, sample.pmi, sample.latent_x, sample.latent_y),
            (moved.x, moved.y, moved.pmi, moved.latent_x, moved.latent_y),
        )
    )


@cuda
@pytest.mark.parametrize("task_id", TASK_IDS)
def test_a_cpu_seed_gives_the_same_sample_on_cuda(task_id):
    task = get_task(task_id)
    on_cpu = task.sample(500, generator=3, dtype=torch.float64)
    on_gpu = task.sample(500, generator=3, device="cuda", dtype=torch.float64)
    assert on_gpu.x.is_cuda and on_gpu.latent_x.is_cuda
    torch.testing.assert_close(on_gpu.x.cpu(), on_cpu.x)
    torch.testing.assert_close(on_gpu.pmi.cpu(), on_cpu.pmi)
    torch.testing.assert_close(task.pmi_matrix(on_gpu).cpu(), task.pmi_matrix(on_cpu), rtol=0, atol=1e-9)


@cuda
@pytest.mark.parametrize("task_id", TASK_IDS)
def test_cuda_generator_draws_on_the_gpu_and_stays_normalised(task_id):
    task = get_task(task_id)
    sample = task.sample(100_000, generator=torch.Generator(device="cuda").manual_seed(0), dtype=torch.float64)
    assert sample.x.is_cuda and sample.pmi.is_cuda
    standard_error = sample.pmi.std().item() / 100_000**0.5
    assert abs(sample.pmi.mean().item() - task.mi) < 4 * standard_error
    metric = PMIRootMeanSquaredError().to("cuda")
    metric.update(sample.pmi + 0.5, sample.pmi)
    assert metric.compute().item() == pytest.approx(0.5)
