"""Detect non-finite bound outputs and gradients, say where, and act by a policy.

A message names the bound, its role (``bound`` = training objective, ``estimator`` = reporting
bound), the non-finite terms with their values, the step, and the range of the scores the bound saw
(with counts of NaN / inf scores). The policy is

- ``"raise"`` (default): stop with :class:`NonFiniteBoundError` carrying that message;
- ``"skip"``: warn (the first few times), count, and let the caller drop the step: a module skips
  the optimiser step when the *loss* is non-finite, and drops non-finite *reported* values from its
  logs (so no NaN reaches TensorBoard) while training continues.

:class:`NonFiniteGuard` is the policy with its counters (checkpointed by the module that owns it) and
a gradient check; every LightningModule that trains on a bound holds one. A run whose optimiser steps
are skipped ``max_consecutive_skips`` times in a row has diverged (skipping cannot repair its weights):
the guard then stops it with :class:`NonFiniteBoundError`, whatever the policy.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Literal, Optional

import torch
from torch import Tensor, nn

from ..bounds import Bound, BoundOutput

__all__ = [
    "NonFiniteBoundError",
    "NonFinitePolicy",
    "NonFiniteGuard",
    "non_finite_terms",
    "describe_non_finite",
    "check_policy",
    "REPORTED_TERMS",
]

NonFinitePolicy = Literal["raise", "skip"]
POLICIES: tuple[str, ...] = ("raise", "skip")
#: the terms of a BoundOutput that are reported (logged), as opposed to the loss that is optimised.
REPORTED_TERMS: tuple[str, ...] = ("mi", "first_term", "second_term")


class NonFiniteBoundError(FloatingPointError):
    """A bound's loss, estimate or terms (or the gradients they produced) became NaN or infinite."""


def check_policy(policy: str, name: str = "non_finite") -> str:
    """Validate a policy name; the error names the parameter and the accepted values."""
    if policy not in POLICIES:
        raise ValueError(f"{name}: expected one of {list(POLICIES)}, got {policy!r}")
    return policy


def non_finite_terms(output: BoundOutput) -> list[str]:
    """Names of the non-finite entries of ``output``: ``loss``, ``mi``, ``first_term``,
    ``second_term`` and ``extras.<name>``."""
    values = {"loss": output.loss, "mi": output.mi, "first_term": output.first_term, "second_term": output.second_term}
    values.update({f"extras.{k}": v for k, v in output.extras.items()})
    device = output.loss.device
    flags = torch.stack([torch.isfinite(v.detach().to(device)).all() for v in values.values()])
    if bool(flags.all()):  # one host sync for every term
        return []
    return [name for name, ok in zip(values, flags.tolist()) if not ok]


def _score_range(name: str, scores: Tensor) -> str:
    scores = scores.detach().float()
    finite = scores[torch.isfinite(scores)]
    span = f"[{finite.min().item():.4g}, {finite.max().item():.4g}]" if finite.numel() else "[no finite value]"
    counts = [
        (int(torch.isnan(scores).sum()), "NaN"),
        (int((scores == float("inf")).sum()), "+inf"),
        (int((scores == float("-inf")).sum()), "-inf"),
    ]
    special = ", ".join(f"{c} {label}" for c, label in counts if c)
    return f"{name} scores in {span}" + (f" with {special}" if special else "")


def _term_value(output: BoundOutput, name: str) -> str:
    value = output.extras[name[len("extras.") :]] if name.startswith("extras.") else getattr(output, name)
    value = value.detach().float()
    return f"{name}={value.item():.4g}" if value.numel() == 1 else f"{name} (shape {tuple(value.shape)})"


def describe_non_finite(output: BoundOutput, bound: Bound, role: str, step: int, bad: list[str]) -> str:
    """One line: which bound, which terms (with their values), which step, the score range."""
    terms = ", ".join(_term_value(output, name) for name in bad)
    return (
        f"{role} {type(bound).__name__}: non-finite {terms} at step {step} "
        f"({_score_range('joint', output.scores.joint)}; "
        f"{_score_range('marginal', output.scores.marginal)})"
    )


def non_finite_gradients(parameters: Iterable[tuple[str, nn.Parameter]]) -> list[str]:
    """Names of the parameters whose gradient has a NaN or infinite entry (one sync for all)."""
    named = [(name, p.grad) for name, p in parameters if p.grad is not None]
    if not named:
        return []
    flags = torch.stack([torch.isfinite(g).all() for _, g in named])
    if bool(flags.all()):
        return []
    return [name for (name, _), ok in zip(named, flags.tolist()) if not ok]


class NonFiniteGuard:
    """A non-finite policy with counters: what a LightningModule holds.

    Args:
        policy: ``"raise"`` or ``"skip"`` (see the module docstring).
        max_warnings: under ``"skip"``, warn with the full diagnosis this many times, then only count.

    Attributes:
        skipped_steps: optimiser steps skipped (non-finite loss or gradients).
        skipped_reports: steps whose reported estimate was non-finite and not logged.
    """

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
        self.skipped_reports = 0
        self.consecutive_skips = 0
        self._first_skipped_step: Optional[int] = None
        self._warned = 0

    def report(self, message: str) -> None:
        """Raise under ``"raise"``; under ``"skip"`` warn (the first ``max_warnings`` times)."""
        if self.policy == "raise":
            raise NonFiniteBoundError(message)
        self._warned += 1
        if self._warned <= self.max_warnings:
            suffix = (
                ""
                if self._warned < self.max_warnings
                else (" (further non-finite events are only counted: guard/skipped_steps, guard/skipped_reports)")
            )
            warnings.warn(message + suffix, RuntimeWarning, stacklevel=3)

    def check(
        self, output: BoundOutput, bound: Bound, role: str, step: int, count: bool = True, reported_only: bool = False
    ) -> list[str]:
        """Names of ``output``'s non-finite terms; raises under ``"raise"``.

        Under ``"skip"`` a non-finite ``loss`` counts a skipped step, otherwise a non-finite report
        counts a skipped report (``count=False``: neither, e.g. in evaluation); the caller skips or
        drops accordingly. ``reported_only`` looks at ``mi`` and its terms only (an estimator's
        loss is never optimised).
        """
        bad = non_finite_terms(output)
        if reported_only:
            bad = [name for name in bad if name in REPORTED_TERMS]
        if not bad:
            return bad
        message = describe_non_finite(output, bound, role, step, bad)
        if self.policy == "skip":
            action = "skipping the optimiser step" if count and "loss" in bad else "not logging the non-finite values"
            message += f"; non_finite='skip': {action}"
        self.report(message)
        if not count:
            return bad
        if "loss" in bad:
            self.count_skipped_step(step)
        else:
            self.skipped_reports += 1
        return bad

    def count_skipped_step(self, step: int) -> None:
        """Count one skipped optimiser step; stop the run once ``max_consecutive_skips`` are in a row."""
        self.skipped_steps += 1
        self.consecutive_skips += 1
        if self._first_skipped_step is None:
            self._first_skipped_step = step
        if self.consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteBoundError(
                f"the run diverged: {self.consecutive_skips} optimiser steps in a row were skipped for non-finite "
                f"values (steps {self._first_skipped_step}-{step}; {self.skipped_steps} skipped in all). Skipping "
                "cannot repair diverged weights: lower the learning rate, clip the scores, or use a more stable "
                "bound; raise max_consecutive_skips only if the non-finite batches are rare and isolated"
            )

    def count_completed_step(self) -> None:
        """An optimiser step went through: the run of consecutive skipped steps ends."""
        self.consecutive_skips = 0
        self._first_skipped_step = None

    def check_gradients(self, module: nn.Module, step: int) -> bool:
        """True if every gradient of ``module`` is finite. Otherwise raise, or (``"skip"``) drop all
        gradients (``grad = None``: the optimiser step then changes nothing) and count the step."""
        bad = non_finite_gradients(module.named_parameters())
        if not bad:
            return True
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        message = (
            f"non-finite gradients at step {step} in {shown} (the loss was finite: look for an "
            f"overflowing exp / log(0) in the bound or the critic)"
        )
        self.report(message + ("; non_finite='skip': skipping the optimiser step" if self.policy == "skip" else ""))
        for p in module.parameters():
            p.grad = None
        self.count_skipped_step(step)
        return False

    def metrics(self) -> dict[str, float]:
        return {"guard/skipped_steps": float(self.skipped_steps), "guard/skipped_reports": float(self.skipped_reports)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "skipped_steps": self.skipped_steps,
            "skipped_reports": self.skipped_reports,
            "consecutive_skips": self.consecutive_skips,
            "first_skipped_step": self._first_skipped_step,
        }

    def load_state_dict(self, state: Optional[dict[str, Any]]) -> None:
        state = state or {}
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.skipped_reports = int(state.get("skipped_reports", 0))
        self.consecutive_skips = int(state.get("consecutive_skips", 0))
        self._first_skipped_step = state.get("first_skipped_step")
