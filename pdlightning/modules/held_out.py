"""Held-out estimates per member and MI level, and their intervals (the tables of ``test``).

An evaluation step adds, for a group of members and a level, the estimate's units stacked over the members
(see :mod:`pdlightning.uncertainty`): ``[k, n]`` pointwise ``log r_hat`` of every held-out joint pair for
plug-in estimators, else ``[k, 1]``, one value per batch. At the epoch's end :meth:`HeldOutEstimates.intervals`
moves everything to the host once and gives one :class:`~pdlightning.uncertainty.Interval` per member and level.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..bounds import Bound
from ..uncertainty import Interval, Unit, mean_interval

__all__ = ["HeldOutEstimates", "unit_of", "Key"]

#: (member index, level)
Key = tuple[int, Optional[float]]


def unit_of(bound: Bound) -> Unit:
    """``"pair"`` for an estimate that is the mean of a pair-alone pointwise estimate, else ``"batch"``."""
    return "pair" if not bound.has_partition_term and bound.pmi_normalizer is None else "batch"


class HeldOutEstimates:
    """Accumulates the units of held-out estimates per member and level, stacked over members."""

    def __init__(self) -> None:
        self.values: dict[tuple[tuple[int, ...], Optional[float]], list[Tensor]] = defaultdict(list)
        self.units: dict[tuple[tuple[int, ...], Optional[float]], Unit] = {}
        self.skipped = 0

    def add(self, members: Sequence[int], level: Optional[float], values: Tensor, unit: Unit) -> None:
        """``values [len(members), units]`` (or ``[len(members)]``: one unit each) of ``members`` at ``level``."""
        key = (tuple(members), level)
        self.values[key].append(values.detach().float().reshape(len(members), -1))
        self.units[key] = unit

    def __bool__(self) -> bool:
        return bool(self.values)

    def per_member(self) -> dict[Key, tuple[Tensor, Unit]]:
        """Every member's units at every level, on the host: ``{(member, level): (values, unit)}``."""
        keys = list(self.values)
        host = [torch.cat(self.values[k], dim=1).cpu() for k in keys]
        out: dict[Key, tuple[Tensor, Unit]] = {}
        for (members, level), data in zip(keys, host):
            for row, member in enumerate(members):
                previous = out.get((member, level))
                values = data[row] if previous is None else torch.cat([previous[0], data[row]])
                out[(member, level)] = (values, self.units[(members, level)])
        return out

    def intervals(self, per_member: Optional[dict[Key, tuple[Tensor, Unit]]] = None) -> dict[Key, Interval]:
        """One interval per member and level (non-finite units are left out: counted by the caller)."""
        result = {}
        for key, (values, unit) in (per_member if per_member is not None else self.per_member()).items():
            data = values.double().numpy()
            data = data[torch.isfinite(values).numpy()]
            if data.size:
                result[key] = mean_interval(data, unit)
        return result

    def clear(self) -> None:
        self.values.clear()
        self.units.clear()
        self.skipped = 0
