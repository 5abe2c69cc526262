"""eta-DV (eta-MINE): the DV bound with its log-partition replaced by a learned scalar.

Mroueh et al., "Improved Mutual Information Estimation" (AAAI 2021), Lemma 2 / Eq. 8:
``I_eta = E_p[f] - e^{-eta} E_{p(x)p(y)}[e^f] - eta + 1``. For every ``f`` it is a lower bound of
DV (``-log z >= 1 - e^{-eta} z - eta``) with equality at ``eta = log E[e^f]``, so maximising over
``eta`` jointly with ``f`` recovers DV without a minibatch ``log``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Bound, PairScores, log_mean_exp

__all__ = ["EtaDV"]


class EtaDV(Bound):
    """eta-DV with a learned scalar ``eta`` (initialised at ``eta_init``); optimal ``f* = log r + eta``."""

    is_lower_bound = True
    optimal_second_term = 1.0

    def __init__(self, eta_init: float = 0.0) -> None:
        super().__init__()
        self.eta = nn.Parameter(torch.tensor(float(eta_init)))

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        first, second = self.terms(pairs)
        return first - second, {"eta": self.eta}

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        eta = self.eta.float()
        return pairs.joint.mean() - eta + 1.0, torch.exp(self.log_second_term(pairs))

    def log_second_term(self, pairs: PairScores) -> Tensor:
        return log_mean_exp(pairs.marginal) - self.eta.float()

    def pointwise(self, pairs: PairScores) -> PairScores:
        eta = self.eta.float()
        return PairScores(pairs.joint - eta, pairs.marginal - eta)
