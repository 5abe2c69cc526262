"""The non-finite policy of a loss called once per step by the user's own training code (:class:`~.MILoss`).

The estimation modules decide on the device for every member at once (:class:`pdlightning.modules.finite.
MemberGuard`); a loss inside someone else's ``training_step`` must answer at the call: under ``"raise"`` a
non-finite bound or critic gradient stops the run with a message naming the bound, its terms and the call; under
``"skip"`` it warns (the first ``max_warnings`` times), counts, and the caller leaves the term out of that step;
``max_consecutive_skips`` skips in a row stop the run as diverged.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch import nn

from ..bounds import Bound, BoundOutput
from ..modules.finite import NonFiniteBoundError, NonFinitePolicy, check_policy, describe_non_finite, non_finite_terms

__all__ = ["LossGuard"]


class LossGuard:
    """Counters and policy of a per-call non-finite check (module docstring)."""

    def __init__(
        self, policy: NonFinitePolicy = "raise", max_warnings: int = 10, max_consecutive_skips: int = 20
    ) -> None:
        self.policy = check_policy(policy)
        if isinstance(max_consecutive_skips, bool) or not (
            isinstance(max_consecutive_skips, int) and max_consecutive_skips >= 1
        ):
            raise ValueError(f"max_consecutive_skips: expected an integer >= 1, got {max_consecutive_skips!r}")
        self.max_warnings = max_warnings
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self._first_skipped: Optional[int] = None
        self._warned = 0

    def _report(self, message: str) -> None:
        if self.policy == "raise":
            raise NonFiniteBoundError(message)
        self._warned += 1
        if self._warned <= self.max_warnings:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def check(self, output: BoundOutput, bound: Bound, role: str, call: int, count: bool = True) -> list[str]:
        """Names of ``output``'s non-finite terms (``[]``: all finite); raises under ``"raise"``. Under ``"skip"``
        a non-finite loss counts a skipped step (``count=False``: not counted, e.g. outside training)."""
        bad = non_finite_terms(output)
        if not bad:
            return bad
        message = describe_non_finite(output, bound, role, call, bad)
        self._report(message + ("; non_finite='skip': skipping this step" if self.policy == "skip" else ""))
        if count and "loss" in bad:
            self.count_skipped_step(call)
        return bad

    def check_gradients(self, module: nn.Module, call: int) -> bool:
        """True if every gradient of ``module`` is finite; else raise, or (``"skip"``) drop them all (``grad =
        None``: the optimiser step changes nothing) and count the step."""
        named = [(n, p.grad) for n, p in module.named_parameters() if p.grad is not None]
        if not named:
            return True
        flags = torch.stack([torch.isfinite(g).all() for _, g in named]).tolist()
        bad = [n for (n, _), ok in zip(named, flags) if not ok]
        if not bad:
            return True
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        message = f"non-finite gradients at call {call} in {shown} (the loss was finite: look for an overflowing exp)"
        self._report(message + ("; non_finite='skip': skipping this step" if self.policy == "skip" else ""))
        for p in module.parameters():
            p.grad = None
        self.count_skipped_step(call)
        return False

    def count_skipped_step(self, call: int) -> None:
        """Count one skipped step; stop once ``max_consecutive_skips`` are in a row."""
        self.skipped_steps += 1
        self.consecutive_skips += 1
        if self._first_skipped is None:
            self._first_skipped = call
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteBoundError(
                f"the run diverged: {self.consecutive_skips} steps in a row were skipped for non-finite values "
                f"(calls {self._first_skipped}-{call}; {self.skipped_steps} skipped in all): lower the learning rate, "
                "clip the scores, or use a more stable bound"
            )

    def count_completed_step(self) -> None:
        """A step went through: the run of consecutive skips ends."""
        self.consecutive_skips = 0
        self._first_skipped = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "skipped_steps": self.skipped_steps,
            "consecutive_skips": self.consecutive_skips,
            "first_skipped": self._first_skipped,
        }

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        state = state or {}
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.consecutive_skips = int(state.get("consecutive_skips", 0))
        self._first_skipped = state.get("first_skipped")
