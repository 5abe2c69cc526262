"""A bound written as one class, outside the package: the report must pick it up from its fragment."""

from __future__ import annotations

import math

from torch import Tensor

from pdlightning.bounds import Bound, PairScores, log_mean_exp


class ToyBound(Bound):
    """DV's value, with a made-up ceiling of ``log(k + 1) + 1`` to see that the record carries it."""

    is_lower_bound = True
    log_domain_second_term = True
    optimal_second_term = 0.0
    short_name = "Toy"

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return self.scale * pairs.joint.mean(), log_mean_exp(self.scale * pairs.marginal)

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs

    def value_ceiling(self, negatives_per_row: int) -> float:
        return math.log(negatives_per_row + 1) + 1.0

    def hyperparameters(self) -> dict:
        return {"s": self.scale}
