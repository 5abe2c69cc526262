"""End to end: a short fit with the diagnostics, read back with TensorBoard's own loader."""

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pdlightning.bounds import MINE, InfoNCE
from pdlightning.callbacks import BiasVarianceMSE, DriftMonitor, StaircaseFigure
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule, OneHotDataModule
from pdlightning.modules import MIEstimationModule


def _fit(tmp_path, module, datamodule, steps, callbacks, log_every=1):
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=1,
        logger=TensorBoardLogger(str(tmp_path), name="run"),
        callbacks=callbacks,
        log_every_n_steps=log_every,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, datamodule)
    accumulator = EventAccumulator(trainer.logger.log_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    accumulator.Reload()
    return trainer, accumulator


def _onehot_module(seed=0):
    torch.manual_seed(seed)
    return MIEstimationModule(
        JointCritic(16, 16, (32, 32)), MINE(), optimizer=lambda params: torch.optim.SGD(params, lr=0.1)
    )


def test_onehot_fit_logs_every_tag_at_every_step(tmp_path):
    steps = 12
    callbacks = [DriftMonitor(histogram_every_n_steps=4), BiasVarianceMSE(verbose=False), StaircaseFigure()]
    trainer, events = _fit(tmp_path, _onehot_module(), OneHotDataModule(batch_size=64, steps=steps), steps, callbacks)
    tags = events.Tags()
    expected = ["drift/first_term", "drift/second_term", "drift/mi_estimate"] + [
        f"drift/T_{group}_{stat}"
        for group in ("joint", "marginal", "marginal_off_support")
        for stat in ("mean", "q10", "q50", "q90")
    ]
    for tag in expected:
        assert [e.step for e in events.Scalars(tag)] == list(range(steps)), tag
    # Same step index as the module's own scalars.
    assert [e.step for e in events.Scalars("mi/estimate")] == list(range(steps))
    drift_mi = [e.value for e in events.Scalars("drift/mi_estimate")]
    assert drift_mi == pytest.approx([e.value for e in events.Scalars("mi/estimate")], rel=1e-5)
    # In-support pairs are flagged with probability 1/16: present on some steps only.
    assert 0 < len(events.Scalars("drift/T_marginal_in_support_mean")) <= steps
    for group in ("joint", "marginal", "marginal_off_support"):
        assert [e.step for e in events.Histograms(f"drift/T_{group}")] == [0, 4, 8]
    assert "drift/true_mi" not in tags["scalars"]  # recorded for the figure, logged by the module as mi/true
    assert set(tags["images"]) == {"drift/figure", "staircase/figure"}
    assert len(events.Images("drift/figure")) == 1
    level = f"{math.log(16):g}"
    for name in ("mean", "bias", "variance", "mse"):
        assert len(events.Scalars(f"bias_variance/{name}@{level}")) == 1
    _, series = callbacks[0].series()
    assert series["true_mi"] == pytest.approx([math.log(16)] * steps)
    run_dir = trainer.logger.log_dir
    for name in ("drift.png", "staircase.png", "bias_variance.csv", "bias_variance.md"):
        assert (tmp_path / "run" / "version_0" / name).exists(), name
    assert run_dir.endswith("version_0")


def test_logging_cadence_follows_log_every_n_steps(tmp_path):
    trainer, events = _fit(
        tmp_path,
        _onehot_module(),
        OneHotDataModule(batch_size=16, steps=9),
        9,
        [DriftMonitor(histogram_every_n_steps=0, figure=False)],
        log_every=3,
    )
    assert [e.step for e in events.Scalars("drift/first_term")] == [2, 5, 8]
    assert [e.step for e in events.Scalars("mi/estimate")] == [2, 5, 8]
    assert not events.Tags()["histograms"] and not events.Tags()["images"]


def test_gaussian_fit_has_no_support_split_and_one_bias_row_per_level(tmp_path):
    torch.manual_seed(0)
    module = MIEstimationModule(JointCritic(20, 20, (32, 32)), InfoNCE())
    data = CorrelatedGaussianDataModule(mi_schedule=[2.0, 4.0], steps_per_level=5, batch_size=16)
    _, events = _fit(
        tmp_path, module, data, 10, [DriftMonitor(histogram_every_n_steps=5), BiasVarianceMSE(verbose=False)]
    )
    scalars = events.Tags()["scalars"]
    assert "drift/T_marginal_mean" in scalars and not any("support" in tag for tag in scalars)
    assert {"bias_variance/bias@2", "bias_variance/bias@4"} <= set(scalars)
    assert [e.step for e in events.Histograms("drift/T_marginal")] == [0, 5]


def test_callbacks_observe_only(tmp_path):
    """The same seeded fit with and without the diagnostics ends at the same parameters."""
    finals = []
    for callbacks in ([], [DriftMonitor(histogram_every_n_steps=2), BiasVarianceMSE(verbose=False), StaircaseFigure()]):
        module = _onehot_module(seed=1)
        _fit(tmp_path / str(len(callbacks)), module, OneHotDataModule(batch_size=16, steps=6, seed=1), 6, callbacks)
        finals.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.equal(finals[0], finals[1])
