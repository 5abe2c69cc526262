"""Detect non-finite bound outputs and say where: which bound, which term, which step, score range."""

from __future__ import annotations

import torch

from ..bounds import Bound, BoundOutput

__all__ = ["NonFiniteBoundError", "non_finite_terms", "describe_non_finite", "check_finite"]


class NonFiniteBoundError(FloatingPointError):
    """A bound's loss, estimate or terms became NaN or infinite."""


def non_finite_terms(output: BoundOutput) -> list[str]:
    values = {"loss": output.loss, "mi": output.mi, "first_term": output.first_term,
              "second_term": output.second_term}
    return [name for name, value in values.items() if not torch.isfinite(value).all()]


def describe_non_finite(output: BoundOutput, bound: Bound, role: str, step: int, bad: list[str]) -> str:
    joint, marginal = output.scores.joint, output.scores.marginal
    return (
        f"{role} {type(bound).__name__}: non-finite {', '.join(bad)} at step {step} "
        f"(joint scores in [{joint.min().item():.4g}, {joint.max().item():.4g}], "
        f"marginal scores in [{marginal.min().item():.4g}, {marginal.max().item():.4g}])"
    )


def check_finite(output: BoundOutput, bound: Bound, role: str, step: int) -> None:
    """Raise :class:`NonFiniteBoundError` with a diagnosis if any term of ``output`` is not finite."""
    bad = non_finite_terms(output)
    if bad:
        raise NonFiniteBoundError(describe_non_finite(output, bound, role, step, bad))
