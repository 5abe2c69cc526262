"""PointwiseAccuracy: the logged statistics equal their closed forms for critics with a known error, only the
shift-invariant ones are logged for a PMI defined up to a constant, and the profile reaches TensorBoard (read with
TensorBoard's own EventAccumulator) and a PNG."""

from __future__ import annotations

import math
import os
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pdlightning.bounds import VariationalPlugIn
from pdlightning.callbacks import PointwiseAccuracy
from pdlightning.data import SubStream, TaskDataModule
from pdlightning.modules import MIEstimationModule
from pdlightning.tasks import get_task
from tests.modules.test_pointwise_eval import ExactPMICritic

TASK = "multinormal-dense-2-2-0.5"


class ShiftInvariantPlugIn(VariationalPlugIn):
    """A plug-in bound whose PMI is declared to be defined only up to a constant."""

    pmi_up_to_constant = True


def data(task: str = TASK) -> TaskDataModule:
    return TaskDataModule(task, n_samples=1600, batch_size=64, eval_batch_size=200, standardize=False)


def run_test(tmp_path, bound, offset: float = 0.0, task: str = TASK, **callback_kwargs):
    module = MIEstimationModule(ExactPMICritic(get_task(task), offset=offset), bound, summary=False)
    trainer = L.Trainer(
        logger=TensorBoardLogger(str(tmp_path), name="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PointwiseAccuracy(**callback_kwargs)],
        accelerator="cpu",
        devices=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = trainer.test(module, data(task), verbose=False)[0]
    trainer.logger.experiment.flush()
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    return metrics, events, trainer.logger.log_dir


def held_out_pairs(task: str = TASK) -> dict[str, torch.Tensor]:
    datamodule = data(task)
    batches = [datamodule.batch_at(i, SubStream.TEST) for i in range(datamodule.eval_batches)]
    return {key: torch.cat([b[key] for b in batches]) for key in ("pmi", "pmi_product")}


def test_an_exact_critic_scores_zero_error_and_the_profile_reaches_tensorboard(tmp_path):
    metrics, events, log_dir = run_test(tmp_path, VariationalPlugIn())
    exact = held_out_pairs()
    for name in ("rmse", "centred_rmse", "mae", "plug_in_bias"):
        assert metrics[f"test/pmi_joint_{name}"] == pytest.approx(0.0, abs=1e-5), name
    for name in ("rmse", "centred_rmse", "mae"):
        assert metrics[f"test/pmi_product_{name}"] == pytest.approx(0.0, abs=1e-5), name
    assert metrics["test/pmi_joint_spearman"] == pytest.approx(1.0) == metrics["test/pmi_product_spearman"]
    assert metrics["test/pmi_exact_mean"] == pytest.approx(exact["pmi"].mean().item(), abs=1e-5)
    assert metrics["test/pmi_plug_in_mi"] == pytest.approx(exact["pmi"].mean().item(), abs=1e-5)
    # E_{p(x)p(y)}[r] = 1: the exact ratio's log mean over 800 product pairs is 0 up to sampling noise
    assert abs(metrics["test/pmi_product_log_mean_ratio"]) < 0.15
    assert metrics["test/pmi_product_off_support"] == 0.0
    tags = events.Tags()
    assert {"test/pmi_joint_rmse", "test/pmi_joint_spearman", "test/pmi_product_rmse"} <= set(tags["scalars"])
    assert {"test/pmi_profile/exact", "test/pmi_profile/estimated"} <= set(tags["histograms"])
    histogram = events.Histograms("test/pmi_profile/exact")[0].histogram_value
    assert histogram.num == 800 and histogram.sum == pytest.approx(exact["pmi"].sum().item(), rel=1e-4)
    assert tags["images"] == ["test/pmi_profile"] and os.path.isfile(os.path.join(log_dir, "pmi_profile_test.png"))


def test_a_constant_error_is_bias_and_rmse_but_not_centred_rmse(tmp_path):
    metrics, _, _ = run_test(tmp_path, VariationalPlugIn(), offset=0.5, histograms=False, figure=False)
    for name in ("rmse", "mae", "plug_in_bias"):
        assert metrics[f"test/pmi_joint_{name}"] == pytest.approx(0.5, abs=1e-5), name
    assert metrics["test/pmi_joint_centred_rmse"] == pytest.approx(0.0, abs=1e-3)
    assert metrics["test/pmi_product_rmse"] == pytest.approx(0.5, abs=1e-5)
    assert metrics["test/pmi_plug_in_mi"] == pytest.approx(metrics["test/pmi_exact_mean"] + 0.5, abs=1e-5)
    exact_ratio = math.log(held_out_pairs()["pmi_product"].double().exp().mean().item())
    assert metrics["test/pmi_product_log_mean_ratio"] == pytest.approx(exact_ratio + 0.5, abs=1e-4)


def test_a_pmi_defined_up_to_a_constant_logs_only_shift_invariant_statistics(tmp_path):
    metrics, events, _ = run_test(tmp_path, ShiftInvariantPlugIn(), offset=2.0, figure=False)
    logged = {k.removeprefix("test/") for k in metrics if k.startswith("test/pmi_")}
    assert logged == {
        "pmi_joint_centred_rmse",
        "pmi_joint_spearman",
        "pmi_product_centred_rmse",
        "pmi_product_spearman",
        "pmi_product_off_support",
        "pmi_exact_mean",
    }
    assert metrics["test/pmi_joint_centred_rmse"] == pytest.approx(0.0, abs=1e-3)
    assert "test/pmi_profile/estimated" in events.Tags()["histograms"] and not events.Tags()["images"]


def test_off_support_product_pairs_are_counted_skipped_by_errors_and_ranked_lowest(tmp_path):
    task = "1v1-additive-0.1"  # most product pairs lie outside the band |y - x| <= 0.1: exact PMI -inf
    metrics, _, _ = run_test(tmp_path, VariationalPlugIn(), task=task, histograms=False, figure=False)
    exact = held_out_pairs(task)["pmi_product"]
    off = (~torch.isfinite(exact)).double().mean().item()
    assert 0.5 < off < 1.0 and metrics["test/pmi_product_off_support"] == pytest.approx(off)
    # the exact critic scores them -inf too: -inf - (-inf) would be NaN if the errors did not skip them
    assert metrics["test/pmi_product_rmse"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["test/pmi_product_spearman"] == pytest.approx(1.0)  # kept, tied at the lowest rank


def test_bad_settings_name_the_parameter():
    with pytest.raises(ValueError, match="max_profile_pairs"):
        PointwiseAccuracy(max_profile_pairs=0)
