"""Density Matching I and II PMI estimators: PD paper (Tsai et al., NeurIPS 2020), Eq. 2-3.

Both relax the KLIEP constraint ``E_{p(x)p(y)}[e^f] = 1`` (Sugiyama et al. 2008), whose constrained
solution is ``log r``. With a fixed multiplier or penalty the maximiser is ``log r`` plus a known
constant (derived in each class), which ``pmi`` removes, so the plug-in MI ``E_p[pmi]`` is exact at
the optimum for any ``lam`` / ``eta``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .base import PairScores, log_mean_exp
from .plug_in import PlugInBound

__all__ = ["DensityMatchingI", "DensityMatchingII"]


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: expected a positive coefficient, got {value}")


class DensityMatchingI(PlugInBound):
    """Lagrangian form: maximise ``E_p[f] - lam (E_{p(x)p(y)}[e^f] - 1)`` (Eq. 2).

    Setting the functional derivative ``p - lam q e^f`` to zero gives ``f* = log r - log lam``;
    ``pmi = f + log lam`` (the paper's ``lam = 1`` makes it ``f``).
    """

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        _check_positive("lam", lam)
        self.lam = lam

    def hyperparameters(self) -> dict[str, Any]:
        return {"λ": self.lam}

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        constraint = torch.exp(log_mean_exp(pairs.marginal)) - 1.0
        return pairs.joint.mean() - self.lam * constraint, {"constraint": constraint}

    def pointwise(self, pairs: PairScores) -> PairScores:
        shift = math.log(self.lam)
        return PairScores(pairs.joint + shift, pairs.marginal + shift)


class DensityMatchingII(PlugInBound):
    """Penalty form: maximise ``E_p[f] - eta (log E_{p(x)p(y)}[e^f])^2`` (Eq. 3).

    The stationary point has ``log E_q[e^f] = 1/(2 eta)``, i.e. ``f* = log r + 1/(2 eta)``: a
    penalty only enforces the constraint as ``eta -> inf``. ``pmi = f - 1/(2 eta)`` removes that
    offset (plain ``E_p[f]`` would overestimate the MI by ``1/(2 eta)`` nats, 0.5 at ``eta = 1``).
    """

    def __init__(self, eta: float = 1.0) -> None:
        super().__init__()
        _check_positive("eta", eta)
        self.eta = eta

    def hyperparameters(self) -> dict[str, Any]:
        return {"η": self.eta}

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        log_partition = log_mean_exp(pairs.marginal)
        return pairs.joint.mean() - self.eta * log_partition.square(), {"log_partition": log_partition}

    def pointwise(self, pairs: PairScores) -> PairScores:
        offset = 0.5 / self.eta
        return PairScores(pairs.joint - offset, pairs.marginal - offset)
