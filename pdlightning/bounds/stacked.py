"""Evaluate many bounds on stacked scores: the members of an ensemble, with one call per group of
identical bounds instead of one per member.

Members ``k = 0..K-1`` have scores ``joint [K, n]`` and ``marginal [K, n, k]``. Members whose bounds are
the same configuration of a stateless bound (no parameters, no buffers: NWJ, DV, InfoNCE, SMILE, JS,
the PD plug-in estimators, Re-X over those) are evaluated together with ``torch.vmap`` over their
slices; stateful bounds (MINE's moving average, the probabilistic classifier's prior ratio, learned
baselines) and bounds that cannot run under ``vmap`` are evaluated one by one. Either way member
``k``'s output is exactly what ``bounds[k]`` returns on its own slice: ``vmap`` runs the same
operations, batched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import torch
from torch import Tensor, nn

from .base import Bound, BoundOutput, PairScores

__all__ = ["StackedOutputs", "evaluate_stacked", "matrix_to_pairs"]


def matrix_to_pairs(scores: Tensor) -> tuple[Tensor, Tensor]:
    """``[K, n, n]`` score matrices -> ``joint [K, n]`` (diagonals) and ``marginal [K, n, n - 1]``
    (each row's off-diagonal entries, as :meth:`PairScores.from_matrix`)."""
    k, n = scores.shape[0], scores.shape[1]
    if scores.dim() != 3 or scores.shape[2] != n:
        raise ValueError(f"scores: expected [K, n, n] matrices, got {tuple(scores.shape)}")
    if n < 2:
        raise ValueError(f"scores: batch size must be >= 2 to have negative pairs, got n={n}")
    off_diagonal = scores.flatten(1)[:, 1:].view(k, n - 1, n + 1)[:, :, :-1].reshape(k, n, n - 1)
    return scores.diagonal(dim1=1, dim2=2), off_diagonal


@dataclass
class StackedOutputs:
    """Per member: its :class:`BoundOutput` and whether its loss terms and reported terms are finite
    (``[K]`` bool tensors on the scores' device: read them with one host transfer)."""

    outputs: list[BoundOutput]
    loss_finite: Tensor
    report_finite: Tensor


def _settings(module: nn.Module) -> Hashable:
    """What makes two bounds of one class behave the same: plain attributes, recursively."""
    plain = tuple(
        sorted(
            (k, v)
            for k, v in vars(module).items()
            if not k.startswith("_") and k != "training" and isinstance(v, (int, float, str, bool, type(None)))
        )
    )
    return type(module), plain, tuple(_settings(child) for child in module.children())


def _stateless(bound: Bound) -> bool:
    return next(bound.parameters(), None) is None and next(bound.buffers(), None) is None


def _finite(output: BoundOutput) -> tuple[Tensor, Tensor]:
    terms = [output.loss, output.mi, output.first_term, output.second_term, *output.extras.values()]
    loss = torch.stack([torch.isfinite(t.detach()).all() for t in terms]).all()
    report = torch.stack(
        [torch.isfinite(t.detach()).all() for t in (output.mi, output.first_term, output.second_term)]
    ).all()
    return loss, report


#: group keys whose bound failed under vmap (evaluated one by one from then on).
_NOT_VMAPPABLE: set[Hashable] = set()


#: a bound's output fields, each stacked over members: loss, mi, first term, second term, extras.
_Fields = tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]


def _vmapped(bound: Bound, joint: Tensor, marginal: Tensor) -> _Fields:
    def fields(j: Tensor, m: Tensor) -> _Fields:
        out = bound(PairScores(j, m))
        return out.loss, out.mi, out.first_term, out.second_term, out.extras

    return torch.vmap(fields, randomness="error")(joint, marginal)


def evaluate_stacked(bounds: Sequence[Bound], joint: Tensor, marginal: Tensor) -> StackedOutputs:
    """``bounds[k]`` on ``(joint[k], marginal[k])`` for every member ``k``."""
    count = len(bounds)
    groups: dict[Hashable, list[int]] = {}
    for k, bound in enumerate(bounds):
        key = _settings(bound) if _stateless(bound) else ("member", k)
        groups.setdefault(key, []).append(k)
    outputs: list[Optional[BoundOutput]] = [None] * count
    loss_finite = torch.empty(count, dtype=torch.bool, device=joint.device)
    report_finite = torch.empty(count, dtype=torch.bool, device=joint.device)
    for key, members in groups.items():
        fields: Optional[_Fields] = None
        if len(members) > 1 and key not in _NOT_VMAPPABLE:
            index = torch.tensor(members, device=joint.device)
            try:
                fields = _vmapped(bounds[members[0]], joint.index_select(0, index), marginal.index_select(0, index))
            except Exception:  # noqa: BLE001 - a bound vmap cannot batch: evaluate it one by one
                _NOT_VMAPPABLE.add(key)
        if fields is None:
            for k in members:
                output = bounds[k](PairScores(joint[k], marginal[k]))
                outputs[k] = output
                loss_finite[k], report_finite[k] = _finite(output)
            continue
        loss, mi, first, second, extras = fields
        terms = torch.stack([loss, mi, first, second, *extras.values()])
        group_index = torch.tensor(members, device=joint.device)
        loss_finite[group_index] = torch.isfinite(terms.detach()).all(0)
        report_finite[group_index] = torch.isfinite(torch.stack([mi, first, second]).detach()).all(0)
        for position, k in enumerate(members):
            outputs[k] = BoundOutput(
                loss=loss[position],
                mi=mi[position].detach(),
                first_term=first[position].detach(),
                second_term=second[position].detach(),
                scores=PairScores(joint[k].detach().float(), marginal[k].detach().float()),
                extras={name: value[position].detach() for name, value in extras.items()},
            )
    return StackedOutputs([o for o in outputs if o is not None], loss_finite, report_finite)
