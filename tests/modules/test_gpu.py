"""The engine on a CUDA device (skipped without one): the same numbers as on the CPU, and a step that logs nothing
never waits for the device (no host synchronisation: every decision stays on the device)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import lightning as L
import pytest
import torch

from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import Member, MIEstimationModule
from pdlightning.records import step_records

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
MEMBERS = [Member("nwj", seed=1), Member("smile_tau5", seed=2), Member("pd_classifier", seed=3), Member("mine", seed=4)]


class Estimates(L.Callback):
    def __init__(self) -> None:
        self.rows: list[list[float]] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        for record in step_records(outputs):
            self.rows.append(record.estimate.detach().cpu().tolist())


def _fit(accelerator: str, steps: int = 30, **kwargs: Any) -> tuple[MIEstimationModule, list[list[float]]]:
    torch.manual_seed(0)
    module = MIEstimationModule(critic=JointCritic(4, 4, [32, 32]), members=MEMBERS, summary=False, **kwargs)
    estimates = Estimates()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(
            max_steps=steps,
            accelerator=accelerator,
            devices=1,
            logger=False,
            log_every_n_steps=10,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[estimates],
        ).fit(module, CorrelatedGaussianDataModule(dim=4, mi_schedule=[1.0], steps_per_level=steps, batch_size=32))
    return module, estimates.rows


@cuda
def test_members_on_cuda_follow_their_cpu_runs():
    _, on_cpu = _fit("cpu")
    _, on_gpu = _fit("gpu")
    worst = max(abs(a - b) for cpu, gpu in zip(on_cpu, on_gpu) for a, b in zip(cpu, gpu))
    assert len(on_gpu) == 30 and worst < 1e-3 and all(math.isfinite(v) for row in on_gpu for v in row)


@cuda
def test_a_step_that_logs_nothing_never_synchronises_with_the_device():
    """``torch.cuda.set_sync_debug_mode("error")`` turns any host synchronisation into an error: the module's own
    hooks of a step that is no logging step (training step, the gradient check and update mask, the batch end)
    run under it."""

    class Strict(MIEstimationModule):
        def _strict(self, hook: Any, *args: Any) -> Any:
            logging = (self.global_step + 1) % self.trainer.log_every_n_steps == 0 or self.global_step == 0
            if logging:
                return hook(*args)
            torch.cuda.set_sync_debug_mode("error")
            try:
                return hook(*args)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        def training_step(self, *args: Any) -> Any:
            return self._strict(super().training_step, *args)

        def on_before_optimizer_step(self, *args: Any) -> None:
            self._strict(super().on_before_optimizer_step, *args)

        def on_train_batch_end(self, *args: Any) -> None:
            self._strict(super().on_train_batch_end, *args)

    torch.manual_seed(0)
    module = Strict(critic=JointCritic(4, 4, [32, 32]), members=MEMBERS, summary=False, level_snapshots=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(
            max_steps=25,
            accelerator="gpu",
            devices=1,
            logger=False,
            log_every_n_steps=10,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        ).fit(module, CorrelatedGaussianDataModule(dim=4, mi_schedule=[1.0], steps_per_level=25, batch_size=32))
    assert module.global_step == 25
