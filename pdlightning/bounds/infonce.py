"""InfoNCE / CPC: van den Oord et al. (2018); as an MI bound, Poole et al. (2019), Eq. 12."""

from __future__ import annotations

import math

from torch import Tensor

from .base import Bound, PairScores, log_mean_exp

__all__ = ["InfoNCE"]


class InfoNCE(Bound):
    """``I_NCE = mean_i [f_ii - log (1/K) sum_j f_ij]`` with ``K = k + 1`` candidates per row.

    Each row ``i`` normalises the joint score against its own marginal pairs (all other ``y_j``
    for a score matrix, so ``K = n``). The value never exceeds ``log K``. Optimal critic
    ``f* = log r + c(x)``; the pointwise estimate removes the row normaliser.
    """

    is_lower_bound = True
    log_domain_second_term = True
    optimal_second_term = 0.0
    pmi_normalizer = "row"

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return pairs.joint.mean(), self.log_normalizer(pairs).mean()

    def log_normalizer(self, pairs: PairScores) -> Tensor:
        """Per row, ``log (1/K) sum_j e^{f(x_i, y_j)}`` over the joint and the row's marginal pairs."""
        return log_mean_exp(pairs.as_matrix(), dim=1)

    def value_ceiling(self, negatives_per_row: int) -> float:
        """``log K`` with ``K = k + 1`` candidates per row: the largest value InfoNCE can report."""
        return math.log(negatives_per_row + 1)

    def pointwise(self, pairs: PairScores) -> PairScores:
        row = self.log_normalizer(pairs)
        return PairScores(pairs.joint - row, pairs.marginal - row.unsqueeze(1))
