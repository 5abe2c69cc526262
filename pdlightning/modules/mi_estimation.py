"""LightningModule for neural MI / PD estimation: a critic, a training bound, a reporting estimator."""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from ..bounds import Bound, PairScores
from ..critics import Critic
from ..data.batch import check_mi_batch
from ..results import EstimateResult, write_results
from .finite import NonFinitePolicy
from .guarded import GuardedModule
from .held_out import HeldOutEstimates, unit_of
from .level_snapshots import LevelSnapshots, batch_level
from .pmi_reference import ReferenceSample, describe_normalizer, reference_from_loaders, reference_pmi
from .pointwise_eval import pointwise_record
from .reporting import _level_order, gather_intervals, log_interval, results_table, run_directory

__all__ = ["MIEstimationModule"]


class MIEstimationModule(GuardedModule):
    """Estimate MI / PD between ``batch['x']`` and ``batch['y']``.

    Learning and inference are separate choices (PD paper, Table 1): ``bound`` gives the loss and
    its gradients; ``estimator`` (default: ``bound``) gives the reported MI from the same scores,
    e.g. learn with ``JS`` and report with ``NWJ``. Logged every step: ``train/loss``,
    ``mi/estimate``, ``mi/true`` (when the batch has ``mi``), ``bound/first_term``,
    ``bound/second_term`` and the bound's extras under ``bound/``. Each training step returns a
    :class:`~pdlightning.bounds.StepRecord` for the callbacks (``outputs["record"]``); each
    validation / test step on a batch with the exact PMI of its pairs (``pmi``: the task suite)
    returns a :class:`~.pointwise_eval.PointwiseRecord` (``outputs["record"]``, read by
    :class:`~pdlightning.callbacks.PointwiseAccuracy`).

    Args:
        critic: maps ``(x, y)`` to scores.
        bound: training objective (any :class:`~pdlightning.bounds.Bound`).
        estimator: reporting bound; ``None`` reports the training bound's value.
        optimizer: optimiser factory (``class_path`` in YAML); Adam by default.
        scheduler: optional learning-rate scheduler factory, stepped every optimiser step.
        non_finite: what a non-finite loss, estimate or gradient does (see
            :mod:`pdlightning.modules.finite`): ``"raise"`` stops with a message naming the bound,
            term, step and score range; ``"skip"`` skips the optimiser step (non-finite loss or
            gradients) or drops the non-finite reported values from the logs, counts them and logs
            ``guard/skipped_steps`` and ``guard/skipped_reports``. A NaN is never logged.
        max_consecutive_skips: under ``"skip"``, this many skipped steps in a row stop the run as
            diverged (skipping cannot repair diverged weights).
        level_snapshots: on an MI staircase, keep the critic of the end of each level and evaluate
            every level with its own critic (see :mod:`.level_snapshots`); ``False``: the final
            critic evaluates every level.
        pmi_reference_size: for ``predict`` and the pointwise evaluation with a bound whose PMI needs
            batch statistics (DV, MINE, SMILE, InfoNCE), estimate them once per level (and per
            validation / test run) on this many held-out pairs, so each pair's PMI is a function of
            the pair alone (see :mod:`.pmi_reference`); 0 uses each batch's own.
        summary: print (and write) the per-level mean / bias / variance / MSE of the training
            estimates at the end of every fit whose batches carry the true MI (adds
            :class:`~pdlightning.callbacks.BiasVarianceMSE` unless the trainer already has one).
    """

    def __init__(
        self,
        critic: Critic,
        bound: Bound,
        estimator: Optional[Bound] = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        non_finite: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
        level_snapshots: bool = True,
        pmi_reference_size: int = 1024,
        summary: bool = True,
    ) -> None:
        super().__init__(bound, estimator, optimizer, scheduler, non_finite, max_consecutive_skips)
        if isinstance(pmi_reference_size, bool) or not (
            isinstance(pmi_reference_size, int) and (pmi_reference_size == 0 or pmi_reference_size >= 2)
        ):
            raise ValueError(
                f"pmi_reference_size: expected 0 (in-batch statistics) or an integer >= 2, got {pmi_reference_size!r}"
            )
        self.critic = critic
        self.level_snapshots = LevelSnapshots() if level_snapshots else None
        self.pmi_reference_size = pmi_reference_size
        self.summary = summary
        self._pmi_reference: Optional[ReferenceSample] = None
        self._held_out = HeldOutEstimates()

    # ---------------------------------------------------------------------------- validation
    def setup(self, stage: str) -> None:
        """Fail at set-up, not at the first batch, when the critic's input sizes do not match the
        datamodule's (``x_dim`` / ``y_dim`` attributes, when it has them)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        for side in ("x", "y"):
            expected = getattr(datamodule, f"{side}_dim", None)
            got = getattr(self.critic, f"{side}_dim", None)
            if isinstance(expected, int) and isinstance(got, int) and expected != got:
                raise ValueError(
                    f"critic {side}_dim: the critic {type(self.critic).__name__} expects {got} features "
                    f"per sample of {side}, but the datamodule {type(datamodule).__name__} yields "
                    f"{expected} ({side}_dim); set model.init_args.critic.init_args.{side}_dim: {expected}"
                )

    # ----------------------------------------------------------------------------------- scoring
    def scores(self, batch: dict[str, Tensor]) -> PairScores:
        """Critic scores of the batch's joint pairs and its marginal pairs (explicit or in-batch)."""
        check_mi_batch(batch)
        x, y = batch["x"], batch["y"]
        if "x_marginal" in batch:
            return PairScores.from_pairs(
                self.critic.pointwise(x, y), self.critic.pointwise(batch["x_marginal"], batch["y_marginal"])
            )
        return PairScores.from_matrix(self.critic(x, y))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Pointwise log-dependency ``log r(x_i, y_j)`` for all pairs of a batch (``[n, n]``)."""
        return self.reporting_bound.pmi(self.critic(x, y))

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[dict[str, Any]]:
        """Loss of the training bound and the step's record; ``None`` (Lightning then skips the
        optimiser step) when the loss is non-finite under ``non_finite="skip"``."""
        pairs = self.scores(batch)
        output, estimate = self.evaluate_bounds(pairs)
        return self.finish_training_step(output, estimate, batch, pairs.batch_size)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.observe_training_batch(self, batch)

    def on_train_end(self) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.training_ended(self)

    def configure_callbacks(self) -> list[L.Callback]:
        """The end-of-fit summary (:class:`~pdlightning.callbacks.BiasVarianceMSE`), unless the
        trainer has one already (a configured one keeps its settings) or ``summary`` is off."""
        from pdlightning.callbacks import BiasVarianceMSE

        trainer = self._trainer
        if not self.summary or trainer is None:
            return []
        configured = trainer.callbacks  # type: ignore[attr-defined]  # Lightning sets it at run time, undeclared
        if any(isinstance(c, BiasVarianceMSE) for c in configured):
            return []
        return [BiasVarianceMSE()]

    # ------------------------------------------------------------------------------- evaluation
    def _use_weights_for(self, level: Optional[float]) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.use_for(self, level)

    def _restore_weights(self) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.restore(self)

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> Optional[dict[str, Any]]:
        if batch["x"].shape[0] < 2:  # the last batch when rows % eval_batch_size == 1: no in-batch negative
            rank_zero_warn(
                f"{stage}: a batch holds a single pair (rows % data.init_args.eval_batch_size == 1); the bound needs "
                "in-batch negatives, so that pair is left out of the estimate (counted in "
                f"{stage}/skipped_batches). Choose eval_batch_size so that no batch holds one pair."
            )
            self._held_out.skipped += 1
            return None
        level = batch_level(batch)
        self._use_weights_for(level)
        pairs = self.scores(batch)
        output, estimate = self.evaluate_bounds(pairs)
        bad = self.guard.check(output, self.bound, f"{stage} bound", self.global_step, count=False)
        if estimate is not output:
            bad = bad + self.guard.check(
                estimate, self.reporting_bound, f"{stage} estimator", self.global_step, count=False, reported_only=True
            )
        if bad:  # only reached under non_finite="skip": the batch is left out of the aggregates
            self._held_out.skipped += 1
            return None
        self.log(f"{stage}/loss", output.loss, batch_size=pairs.batch_size)
        unit = unit_of(self.reporting_bound)
        values = self.reporting_bound.pmi(pairs).joint if unit == "pair" else estimate.mi
        self._held_out.add(None, level, values, unit)
        return self._pointwise_outputs(batch, level, stage)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[dict[str, Any]]:
        """The batch's held-out loss and MI estimate; ``{"record": PointwiseRecord}`` for batches with exact PMI."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[dict[str, Any]]:
        """As :meth:`validation_step`, logged under ``test/``."""
        return self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        self._restore_weights()
        intervals = gather_intervals(self, self._held_out)
        if self._held_out.skipped:
            self.log(f"{stage}/skipped_batches", float(self._held_out.skipped), sync_dist=True)
        self._held_out.clear()
        if not intervals:
            return
        results = []
        for (_, level), interval in sorted(intervals.items(), key=lambda item: _level_order(item[0][1])):
            log_interval(self, stage, interval, level)
            weights = self.level_snapshots.describe(level) if self.level_snapshots is not None else "final weights"
            results.append(EstimateResult(interval, self.reporting_bound.label, true_mi=level, weights=weights))
        if stage == "test" and self._trainer is not None and self.trainer.is_global_zero:
            title = f"Held-out MI, reported by {self.reporting_bound.label}" + (
                f" (trained with {self.bound.label})" if self.estimator is not None else ""
            )
            path = write_results(run_directory(self.trainer), results, stage, self.global_step, dict(self.hparams))
            rank_zero_info(results_table(results, title) + f"\n(written to {path})")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ pointwise evaluation (PMI)
    def _fix_pmi_reference(self, loaders: Any, require_key: Optional[str] = None, announce: bool = True) -> None:
        """Fix the reference sample of bounds whose PMI needs batch statistics (one pass over the
        evaluation data, the first ``pmi_reference_size`` pairs of each level; see :mod:`.pmi_reference`).
        With ``require_key``, only when the data's batches carry it; ``announce`` says where the statistic
        came from."""
        self._pmi_reference = None
        if self.reporting_bound.pmi_normalizer is None or self.pmi_reference_size == 0:
            return
        self._pmi_reference = reference_from_loaders(loaders, self.pmi_reference_size, self.device, require_key)
        note = describe_normalizer(self.reporting_bound, self._pmi_reference)
        if note and announce and (self._pmi_reference is not None or require_key is None):
            rank_zero_info(note)

    def _weights_version(self) -> int:
        """Which weights evaluate now (a level snapshot or the live ones): keys the reference's cached statistic."""
        return hash(self.level_snapshots._loaded if self.level_snapshots is not None else None)

    def _pointwise_outputs(
        self, batch: dict[str, Tensor], level: Optional[float], stage: str
    ) -> Optional[dict[str, Any]]:
        """``{"record": PointwiseRecord}`` of a batch with exact PMI (:mod:`.pointwise_eval`), else ``None``."""
        record = pointwise_record(
            self.reporting_bound, self.critic, batch, level, self._pmi_reference, stage, version=self._weights_version()
        )
        return None if record is None else {"record": record}

    def _reference_loaders(self, stage: str, loaders: Any) -> Any:
        """Loaders to draw the reference sample from: fresh ones from the datamodule when it has them. The
        trainer's own loaders must not be iterated here: for ``predict`` on map-style data Lightning wraps the
        batch sampler in one shared iterator, which the reference pass would use up before the loop's first
        batch (nothing would be predicted)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        make = getattr(datamodule, f"{stage}_dataloader", None)
        if callable(make):
            try:
                return make()
            except (NotImplementedError, MisconfigurationException):
                pass
        return loaders

    def on_validation_start(self) -> None:
        loaders = self._reference_loaders("val", self.trainer.val_dataloaders)
        self._fix_pmi_reference(loaders, require_key="pmi", announce=False)

    def on_test_start(self) -> None:
        self._fix_pmi_reference(self._reference_loaders("test", self.trainer.test_dataloaders), require_key="pmi")

    # ----------------------------------------------------------------------------------- predict
    def on_predict_start(self) -> None:
        self._fix_pmi_reference(self._reference_loaders("predict", self.trainer.predict_dataloaders))

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Per pair ``(x_i, y_i)``: ``pmi = log r_hat(x_i, y_i)`` from the reporting bound, evaluated
        with the weights of the pair's MI level (see ``level_snapshots``) and, for bounds whose PMI
        needs batch statistics, normalised on the fixed reference (``pmi_reference_size``), so it does
        not depend on the batch. Returned with the batch's ``index``, ``label``, true MI level
        (``mi``) and exact PMI (the batch's ``pmi``, as ``pmi_true``) when present. Write it with
        ``pdlightning.callbacks.PMIWriter``."""
        level = batch_level(batch)
        self._use_weights_for(level)
        pmi = reference_pmi(
            self.reporting_bound,
            self.critic,
            batch["x"],
            batch["y"],
            level,
            self._pmi_reference,
            version=self._weights_version(),
        )
        n = pmi.shape[0]
        out = {"pmi": pmi.float()}
        if level is not None:
            out["mi"] = torch.as_tensor(batch["mi"], dtype=torch.float32, device=pmi.device).expand(n).clone()
        for key in ("index", "label"):
            if key in batch:
                out[key] = batch[key]
        if "pmi" in batch:  # the data's exact PMI of each pair (task suite)
            out["pmi_true"] = batch["pmi"]
        return out

    def on_predict_epoch_end(self) -> None:
        self._restore_weights()

    # -------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.level_snapshots is not None:
            checkpoint["level_snapshots"] = self.level_snapshots.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.level_snapshots is not None:
            self.level_snapshots.load_state_dict(checkpoint.get("level_snapshots"))
