"""NWJ and TUBA: the ``f``-divergence (Nguyen-Wainwright-Jordan) family of lower bounds.

Nguyen, Wainwright & Jordan (2010); Poole et al., "On variational bounds of MI" (ICML 2019), Eq. 6/9;
Belghazi et al. (2018) call NWJ "MINE-f".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Bound, PairScores, log_mean_exp

__all__ = ["NWJ", "TUBA"]


class NWJ(Bound):
    """``I_NWJ = E_p[f] - e^{-1} E_{p(x)p(y)}[e^f]``; optimal critic ``f* = 1 + log r``."""

    is_lower_bound = True
    #: value of the second term at the optimum (what Re-X pulls it towards).
    optimal_second_term = 1.0

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        first, second = self.terms(pairs)
        return first - second, {}

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return pairs.joint.mean(), torch.exp(self.log_second_term(pairs))

    def log_second_term(self, pairs: PairScores) -> Tensor:
        return log_mean_exp(pairs.marginal) - 1.0

    def pointwise(self, pairs: PairScores) -> PairScores:
        return PairScores(pairs.joint - 1.0, pairs.marginal - 1.0)


class TUBA(Bound):
    """``I_TUBA = E_p[f] - E_{p(x)p(y)}[e^f] / a - log a + 1`` with a baseline ``a > 0``.

    ``a`` is a constant (``log_a``) or a learned scalar (``learn_log_a=True``). A ``y``-dependent
    baseline ``a(y)`` is the same bound on the shifted critic ``f(x, y) - log a(y)`` (because
    ``E_p[log a(y)] = E_{p(y)}[log a(y)]``): use :class:`pdlightning.critics.BaselineShiftedCritic`.
    Optimal critic ``f* = log r + log a``. Poole et al. (2019), Eq. 8.
    """

    is_lower_bound = True
    optimal_second_term = 1.0

    def __init__(self, log_a: float = 0.0, learn_log_a: bool = False) -> None:
        super().__init__()
        if not math.isfinite(log_a):
            raise ValueError(f"log_a: expected a finite number, got {log_a}")
        self.log_a = nn.Parameter(torch.tensor(float(log_a)), requires_grad=learn_log_a)

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        first, second = self.terms(pairs)
        return first - second, {"log_a": self.log_a}

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        log_a = self.log_a.float()
        return pairs.joint.mean() - log_a + 1.0, torch.exp(self.log_second_term(pairs))

    def log_second_term(self, pairs: PairScores) -> Tensor:
        return log_mean_exp(pairs.marginal) - self.log_a.float()

    def pointwise(self, pairs: PairScores) -> PairScores:
        log_a = self.log_a.float()
        return PairScores(pairs.joint - log_a, pairs.marginal - log_a)
