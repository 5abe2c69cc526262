"""The base of every LightningModule that trains on a bound: the non-finite guard and the one
training-step sequence (guard -> maybe skip -> log -> hand a :class:`StepRecord` to the callbacks).

It owns the :class:`~pdlightning.modules.finite.NonFiniteGuard` (checkpointed), decides whether a
step is skipped (all DDP processes together), drops the gradients of skipped or non-finite steps
before the optimiser sees them, and logs each step's values exactly once, straight to the loggers
(a skipped step or a dropped non-finite report leaves no point in the logs, never a NaN or a stale
value).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from ..bounds import Bound, BoundOutput, PairScores, StepRecord
from ..step_logging import log_scalars
from .base import ConfiguredModule
from .finite import NonFiniteGuard, NonFinitePolicy

__all__ = ["GuardedModule"]


class GuardedModule(ConfiguredModule):
    """Base class: a training ``bound``, an optional reporting ``estimator``, and ``self.guard``.

    A subclass computes its :class:`~pdlightning.bounds.BoundOutput` s (:meth:`evaluate_bounds`) and
    returns :meth:`finish_training_step` from ``training_step``.

    Args:
        bound: the training objective.
        estimator: the reporting bound; ``None`` reports the training bound's value.
        optimizer, scheduler: see :class:`~pdlightning.modules.base.ConfiguredModule`.
        non_finite: ``"raise"`` or ``"skip"`` (see :mod:`pdlightning.modules.finite`).
        max_consecutive_skips: stop the run as diverged after this many skipped steps in a row.
    """

    def __init__(
        self,
        bound: Bound,
        estimator: Optional[Bound] = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        non_finite: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.bound = bound
        self.estimator = estimator
        self.guard = NonFiniteGuard(non_finite, max_consecutive_skips=max_consecutive_skips)
        self._skip_optimizer_step = False

    @property
    def reporting_bound(self) -> Bound:
        """The bound whose value is reported: ``estimator``, or the training ``bound``."""
        return self.bound if self.estimator is None else self.estimator

    def evaluate_bounds(self, pairs: PairScores) -> tuple[BoundOutput, BoundOutput]:
        """``(training output, reporting output)`` on the same scores (the same object when there is
        no separate estimator); the estimator never carries gradients."""
        output = self.bound(pairs)
        if self.estimator is None:
            return output, output
        with torch.no_grad():
            return output, self.estimator(PairScores(pairs.joint.detach(), pairs.marginal.detach()))

    # ------------------------------------------------------------------------------- the step
    @property
    def _distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def finish_training_step(
        self,
        output: BoundOutput,
        estimate: BoundOutput,
        batch: Optional[Mapping[str, Any]],
        batch_size: int,
        estimate_tag: str = "mi/estimate",
        extra_metrics: Optional[Mapping[str, Tensor | float]] = None,
    ) -> Optional[dict[str, Any]]:
        """Guard, maybe skip, log, and return ``{"loss", "record"}`` (``None`` for a skipped step).

        Logged once per step, straight to the loggers in one host transfer
        (:func:`~pdlightning.step_logging.log_scalars`): ``train/loss``, ``bound/first_term``,
        ``bound/second_term``, the training bound's extras under ``bound/``, the reported value under
        ``estimate_tag``, the batch's true MI as ``mi/true`` and ``extra_metrics``; under
        ``non_finite="skip"`` also ``guard/skipped_steps`` and ``guard/skipped_reports``. A
        non-finite value is never logged, and a skipped step logs only the guard's counts.
        """
        step = self.global_step
        bad = set(self.guard.check(output, self.bound, "bound", step))
        bad_estimate = (
            bad
            if estimate is output
            else set(self.guard.check(estimate, self.reporting_bound, "estimator", step, reported_only=True))
        )
        skip = self.skip_this_step("loss" in bad)
        scalars: dict[str, Tensor | float] = dict(self.guard.metrics()) if self.guard.policy == "skip" else {}
        if skip:
            log_scalars(self._trainer, scalars)
            return self.skipped_step_result(batch)
        self.guard.count_completed_step()
        values = {
            "loss": ("train/loss", output.loss.detach()),
            "first_term": ("bound/first_term", output.first_term),
            "second_term": ("bound/second_term", output.second_term),
        }
        values.update({f"extras.{k}": (f"bound/{k}", v.float()) for k, v in output.extras.items()})
        scalars.update({name: value for term, (name, value) in values.items() if term not in bad})
        estimate_ok = "mi" not in bad_estimate
        if estimate_ok:
            scalars[estimate_tag] = estimate.mi
        if isinstance(batch, Mapping) and "mi" in batch:
            scalars["mi/true"] = torch.as_tensor(batch["mi"], dtype=torch.float32).mean()
        scalars.update(extra_metrics or {})
        log_scalars(self._trainer, scalars, progress_bar=(estimate_tag, "mi/true"))
        record = StepRecord(
            bound=output,
            estimate=estimate if estimate_ok else None,
            batch=batch,
            reporting_bound=self.reporting_bound,
            training_bound=self.bound,
        )
        return {"loss": output.loss, "record": record}

    def skip_this_step(self, loss_is_bad: bool) -> bool:
        """Whether to skip the optimiser step; under DDP a step is skipped on every process if any
        process's loss is non-finite (DDP all-reduces the gradients of the same step)."""
        if self.guard.policy != "skip" or not self._distributed:
            return loss_is_bad
        any_bad = bool(self.trainer.strategy.reduce_boolean_decision(loss_is_bad, all=False))
        if any_bad and not loss_is_bad:
            self.guard.count_skipped_step(self.global_step)
        return any_bad

    def skipped_step_result(self, batch: Optional[Mapping[str, Any]] = None) -> Optional[dict[str, Any]]:
        """What ``training_step`` returns for a skipped step: ``None`` (Lightning then skips backward
        and the optimiser step), or under DDP a zero loss over the parameters, since backward must run
        on every process; its (zero) gradients are dropped before the optimiser step."""
        if not self._distributed:
            return None
        self._skip_optimizer_step = True
        record = StepRecord(
            bound=None,
            estimate=None,
            batch=batch,
            reporting_bound=self.reporting_bound,
            training_bound=self.bound,
            skipped=True,
        )
        return {"loss": sum((p * 0).sum() for p in self.parameters() if p.requires_grad), "record": record}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop a skipped step's gradients; catch non-finite gradients from a finite loss (not with
        AMP's GradScaler, which handles fp16 overflow itself by skipping the step)."""
        if self._skip_optimizer_step:
            self._skip_optimizer_step = False
            for p in self.parameters():
                p.grad = None
            return
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return
        self.guard.check_gradients(self, self.global_step)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["non_finite_guard"] = self.guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.guard.load_state_dict(checkpoint.get("non_finite_guard"))
