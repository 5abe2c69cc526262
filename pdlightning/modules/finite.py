"""Detect non-finite bound values and gradients of every member, say where, and act by a policy.

A message names the member (in a fit of several), the bound, its role (``bound`` = training objective,
``estimator`` = reporting bound), the non-finite terms with their values, the step, and the range of the
scores the bound saw (with counts of NaN / inf scores). The policy (``non_finite``) is

- ``"raise"`` (default): stop with :class:`NonFiniteBoundError` carrying that message;
- ``"skip"``: warn (the first few times), count, and leave the member out of that step: its weights and
  optimiser state do not move when its loss or gradients are non-finite, and a non-finite *reported* value
  is never logged, while training goes on.

A member whose steps are skipped ``max_consecutive_skips`` times in a row has diverged (skipping cannot
repair its weights): the run then stops, whatever the policy. With ``on_member_divergence="retire"`` a
member that would stop the run is *retired* instead: it leaves the loss, its weights stay at their last
finite values, and the others go on.

:class:`MemberGuard` keeps all of this for ``K`` members as ``[K]`` tensors on the device: watching a step
costs a few tensor operations for all members together and no host synchronisation. What happened is read
on the host at :meth:`MemberGuard.sync` (the module calls it on logging steps, at the end of training and
before a checkpoint), which is where messages are written, errors raised and members retired. A member's
update is withheld on the device at the very step it went bad, so a late decision changes nothing that was
trained; an error names the step at which it happened.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Optional, Sequence

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from ..bounds import Bound, BoundOutput

__all__ = [
    "NonFiniteBoundError",
    "NonFinitePolicy",
    "MemberGuard",
    "non_finite_terms",
    "describe_non_finite",
    "raise_if_non_finite",
    "check_policy",
    "REPORTED_TERMS",
]

NonFinitePolicy = Literal["raise", "skip"]
DivergencePolicy = Literal["stop", "retire"]
POLICIES: tuple[str, ...] = ("raise", "skip")
#: the terms of a BoundOutput that are reported (logged), as opposed to the loss that is optimised.
REPORTED_TERMS: tuple[str, ...] = ("mi", "first_term", "second_term")
#: what went wrong for a member, in the order a member's first event of an interval is kept.
_LOSS, _REPORT, _GRADIENT, _DIVERGED, _TERMS = 1, 2, 3, 4, 5


class NonFiniteBoundError(FloatingPointError):
    """A bound's loss, estimate or terms (or the gradients they produced) became NaN or infinite."""


def check_policy(policy: str, name: str = "non_finite") -> str:
    """Validate a policy name; the error names the parameter and the accepted values."""
    if policy not in POLICIES:
        raise ValueError(f"{name}: expected one of {list(POLICIES)}, got {policy!r}")
    return policy


def non_finite_terms(output: BoundOutput) -> list[str]:
    """Names of the non-finite entries of ``output``: ``loss``, ``mi``, ``first_term``, ``second_term`` and
    ``extras.<name>`` (one host sync for all)."""
    values = {"loss": output.loss, "mi": output.mi, "first_term": output.first_term, "second_term": output.second_term}
    values.update({f"extras.{k}": v for k, v in output.extras.items()})
    device = output.loss.device
    flags = torch.stack([torch.isfinite(v.detach().to(device)).all() for v in values.values()])
    if bool(flags.all()):
        return []
    return [name for name, ok in zip(values, flags.tolist()) if not ok]


def score_range(name: str, scores: Tensor) -> str:
    """``joint scores in [a, b] with 3 NaN``: the finite range of ``scores`` and its non-finite counts."""
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


def _format(name: str, value: float) -> str:
    return f"{name}={value:.4g}"


def describe_non_finite(output: BoundOutput, bound: Bound, role: str, step: int, bad: list[str]) -> str:
    """One line: which bound, which terms (with their values), which step, the score range."""
    values = {"loss": output.loss, "mi": output.mi, "first_term": output.first_term, "second_term": output.second_term}
    values.update({f"extras.{k}": v for k, v in output.extras.items()})
    terms = ", ".join(
        _format(name, float(values[name].detach().float())) if values[name].numel() == 1 else name for name in bad
    )
    return (
        f"{role} {type(bound).__name__}: non-finite {terms} at step {step} "
        f"({score_range('joint', output.scores.joint)}; {score_range('marginal', output.scores.marginal)})"
    )


def raise_if_non_finite(output: BoundOutput, bound: Bound, role: str = "bound", step: int = 0) -> None:
    """Raise :class:`NonFiniteBoundError` (with :func:`describe_non_finite`) if any term of ``output`` is not finite."""
    bad = non_finite_terms(output)
    if bad:
        raise NonFiniteBoundError(describe_non_finite(output, bound, role, step, bad))


class MemberGuard(nn.Module):
    """The non-finite policy of ``K`` members, watched on the device (module docstring).

    Args:
        names: the members' names (messages name the member when there are several).
        bounds: each member's ``(training bound, reporting bound)``, for messages.
        policy: ``"raise"`` or ``"skip"``.
        max_consecutive_skips: a member skipped this many steps in a row has diverged.
        on_member_divergence: ``"stop"`` (a member's error stops the fit) or ``"retire"`` (it retires that
            member alone).
        max_warnings: under ``"skip"``, warn with the full diagnosis this many times, then only count.

    Buffers (``[K]``, checkpointed): ``skipped_steps``, ``skipped_reports``, ``consecutive_skips``,
    and ``active``
    (not retired). :attr:`retired` maps a retired member's name to its step and error.
    """

    bounds: list[tuple[Bound, Bound]]  # kept in __dict__: descriptions, not submodules
    skipped_steps: Tensor  # registered buffers, [K]
    skipped_reports: Tensor
    consecutive_skips: Tensor
    active: Tensor
    event_step: Tensor
    event_kind: Tensor
    event_terms: Tensor
    event_scores: Optional[tuple[Tensor, Tensor]]

    def __init__(
        self,
        names: Sequence[str],
        bounds: Sequence[tuple[Bound, Bound]],
        policy: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
        on_member_divergence: DivergencePolicy = "stop",
        max_warnings: int = 10,
    ) -> None:
        super().__init__()
        self.policy = check_policy(policy)
        if isinstance(max_consecutive_skips, bool) or not (
            isinstance(max_consecutive_skips, int) and max_consecutive_skips >= 1
        ):
            raise ValueError(f"max_consecutive_skips: expected an integer >= 1, got {max_consecutive_skips!r}")
        if on_member_divergence not in ("stop", "retire"):
            raise ValueError(f"on_member_divergence: expected 'stop' or 'retire', got {on_member_divergence!r}")
        self.names = list(names)
        self.__dict__["bounds"] = list(bounds)
        self.max_consecutive_skips = max_consecutive_skips
        self.on_member_divergence = on_member_divergence
        self.max_warnings = max_warnings
        k = len(self.names)
        for name in ("skipped_steps", "skipped_reports", "consecutive_skips"):
            self.register_buffer(name, torch.zeros(k, dtype=torch.long))
        self.register_buffer("active", torch.ones(k, dtype=torch.bool))
        # The first event of each member since the last sync: its step, kind, term values and scores.
        self.register_buffer("event_step", torch.full((k,), -1, dtype=torch.long), persistent=False)
        self.register_buffer("event_kind", torch.zeros(k, dtype=torch.long), persistent=False)
        self.register_buffer("event_terms", torch.zeros(k, 4), persistent=False)
        self.__dict__["event_scores"] = None  # (joint [K, n], marginal [K, n, m]) of the events, lazily
        #: retired members: name -> {"step": ..., "error": ...}.
        self.retired: dict[str, dict[str, Any]] = {}
        self._warned = 0

    # ------------------------------------------------------------------------------- watching
    def _mark(self, bad: Tensor, kind: int, step: int) -> Tensor:
        """Keep ``kind`` as the event of the members in ``bad`` that have none since the last sync; returns them."""
        new = bad & (self.event_step < 0)
        self.event_step.masked_fill_(new, step)
        self.event_kind.masked_fill_(new, kind)
        return new

    def observe(
        self, outputs: Any, joint: Tensor, marginal: Tensor, step: int, reduce: Any = None
    ) -> tuple[Tensor, Tensor]:
        """Watch a step's :class:`~.bound_stack.StackedOutputs` and the scores they came from. Returns
        ``(stepping, reported)``: the members that take part in the step (active, finite loss; a member whose loss
        is not finite is counted as skipped now) and those whose estimate may be logged. A few tensor operations
        for every member together, no host synchronisation.

        ``reduce`` (``[K]`` bool -> ``[K]`` bool, all-reduced with *and* across processes) makes the decision to
        step the same on every process under DDP."""
        loss_finite = outputs.loss_finite if reduce is None else reduce(outputs.loss_finite)
        terms_finite = outputs.terms_finite if outputs.terms_finite is not None else outputs.report_finite
        active = self.active
        stepping = active & loss_finite
        whole = stepping & terms_finite  # the training bound's value, terms and extras are finite too
        reported = whole & outputs.report_finite  # and the reported ones (a separate estimator's)
        # events, by kind: the loss (the member leaves the step), the training bound's value, the estimator's
        lost, broken, unreported = active ^ stepping, stepping ^ whole, whole ^ reported
        kind = torch.zeros_like(self.event_kind)
        kind.masked_fill_(unreported, _REPORT).masked_fill_(broken, _TERMS).masked_fill_(lost, _LOSS)
        self.skipped_steps.add_(lost)
        if self.policy == "skip":
            self.skipped_reports.add_(broken | unreported)
        new = (kind > 0) & (self.event_step < 0)
        self.event_step.masked_fill_(new, step)
        self.event_kind.copy_(torch.where(new, kind, self.event_kind))
        own = outputs.estimate if outputs.train_estimate is None else outputs.train_estimate
        trained = torch.stack([outputs.loss_detached, own, outputs.train_first_term, outputs.train_second_term], 1)
        if outputs.train_estimate is not None:  # a separate estimator: its terms for its events
            shown = torch.stack([outputs.loss_detached, outputs.estimate, outputs.first_term, outputs.second_term], 1)
            trained = torch.where((kind == _REPORT).unsqueeze(1), shown, trained)
        self.event_terms.copy_(torch.where(new.unsqueeze(1), trained, self.event_terms))
        self._keep_scores(new, joint, marginal)
        return stepping, reported

    def _keep_scores(self, new: Tensor, joint: Tensor, marginal: Tensor) -> None:
        """Keep the scores of the members with a new event (for the message's score ranges)."""
        kept = self.event_scores
        if kept is None or kept[0].shape != joint.shape or kept[1].shape != marginal.shape:
            kept = (torch.zeros_like(joint, dtype=torch.float32), torch.zeros_like(marginal, dtype=torch.float32))
            self.__dict__["event_scores"] = kept
        kept[0].copy_(torch.where(new.unsqueeze(1), joint.detach(), kept[0]))
        kept[1].copy_(torch.where(new.view(-1, 1, 1), marginal.detach(), kept[1]))

    def observe_update(self, stepping: Tensor, finite: Tensor, step: int) -> Tensor:
        """Watch the gradients of the members that step (``finite``: ``[K]`` bool, all of a member's gradients are
        finite). Returns the members whose update goes through; the others are counted as skipped, and a run of
        skips that reaches ``max_consecutive_skips`` as diverged."""
        update = stepping & finite
        held = stepping ^ update  # stepping, but with a non-finite gradient
        self.skipped_steps.add_(held)
        self.gradient_events = self._mark(held, _GRADIENT, step)  # the members whose event this step is
        self.consecutive_skips.add_(self.active ^ update).masked_fill_(update, 0)  # the run of skips: steps s-c+1..s
        diverged = self.consecutive_skips >= self.max_consecutive_skips  # overrides any other event: it stops
        self.event_step.masked_fill_(diverged, step)
        self.event_kind.masked_fill_(diverged, _DIVERGED)
        return update

    # --------------------------------------------------------------------------------- acting
    def state_for_sync(self) -> Tensor:
        """``[5 + 4, K]``: what :meth:`sync` reads (stack it with other values for one host transfer)."""
        return torch.cat(
            [
                torch.stack(
                    [self.event_step, self.event_kind, self.skipped_steps, self.skipped_reports, self.consecutive_skips]
                ).float(),
                self.event_terms.T.float(),
            ]
        )

    def sync(
        self, host: Optional[list[list[float]]] = None, describe_gradients: Optional[Any] = None
    ) -> list[tuple[str, int, str]]:
        """Act on what happened since the last sync (``host``: :meth:`state_for_sync` moved to the host, or
        ``None`` to move it here): raise, warn, or retire, per the policies. ``describe_gradients(k, step)`` says
        where member ``k``'s gradients were non-finite (``" in critic.first.weight"``) while it still can. Returns
        the retirements made ``(name, step, error)``."""
        self.__dict__["_describe_gradients"] = describe_gradients
        if host is None:
            host = self.state_for_sync().cpu().tolist()
        event_step, event_kind = host[0], host[1]
        events = [k for k in range(len(self.names)) if event_step[k] >= 0]
        if not events:
            return []
        retired: list[tuple[str, int, str]] = []
        try:
            for k in events:
                step, kind = int(event_step[k]), int(event_kind[k])
                message = self._message(k, kind, step, [row[k] for row in host[5:9]], host)
                stops = self.policy == "raise" or kind == _DIVERGED
                if not stops:
                    self._warn(message)
                    continue
                if self.on_member_divergence == "retire" and self.names[k] not in self.retired:
                    self.retire(k, step, message)
                    retired.append((self.names[k], step, message))
                    continue
                raise NonFiniteBoundError(message)
        finally:
            self.event_step.fill_(-1)
            self.event_kind.zero_()
        if retired and not bool(self.active.any()):
            raise NonFiniteBoundError(f"every member is retired; the last: {retired[-1][2]}")
        return retired

    def retire(self, k: int, step: int, error: str) -> None:
        """Member ``k`` leaves the fit at ``step`` (its weights stay at their last finite values)."""
        self.active[k] = False
        self.retired[self.names[k]] = {"step": int(step), "error": error}
        rank_zero_warn(f"member '{self.names[k]}' retired at step {step}, the others go on: {error}")

    def _who(self, k: int) -> str:
        return f"member '{self.names[k]}': " if len(self.names) > 1 else ""

    def _message(self, k: int, kind: int, step: int, terms: list[float], host: list[list[float]]) -> str:
        training, reporting = self.bounds[k]
        if kind == _DIVERGED:
            skipped = int(host[2][k])
            run = int(host[4][k])
            return (
                f"{self._who(k)}the run diverged: {run} optimiser steps in a row were skipped for non-finite values "
                f"(steps {step - run + 1}-{step}; {skipped} skipped in all). Skipping cannot repair diverged weights: "
                "lower the learning rate, clip the scores, or use a more stable bound; raise max_consecutive_skips "
                "only if the non-finite batches are rare and isolated"
            )
        if kind == _GRADIENT:
            describe = self.__dict__.get("_describe_gradients")
            where = describe(k, step) if describe is not None else ""
            message = (
                f"{self._who(k)}non-finite gradients at step {step}{where} (the loss was finite: look for an "
                "overflowing exp / log(0) in the bound or the critic)"
            )
            skipping = "skipping this member's step" if len(self.names) > 1 else "skipping the optimiser step"
            return message + (f"; non_finite='skip': {skipping}" if self.policy == "skip" else "")
        names = ("loss", "mi", "first_term", "second_term")
        checked: tuple[str, ...] = names if kind == _LOSS else names[1:]
        if kind == _REPORT:
            bound, role = reporting, "estimator" if reporting is not training else "bound"
        else:
            bound, role = training, "bound"
        bad = [
            f"{name}={value:.4g}" for name, value in zip(names, terms) if name in checked and not math.isfinite(value)
        ]
        bad = bad or ["extras"]  # only an extra of the training bound was non-finite
        scores = self.event_scores
        where = ""
        if scores is not None:
            where = f" ({score_range('joint', scores[0][k])}; {score_range('marginal', scores[1][k])})"
        message = f"{self._who(k)}{role} {type(bound).__name__}: non-finite {', '.join(bad)} at step {step}{where}"
        if self.policy == "skip":
            skipping = "skipping this member's step" if len(self.names) > 1 else "skipping the optimiser step"
            action = skipping if kind == _LOSS else "not logging the non-finite values"
            message += f"; non_finite='skip': {action}"
        return message

    def _warn(self, message: str) -> None:
        self._warned += 1
        if self._warned <= self.max_warnings:
            suffix = (
                " (further non-finite events are only counted: guard/skipped_steps, guard/skipped_reports)"
                if self._warned == self.max_warnings
                else ""
            )
            warnings.warn(message + suffix, RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------------------ checkpoint
    def extra_state(self) -> dict[str, Any]:
        return {"retired": dict(self.retired), "warned": self._warned}

    def load_extra_state(self, state: Optional[dict[str, Any]]) -> None:
        state = state or {}
        self.retired = dict(state.get("retired", {}))
        self._warned = int(state.get("warned", 0))
