"""LightningModule for neural MI / PD estimation: a critic, a training bound, a reporting estimator."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from ..bounds import Bound, PairScores
from ..critics import Critic
from ..data.batch import check_mi_batch
from .finite import NonFinitePolicy
from .guarded import GuardedModule

__all__ = ["MIEstimationModule"]


class MIEstimationModule(GuardedModule):
    """Estimate MI / PD between ``batch['x']`` and ``batch['y']``.

    Learning and inference are separate choices (PD paper, Table 1): ``bound`` gives the loss and
    its gradients; ``estimator`` (default: ``bound``) gives the reported MI from the same scores,
    e.g. learn with ``JS`` and report with ``NWJ``. Logged every step: ``train/loss``,
    ``mi/estimate``, ``mi/true`` (when the batch has ``mi``), ``bound/first_term``,
    ``bound/second_term`` and the bound's extras under ``bound/``. Each training step returns a
    :class:`~pdlightning.bounds.StepRecord` for the callbacks (``outputs["record"]``).

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
    ) -> None:
        super().__init__(bound, estimator, optimizer, scheduler, non_finite, max_consecutive_skips)
        self.critic = critic
        self._eval_estimates: dict[float, list[Tensor]] = defaultdict(list)
        self._eval_skipped = 0

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

    # ------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        pairs = self.scores(batch)
        output, estimate = self.evaluate_bounds(pairs)
        bad = self.guard.check(output, self.bound, f"{stage} bound", self.global_step, count=False)
        if estimate is not output:
            bad = bad + self.guard.check(estimate, self.reporting_bound, f"{stage} estimator",
                                         self.global_step, count=False, reported_only=True)
        if bad:  # only reached under non_finite="skip": the batch is left out of the aggregates
            self._eval_skipped += 1
            return
        self.log(f"{stage}/loss", output.loss, batch_size=pairs.batch_size)
        if "mi" in batch:
            level = float(torch.as_tensor(batch["mi"]).float().mean())
            self._eval_estimates[level].append(estimate.mi)
        else:
            self.log(f"{stage}/mi_estimate", estimate.mi, batch_size=pairs.batch_size)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        rows = []
        for level in sorted(self._eval_estimates):
            mean = torch.stack(self._eval_estimates[level]).mean()
            self.log(f"{stage}/mi_estimate@{level:g}", mean, sync_dist=True)
            self.log(f"{stage}/mi_bias@{level:g}", mean - level, sync_dist=True)
            rows.append((level, float(mean)))
        self._eval_estimates.clear()
        if self._eval_skipped:
            self.log(f"{stage}/skipped_batches", float(self._eval_skipped), sync_dist=True)
            self._eval_skipped = 0
        if rows and stage == "test" and self.trainer.is_global_zero:
            print(f"\n{'true MI':>8} {'estimate':>9} {'bias':>7}   ({self.reporting_bound.label})")
            for level, mean in rows:
                print(f"{level:8.2f} {mean:9.3f} {mean - level:+7.3f}")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Per pair ``(x_i, y_i)``: ``pmi = log r_hat(x_i, y_i)`` from the reporting bound (the diagonal
        of ``forward``; bounds whose PMI needs batch statistics take them from this batch), with the
        batch's ``index`` and ``label`` when present. Write it with ``pdlightning.callbacks.PMIWriter``."""
        x, y = batch["x"], batch["y"]
        if x.shape[0] < 2:
            raise ValueError(
                "predict batch: the PMI of a pair is read off the batch's score matrix, which needs at "
                f"least 2 pairs; got {x.shape[0]} (raise the datamodule's eval_batch_size)"
            )
        out = {"pmi": self(x, y).diagonal().float()}
        for key in ("index", "label"):
            if key in batch:
                out[key] = batch[key]
        return out

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
