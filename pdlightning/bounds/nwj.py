"""TUBA and its two named special cases NWJ and eta-DV: one formula with an offset ``log a``.

``I_TUBA = E_p[f] - E_{p(x)p(y)}[e^f] / a - log a + 1`` (Poole et al., "On variational bounds of MI",
ICML 2019, Eq. 8), a lower bound for every critic ``f`` and baseline ``a > 0``, tight at
``f* = log r + log a``. With ``log a`` fixed at 1 it is NWJ (Nguyen, Wainwright & Jordan 2010; Poole
et al. Eq. 9; "MINE-f" in Belghazi et al. 2018); with ``log a = eta`` learned jointly with ``f`` it is
eta-DV (Mroueh et al., "Improved Mutual Information Estimation", AAAI 2021, Lemma 2 / Eq. 8), which
recovers DV at ``eta = log E[e^f]`` without a minibatch ``log``.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

from .base import Bound, PairScores, log_mean_exp

__all__ = ["ShiftedExponentialBound", "TUBA", "NWJ", "EtaDV"]


class ShiftedExponentialBound(Bound):
    """``E_p[f] - log a + 1 - E_{p(x)p(y)}[e^{f - log a}]``; subclasses say where ``log a`` comes from.

    First term ``E_p[f] - log a + 1``, second term ``E_q[e^{f - log a}]`` (1 at the optimum), and
    ``pmi = f - log a``.
    """

    is_lower_bound = True
    optimal_second_term = 1.0

    @abstractmethod
    def log_baseline(self) -> Tensor | float:
        """``log a``."""

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return pairs.joint.mean() - self.log_baseline() + 1.0, torch.exp(self.log_second_term(pairs))

    def log_second_term(self, pairs: PairScores) -> Tensor:
        return log_mean_exp(pairs.marginal) - self.log_baseline()

    def pointwise(self, pairs: PairScores) -> PairScores:
        log_a = self.log_baseline()
        return PairScores(pairs.joint - log_a, pairs.marginal - log_a)


class TUBA(ShiftedExponentialBound):
    """TUBA with a constant (``log_a``) or learned (``learn_log_a=True``) scalar baseline.

    A ``y``-dependent baseline ``a(y)`` is the same bound on the shifted critic ``f(x, y) - log a(y)``
    (because ``E_p[log a(y)] = E_{p(y)}[log a(y)]``): use
    :class:`pdlightning.critics.BaselineShiftedCritic`.
    """

    def __init__(self, log_a: float = 0.0, learn_log_a: bool = False) -> None:
        super().__init__()
        if not math.isfinite(log_a):
            raise ValueError(f"log_a: expected a finite number, got {log_a}")
        self.log_a = nn.Parameter(torch.tensor(float(log_a)), requires_grad=learn_log_a)

    def log_baseline(self) -> Tensor:
        return self.log_a.float()

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        first, second = self.terms(pairs)
        return first - second, {"log_a": self.log_a}

    def hyperparameters(self) -> dict[str, Any]:
        return {"log a": "learned"} if self.log_a.requires_grad else {"log a": float(self.log_a)}


class NWJ(ShiftedExponentialBound):
    """``I_NWJ = E_p[f] - e^{-1} E_{p(x)p(y)}[e^f]``: TUBA with ``log a = 1``; ``f* = 1 + log r``."""

    def log_baseline(self) -> float:
        return 1.0


class EtaDV(ShiftedExponentialBound):
    """eta-DV: ``I_eta = E_p[f] - e^{-eta} E_{p(x)p(y)}[e^f] - eta + 1`` with ``eta`` a learned scalar
    (initialised at ``eta_init``): TUBA with a learned ``log a = eta``; ``f* = log r + eta``.

    For every ``f`` it is a lower bound of DV (``-log z >= 1 - e^{-eta} z - eta``) with equality at
    ``eta = log E[e^f]``.
    """

    short_name = "η-DV"

    def __init__(self, eta_init: float = 0.0) -> None:
        super().__init__()
        if not math.isfinite(eta_init):
            raise ValueError(f"eta_init: expected a finite number, got {eta_init}")
        self.eta = nn.Parameter(torch.tensor(float(eta_init)))

    def log_baseline(self) -> Tensor:
        return self.eta.float()

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        first, second = self.terms(pairs)
        return first - second, {"eta": self.eta}
