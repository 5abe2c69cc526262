"""Pointwise accuracy of the estimated PMI on held-out pairs against the exact PMI (the task suite).

An MI module's validation / test step on a batch with the exact PMI of its pairs returns a
:class:`~pdlightning.records.PointwiseRecord` (each pair's estimated PMI, a function of the pair
alone). :class:`PointwiseAccuracy` feeds the records to the metrics of :mod:`pdlightning.metrics` and logs, per
validation / test run:

- joint pairs ``(x_i, y_i) ~ p(x, y)``: ``{stage}/pmi_joint_rmse``, ``_centred_rmse``, ``_mae``, ``_spearman`` and
  ``_plug_in_bias`` (``mean (PMI_hat - PMI)``: the plug-in MI's error due to the PMI estimate, free of the sample's
  own deviation from the MI); ``{stage}/pmi_plug_in_mi`` (``mean PMI_hat``) and ``{stage}/pmi_exact_mean``
  (``mean PMI`` of the same pairs);
- product-of-marginals pairs (the batch's ``x_product`` / ``y_product``): ``{stage}/pmi_product_rmse``,
  ``_centred_rmse``, ``_mae``, ``_spearman``, ``_log_mean_ratio`` (``log mean exp PMI_hat``, 0 for a normalised
  ratio since ``E_{p(x)p(y)}[r] = 1``) and ``_off_support`` (the share of pairs outside the joint support, exact PMI
  ``-inf``: the error metrics skip them, the rank correlation keeps them at the lowest rank);
- the PMI profile: histograms ``{stage}/pmi_profile/exact`` and ``.../estimated`` of the joint pairs' PMI, and the
  figure :func:`~.figures.pmi_profile_figure` (image ``{stage}/pmi_profile``, ``pmi_profile_{stage}.png`` in the run
  directory).

**PMI defined up to a constant.** For a bound that declares
:attr:`~pdlightning.bounds.Bound.pmi_up_to_constant`, ``PMI_hat = PMI + c`` with an arbitrary ``c`` is as good as
``PMI_hat = PMI``: the objective cannot tell them apart, so ``c`` is not an error of the estimator, yet the RMSE,
MAE and plug-in bias would count it (the bias *is* ``c``). Only the statistics invariant to the shift are logged
then: the rank correlation and the centred RMSE ``sqrt(Var(PMI_hat - PMI))`` (the RMSE after the best constant
shift); the plug-in MI and ``log_mean_ratio`` shift with ``c`` and are left out too. None of the package's bounds is
such a bound: DV / MINE / SMILE subtract their estimated log-partition and InfoNCE its row normaliser, which fixes
``c`` (their optimal critics are ``PMI + c``, resp. ``PMI + c(x)``, and the normaliser removes it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection

from pdlightning.metrics import (
    LogMeanRatio,
    PMIMeanAbsoluteError,
    PMIRootMeanSquaredError,
    PMISpearmanCorrCoef,
    pointwise_pmi_metrics,
)
from pdlightning.records import PointwiseRecord, pointwise_records

from .figures import pmi_profile_figure
from .output import publish_figure, run_directory, tensorboard_writers

__all__ = ["PointwiseAccuracy"]


def _product_metrics(up_to_constant: bool) -> MetricCollection:
    metrics: dict[str, Any] = {"centred_rmse": PMIRootMeanSquaredError(centred=True), "spearman": PMISpearmanCorrCoef()}
    if not up_to_constant:
        metrics.update(rmse=PMIRootMeanSquaredError(), mae=PMIMeanAbsoluteError(), log_mean_ratio=LogMeanRatio())
    return MetricCollection(metrics)


@dataclass
class _Run:
    """The metrics of one member in one validation / test run, and the first pairs of its PMI profile."""

    up_to_constant: bool
    label: str
    joint: MetricCollection
    product: MetricCollection
    plug_in: MeanMetric = field(default_factory=MeanMetric)
    exact: MeanMetric = field(default_factory=MeanMetric)
    off_support: MeanMetric = field(default_factory=MeanMetric)
    true_mi: Optional[float] = None
    profile: dict[str, list[Tensor]] = field(
        default_factory=lambda: {"exact": [], "estimated": [], "product_exact": [], "product_estimated": []}
    )
    profile_pairs: int = 0
    has_product: bool = False


class PointwiseAccuracy(L.Callback):
    """Logs the pointwise accuracy of the estimated PMI at every validation and test run (module docstring).

    Works with any module whose evaluation steps return :class:`~pdlightning.records.PointwiseRecord`
    s (``MIEstimationModule`` on batches that carry ``pmi``, e.g. :class:`~pdlightning.data.TaskDataModule`); does
    nothing on other data. Metrics accumulate over the whole run (all held-out batches) and are exact for it; the
    profile histograms and the figure show the first ``max_profile_pairs`` pairs.

    Args:
        histograms: log the PMI profile as TensorBoard histograms.
        figure: draw the profile figure (TensorBoard image and PNG) at the end of every validation and test run.
        max_profile_pairs: joint pairs (and as many product pairs) kept for the histograms and the figure.
        output_dir: where the PNG goes; None = the logger's run directory.
    """

    def __init__(
        self,
        histograms: bool = True,
        figure: bool = True,
        max_profile_pairs: int = 5000,
        output_dir: Optional[str] = None,
    ) -> None:
        if isinstance(max_profile_pairs, bool) or not (isinstance(max_profile_pairs, int) and max_profile_pairs >= 1):
            raise ValueError(f"max_profile_pairs: expected an integer >= 1, got {max_profile_pairs!r}")
        self.histograms, self.figure, self.max_profile_pairs, self.output_dir = (
            histograms,
            figure,
            max_profile_pairs,
            output_dir,
        )
        self._runs: dict[Optional[str], _Run] = {}

    # ------------------------------------------------------------------------------------ hooks
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._runs = {}

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            for record in pointwise_records(outputs):
                self.update(record, pl_module.device)

    on_test_batch_end = on_validation_batch_end

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")

    # ------------------------------------------------------------------------------- accounting
    def update(self, record: PointwiseRecord, device: torch.device) -> None:
        """Add one evaluation batch's record (every member's rows)."""
        single = len(record.members) == 1
        for k, info in enumerate(record.members):
            up_to_constant = record.up_to_constant[k] if record.up_to_constant else False
            product = None if record.pmi_product is None else record.pmi_product[k]
            self._update(
                None if single else info.name, info.label, up_to_constant, record, record.pmi[k], product, device
            )

    def _update(
        self,
        member: Optional[str],
        label: str,
        up_to_constant: bool,
        record: PointwiseRecord,
        member_pmi: Tensor,
        member_product: Optional[Tensor],
        device: torch.device,
    ) -> None:
        run = self._runs.get(member)
        if run is None:
            run = _Run(
                up_to_constant,
                label,
                pointwise_pmi_metrics(up_to_constant=up_to_constant),
                _product_metrics(up_to_constant),
                true_mi=record.true_mi,
            )
            for metric in (run.joint, run.product, run.plug_in, run.exact, run.off_support):
                metric.to(device)
            self._runs[member] = run
        pmi = member_pmi.to(device)
        pmi_true = torch.as_tensor(record.pmi_true, device=device).to(pmi.dtype)
        run.joint.update(pmi, pmi_true)
        run.plug_in.update(pmi)
        run.exact.update(pmi_true)
        pairs = {"exact": pmi_true, "estimated": pmi}
        if member_product is not None and record.pmi_product_true is not None:
            run.has_product = True
            product_pmi = member_product.to(device)
            product_true = torch.as_tensor(record.pmi_product_true, device=device).to(product_pmi.dtype)
            run.product.update(product_pmi, product_true)
            run.off_support.update((~torch.isfinite(product_true)).float())
            pairs.update(product_exact=product_true, product_estimated=product_pmi)
        room = self.max_profile_pairs - run.profile_pairs
        if room > 0:
            for key, values in pairs.items():
                run.profile[key].append(values[:room].detach().cpu())
            run.profile_pairs += min(room, pmi.shape[0])

    def compute(self) -> dict[str, float]:
        """The run's statistics so far, by log name (without the stage prefix; member runs end in ``/<member>``)."""
        values: dict[str, float] = {}
        for member, run in self._runs.items():
            suffix = "" if member is None else f"/{member}"
            named = {f"pmi_joint_{k}": v for k, v in run.joint.compute().items()}
            if run.has_product:
                named.update({f"pmi_product_{k}": v for k, v in run.product.compute().items()})
                named["pmi_product_off_support"] = run.off_support.compute()
            named["pmi_exact_mean"] = run.exact.compute()
            if not run.up_to_constant:
                named["pmi_plug_in_mi"] = run.plug_in.compute()
            values.update({f"{name}{suffix}": float(value) for name, value in named.items()})
        return values

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._runs:
            return
        for name, value in self.compute().items():
            if value == value and abs(value) != float("inf"):  # a NaN (e.g. a constant estimate's rank) is not logged
                pl_module.log(f"{stage}/{name}", value)
        step = trainer.global_step
        for member, run in self._runs.items():
            profile = {
                key: torch.cat(parts).double() if parts else torch.zeros(0, dtype=torch.float64)
                for key, parts in run.profile.items()
            }
            suffix = "" if member is None else f"/{member}"
            if self.histograms:
                for writer in tensorboard_writers(trainer):
                    for key in ("exact", "estimated"):
                        finite = profile[key][torch.isfinite(profile[key])]
                        if finite.numel():
                            writer.add_histogram(f"{stage}/pmi_profile/{key}{suffix}", finite.numpy(), step)
            if trainer.is_global_zero and self.figure:
                task = getattr(getattr(getattr(trainer, "datamodule", None), "task", None), "name", None)
                title = " · ".join(
                    t
                    for t in (
                        run.label,
                        task,
                        f"{stage} step {step}",
                        "PMI up to a constant" if run.up_to_constant else None,
                    )
                    if t
                )
                figure = pmi_profile_figure(
                    profile["exact"].numpy(),
                    profile["estimated"].numpy(),
                    profile["product_exact"].numpy() if run.has_product else None,
                    profile["product_estimated"].numpy() if run.has_product else None,
                    run.true_mi,
                    title,
                )
                name = f"pmi_profile_{stage}" + ("" if member is None else f"_{member}")
                path = os.path.join(run_directory(trainer, self.output_dir), f"{name}.png")
                publish_figure(trainer, figure, f"{stage}/pmi_profile{suffix}", path, step)
        self._runs = {}
