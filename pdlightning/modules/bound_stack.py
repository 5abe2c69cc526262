"""The members' bounds evaluated on stacked scores, one call per bound *structure*, not per member.

Member ``k`` has scores ``joint [K, n]`` (its joint pairs) and ``marginal [K, n, m]`` (its product pairs),
a training bound and optionally a separate reporting bound (``estimator``). Bounds of one structure
(class and settings: :func:`~.stacking.structure_key`) form one :class:`~.stacking.Stack` and are evaluated
together under ``torch.vmap``; a bound's own parameters and buffers (eta-DV's eta, MINE's moving average,
the probabilistic classifier's prior ratio) are stacked with it, so member ``k`` sees exactly its own.
Every output is ``[K]`` in member order; the number of operations depends on the number of distinct bound
structures, not on ``K``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from ..bounds import Bound, PairScores
from .stacking import Stack, structure_key

__all__ = ["BoundStack", "StackedOutputs", "ReportingGroup"]


@dataclass
class StackedOutputs:
    """Every member's bound values, ``[K]`` each (the fields of :class:`~pdlightning.records.StepRecord`).

    ``loss`` carries the gradient; everything else is detached. ``loss_finite``: the training loss is finite (the
    member can step); ``terms_finite``: the training bound's value, terms and extras are; ``report_finite``: the
    reported estimate and its terms are."""

    loss: Tensor
    estimate: Tensor
    first_term: Tensor
    second_term: Tensor
    train_first_term: Tensor
    train_second_term: Tensor
    extras: dict[str, Tensor]
    loss_finite: Tensor
    report_finite: Tensor
    terms_finite: Optional[Tensor] = None
    #: the training bound's own value, where it differs from ``estimate`` (members with a separate estimator).
    train_estimate: Optional[Tensor] = None
    #: ``loss``, detached (computed once, read by the guard, the record and the logging).
    loss_value: Optional[Tensor] = None

    @property
    def loss_detached(self) -> Tensor:
        return self.loss_value if self.loss_value is not None else self.loss.detach()


@dataclass
class ReportingGroup:
    """Members whose reporting bounds share one stack: the stack, their positions in it (``None``: all of
    it, in order), their member indices, and one of the bounds (for its class attributes)."""

    stack: Stack
    positions: Optional[Tensor]
    members: list[int]
    index: Tensor
    bound: Bound

    def vmap(self, fn: Callable[..., Any], *args: Any, in_dims: Sequence[Optional[int]]) -> Any:
        return self.stack.vmap(fn, *args, in_dims=in_dims, members=self.positions)


def _training_fields(bound: Any, joint: Tensor, marginal: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict]:
    out = bound(PairScores(joint, marginal))
    return out.loss, out.mi, out.first_term, out.second_term, out.extras


def _report_fields(bound: Any, joint: Tensor, marginal: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return bound.report(PairScores(joint, marginal))


def _group(bounds: Sequence[Optional[Bound]]) -> list[tuple[list[int], list[Bound]]]:
    """Members (indices) grouped by bound structure, in order of first appearance."""
    groups: dict[Any, tuple[list[int], list[Bound]]] = {}
    for k, bound in enumerate(bounds):
        if bound is not None:
            indices, members = groups.setdefault(structure_key(bound), ([], []))
            indices.append(k)
            members.append(bound)
    return list(groups.values())


class BoundStack(nn.Module):
    """The training bounds and reporting bounds of ``K`` members.

    Args:
        bounds: each member's training bound.
        estimators: each member's reporting bound, or ``None`` (it reports its training bound's value).

    The bounds given are copied into the stacks, which hold their values from then on:
    :meth:`training_bound` / :meth:`reporting_bound` give a standalone copy of a member's bound with its
    current values. What never changes (class attributes, labels) is read from :attr:`descriptions`.
    """

    descriptions: list[tuple[Bound, Bound]]
    _training_order: Tensor  # registered buffers
    _stack_order: Tensor
    _with_estimator: Tensor

    def __init__(self, bounds: Sequence[Bound], estimators: Sequence[Optional[Bound]]) -> None:
        super().__init__()
        if len(bounds) != len(estimators):
            raise ValueError(f"estimators: expected one per bound ({len(bounds)}), got {len(estimators)}")
        self.num_members = len(bounds)
        training, reporting = _group(bounds), _group(estimators)
        self.objectives = nn.ModuleList([Stack(members) for _, members in training])
        self.estimators = nn.ModuleList([Stack(members) for _, members in reporting])
        self._training_members = [indices for indices, _ in training]
        self._reporting_members = [indices for indices, _ in reporting]
        self.has_estimator = [e is not None for e in estimators]
        order = [k for indices in self._training_members for k in indices]
        #: the training stacks hold the members in member order (one stack, or stacks of consecutive members).
        self._natural_order = order == list(range(self.num_members))
        position = {k: p for p, k in enumerate(order)}
        self.register_buffer("_training_order", torch.tensor([position[k] for k in range(self.num_members)]), False)
        self.register_buffer("_stack_order", torch.tensor(order), False)
        self.register_buffer("_with_estimator", torch.tensor(self.has_estimator, dtype=torch.bool), False)
        self._slots = {
            ("training", k): (g, p) for g, indices in enumerate(self._training_members) for p, k in enumerate(indices)
        }
        self._slots.update(
            {
                ("reporting", k): (g, p)
                for g, indices in enumerate(self._reporting_members)
                for p, k in enumerate(indices)
            }
        )
        self.__dict__["descriptions"] = [
            (bound, estimator if estimator is not None else bound) for bound, estimator in zip(bounds, estimators)
        ]
        self._cache: dict[Any, Any] = {}

    # --------------------------------------------------------------------------------- members
    def training_bound(self, k: int) -> Bound:
        """A standalone copy of member ``k``'s training bound (its current parameters and buffers)."""
        group, position = self._slots[("training", k)]
        return _stacks(self.objectives)[group].member(position)  # type: ignore[return-value]

    def reporting_bound(self, k: int) -> Bound:
        """A standalone copy of the bound member ``k`` reports with."""
        if ("reporting", k) not in self._slots:
            return self.training_bound(k)
        group, position = self._slots[("reporting", k)]
        return _stacks(self.estimators)[group].member(position)  # type: ignore[return-value]

    def _index(self, indices: list[int], device: torch.device) -> Tensor:
        key = (tuple(indices), device)
        if key not in self._cache:
            self._cache[key] = torch.tensor(indices, dtype=torch.long, device=device)
        return self._cache[key]

    def reporting_groups(self, device: torch.device) -> list[ReportingGroup]:
        """Every member's reporting bound, grouped by the stack it lives in (estimators first)."""
        key = ("groups", device)
        if key not in self._cache:
            groups = []
            for stack, indices in zip(_stacks(self.estimators), self._reporting_members):
                bound = self.descriptions[indices[0]][1]
                groups.append(ReportingGroup(stack, None, indices, self._index(indices, device), bound))
            for stack, indices in zip(_stacks(self.objectives), self._training_members):
                own = [(p, k) for p, k in enumerate(indices) if not self.has_estimator[k]]
                if own:
                    members = [k for _, k in own]
                    positions = None if len(own) == len(indices) else self._index([p for p, _ in own], device)
                    bound = self.descriptions[members[0]][1]
                    groups.append(ReportingGroup(stack, positions, members, self._index(members, device), bound))
            self._cache[key] = groups
        return self._cache[key]

    # ------------------------------------------------------------------------------ evaluation
    def forward(self, joint: Tensor, marginal: Tensor) -> StackedOutputs:
        """Every member's training output (with gradient) and reported values on ``joint [K, n]``,
        ``marginal [K, n, m]``."""
        if not self._natural_order:  # the stacks' members contiguous: one gather, then a view per stack
            joint = joint.index_select(0, self._stack_order)
            marginal = marginal.index_select(0, self._stack_order)
        sizes = [len(indices) for indices in self._training_members]
        fields = [
            stack.vmap(_training_fields, j, m, in_dims=(0, 0), direct_single=False)
            for stack, j, m in zip(_stacks(self.objectives), joint.split(sizes), marginal.split(sizes))
        ]
        loss, mi, first, second = (self._assemble([f[i] for f in fields]) for i in range(4))
        names = list(dict.fromkeys(name for f in fields for name in f[4]))
        extras = {name: self._extra(name, fields) for name in names}
        # the loss, the training bounds' own terms and extras (a member whose bound has no such extra reads NaN
        # there, which is no non-finite value of its): one check for every member
        loss_value = loss.detach()
        finite = torch.isfinite(torch.stack([loss_value, mi, first, second, *extras.values()]))
        loss_finite = finite[0]
        terms_finite = (finite[1:] | self._absent(fields, names, finite.device)).all(0)
        if not self._reporting_members:
            report_finite = finite[1:4].all(0)
            return StackedOutputs(
                loss,
                mi,
                first,
                second,
                first,
                second,
                extras,
                loss_finite,
                report_finite,
                terms_finite,
                loss_value=loss_value,
            )
        if not self._natural_order:
            joint = joint.index_select(0, self._training_order)
            marginal = marginal.index_select(0, self._training_order)
        reported = torch.full((3, self.num_members), float("nan"), device=joint.device)
        with torch.no_grad():
            for stack, indices in zip(_stacks(self.estimators), self._reporting_members):
                index = self._index(indices, joint.device)
                j, m = joint.detach().index_select(0, index), marginal.detach().index_select(0, index)
                reported[:, index] = torch.stack(stack.vmap(_report_fields, j, m, in_dims=(0, 0)))
        reported = torch.where(self._with_estimator, reported, torch.stack([mi, first, second]))
        return StackedOutputs(
            loss,
            reported[0],
            reported[1],
            reported[2],
            first,
            second,
            extras,
            loss_finite,
            torch.isfinite(reported).all(0),
            terms_finite,
            train_estimate=mi,
            loss_value=loss_value,
        )

    def report(self, joint: Tensor, marginal: Tensor) -> Tensor:
        """``[3, K]``: every member's reported estimate, first and second term (no gradient)."""
        values = torch.empty((3, self.num_members), device=joint.device)
        with torch.no_grad():
            for group in self.reporting_groups(joint.device):
                j, m = joint.index_select(0, group.index), marginal.index_select(0, group.index)
                values[:, group.index] = torch.stack(group.vmap(_report_fields, j, m, in_dims=(0, 0)))
        return values

    def pmi(self, joint: Tensor, marginal: Tensor) -> tuple[Tensor, Tensor]:
        """``log r`` of the joint ``[K, n]`` and product ``[K, n, m]`` pairs by every member's reporting bound
        (batch statistics such as a DV partition from these scores: :meth:`~pdlightning.bounds.Bound.pmi`)."""
        out_joint = torch.empty(joint.shape, device=joint.device)
        out_marginal = torch.empty(marginal.shape, device=marginal.device)
        with torch.no_grad():
            for group in self.reporting_groups(joint.device):
                j, m = joint.index_select(0, group.index), marginal.index_select(0, group.index)
                out_joint[group.index], out_marginal[group.index] = group.vmap(_pmi_fields, j, m, in_dims=(0, 0))
        return out_joint, out_marginal

    # --------------------------------------------------------------------------------- helpers
    def _extra(self, name: str, fields: list[Any]) -> Tensor:
        """Extra ``name`` of every member, ``[K]``: NaN for the members whose bound has no such extra."""
        having = [(f[4][name], indices) for f, indices in zip(fields, self._training_members) if name in f[4]]
        if len(having) == len(fields):
            return self._assemble([f[4][name] for f in fields])
        values = torch.full((self.num_members,), float("nan"), device=having[0][0].device)
        for value, indices in having:
            values = values.index_put((self._index(indices, values.device),), value.float())
        return values

    def _absent(self, fields: list[Any], names: list[str], device: torch.device) -> Tensor:
        """``[3 + extras, K]`` bool: which of the stacked terms a member's own bound does not compute (cached)."""
        key = ("absent", tuple(names), tuple(tuple(f[4]) for f in fields), device)
        if key not in self._cache:
            absent = torch.zeros(3 + len(names), self.num_members, dtype=torch.bool)
            for f, indices in zip(fields, self._training_members):
                for row, name in enumerate(names, start=3):
                    if name not in f[4]:
                        absent[row, indices] = True
            self._cache[key] = absent.to(device)
        return self._cache[key]

    def _select(self, joint: Tensor, marginal: Tensor, indices: list[int]) -> tuple[Tensor, Tensor]:
        if len(indices) == joint.shape[0]:
            return joint, marginal  # one stack of every member, in order
        index = self._index(indices, joint.device)
        return joint.index_select(0, index), marginal.index_select(0, index)

    def _assemble(self, parts: list[Tensor]) -> Tensor:
        """The stacks' outputs -> ``[K]`` in member order."""
        if len(parts) == 1:
            return parts[0]
        joined = torch.cat(parts)
        return joined if self._natural_order else joined.index_select(0, self._training_order)


def _stacks(modules: nn.ModuleList) -> list[Stack]:
    """The stacks of a module list, typed."""
    return [module for module in modules if isinstance(module, Stack)]


def _pmi_fields(bound: Any, joint: Tensor, marginal: Tensor) -> tuple[Tensor, Tensor]:
    result = bound.pmi(PairScores(joint, marginal))
    return result.joint, result.marginal


def normalizer_fields(bound: Any, joint: Tensor, marginal: Tensor) -> Tensor:
    """``bound.log_normalizer`` of one member's scores (a scalar, or ``[n]`` per row), for ``ReportingGroup.vmap``."""
    return bound.log_normalizer(PairScores(joint.float(), marginal.float()))


def pmi_fields(bound: Any, joint: Tensor, marginal: Tensor) -> tuple[Tensor, Tensor]:
    """``bound.pmi`` of one member's scores, as ``(joint, marginal)``: for :meth:`ReportingGroup.vmap`."""
    return _pmi_fields(bound, joint, marginal)
