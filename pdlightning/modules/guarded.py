"""A LightningModule base that applies a :class:`~pdlightning.modules.finite.NonFiniteGuard`.

Shared by every module that trains on a bound: it owns the guard (checkpointed), decides whether a
step is skipped (all DDP processes together), and drops the gradients of skipped or non-finite
steps before the optimiser sees them.
"""

from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch

from .finite import NonFiniteGuard, NonFinitePolicy

__all__ = ["GuardedModule"]


class GuardedModule(L.LightningModule):
    """Base class: ``self.guard`` with ``non_finite`` policy ``"raise"`` or ``"skip"``.

    A subclass's ``training_step`` checks its bound output with ``self.guard.check(...)`` and, when
    :meth:`skip_this_step` says so, returns :meth:`skipped_step_result` instead of its loss.
    """

    def __init__(self, non_finite: NonFinitePolicy = "raise") -> None:
        super().__init__()
        self.guard = NonFiniteGuard(non_finite)
        self._skip_optimizer_step = False

    @property
    def _distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def skip_this_step(self, loss_is_bad: bool) -> bool:
        """Whether to skip the optimiser step; under DDP a step is skipped on every process if any
        process's loss is non-finite (DDP all-reduces the gradients of the same step)."""
        if self.guard.policy != "skip" or not self._distributed:
            return loss_is_bad
        any_bad = bool(self.trainer.strategy.reduce_boolean_decision(loss_is_bad, all=False))
        if any_bad and not loss_is_bad:
            self.guard.skipped_steps += 1
        return any_bad

    def skipped_step_result(self) -> Optional[dict[str, Any]]:
        """What ``training_step`` returns for a skipped step: ``None`` (Lightning then skips backward
        and the optimiser step), or under DDP a zero loss over the parameters, since backward must run
        on every process; its (zero) gradients are dropped before the optimiser step."""
        if not self._distributed:
            return None
        self._skip_optimizer_step = True
        return {"loss": sum((p * 0).sum() for p in self.parameters() if p.requires_grad)}

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
