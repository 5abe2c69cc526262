"""Held-out estimates per member and MI level, and their intervals (the tables of ``test``).

A test step adds, for each member (``None`` for a single module) and level, the estimate's units (see
:mod:`pdlightning.uncertainty`): the pointwise ``log r_hat`` of every held-out joint pair for
plug-in estimators, else one value per batch. At the epoch's end :meth:`HeldOutEstimates.intervals`
moves everything to the host once and gives one :class:`~pdlightning.uncertainty.Interval` per key.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional

import torch
from torch import Tensor

from ..bounds import Bound
from ..uncertainty import Interval, Unit, mean_interval

__all__ = ["HeldOutEstimates", "unit_of"]

Key = tuple[Optional[str], Optional[float]]


def unit_of(bound: Bound) -> Unit:
    """``"pair"`` for an estimate that is the mean of a pair-alone pointwise estimate, else ``"batch"``."""
    return "pair" if not bound.has_partition_term and bound.pmi_normalizer is None else "batch"


class HeldOutEstimates:
    """Accumulates the units of held-out estimates per ``(member, level)``."""

    def __init__(self) -> None:
        self.values: dict[Key, list[Tensor]] = defaultdict(list)
        self.units: dict[Key, Unit] = {}
        self.skipped = 0

    def add(self, member: Optional[str], level: Optional[float], values: Tensor, unit: Unit) -> None:
        key = (member, level)
        self.values[key].append(values.detach().float().reshape(-1))
        self.units[key] = unit

    def __bool__(self) -> bool:
        return bool(self.values)

    def intervals(self) -> dict[Key, Interval]:
        """One interval per key (non-finite units are left out: counted by the caller's guard)."""
        keys = list(self.values)
        host = [torch.cat(self.values[k]).cpu().double().numpy() for k in keys]
        result = {}
        for key, data in zip(keys, host):
            data = data[torch.isfinite(torch.from_numpy(data)).numpy()]
            if data.size:
                result[key] = mean_interval(data, self.units[key])
        return result

    def clear(self) -> None:
        self.values.clear()
        self.units.clear()
        self.skipped = 0
