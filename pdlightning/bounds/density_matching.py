"""Density Matching I and II PMI estimators: PD paper (Tsai et al., NeurIPS 2020), Eq. 2-3.

Both enforce the KLIEP constraint ``E_{p(x)p(y)}[e^f] = 1`` (Sugiyama et al. 2008), whose solution
is ``f* = log r``; MI is reported by plug-in, ``E_p[f]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import PairScores, log_mean_exp
from .plug_in import PlugInBound

__all__ = ["DensityMatchingI", "DensityMatchingII"]


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a positive coefficient, got {value}")


class DensityMatchingI(PlugInBound):
    """Lagrangian form: maximise ``E_p[f] - lam (E_{p(x)p(y)}[e^f] - 1)`` (Eq. 2)."""

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        _check_positive("lam", lam)
        self.lam = lam

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        constraint = torch.exp(log_mean_exp(pairs.marginal)) - 1.0
        return pairs.joint.mean() - self.lam * constraint, {"constraint": constraint}

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs


class DensityMatchingII(PlugInBound):
    """Penalty form: maximise ``E_p[f] - eta (log E_{p(x)p(y)}[e^f])^2`` (Eq. 3)."""

    def __init__(self, eta: float = 1.0) -> None:
        super().__init__()
        _check_positive("eta", eta)
        self.eta = eta

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        log_partition = log_mean_exp(pairs.marginal)
        return pairs.joint.mean() - self.eta * log_partition.square(), {"log_partition": log_partition}

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs
