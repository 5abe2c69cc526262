"""Re-X: the ReMINE regulariser that pins a bound's second term to a constant.

Choi & Lee, "Combating the Instability of Mutual Information-based Losses via Regularization"
(UAI 2022), Eq. 10-15 and Table 1: ``I_ReX = I_X - lam * d(second term of X, C*)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

from torch import Tensor

from .base import Bound, PairScores

__all__ = ["Regularized"]

Distance = Literal["euclidean", "log_euclidean"]

#: the papers' names of the regularised bounds (ReMINE regularises the DV / MINE loss).
_SHORT_NAMES = {"DV": "MINE", "MINE": "MINE"}


class Regularized(Bound):
    """Wraps any bound ``X`` with a penalty on its marginal (second) term.

    ``d`` is Euclidean ``(S - C*)^2`` (ReMINE: ``S = log E[e^T]``, ``C* = 0``) or log-Euclidean
    ``(log S - log C*)^2`` (ReNWJ: ``S = E[e^{T-1}]``, ``C* = 1``). ``clip`` clamps the marginal
    scores that enter the regulariser to ``[-clip, clip]`` (the paper's "Clipping (tau = 10)"); use
    it with a Euclidean distance on an exponential second term (NWJ, TUBA, JS, eta-DV), whose square
    grows like ``e^{2 max T}`` and overflows float32 past scores of about 44.
    The regulariser shapes the gradient only: the reported value, its ceiling and ``pmi`` are ``X``'s.

    Args:
        bound: the bound ``X`` to regularise (one with a partition term: ``X.has_partition_term``).
        lam: regularisation weight ``lambda``.
        distance: ``"euclidean"`` or ``"log_euclidean"`` (needs a positive second term, i.e. not
            ``X.log_domain_second_term``).
        target: ``C*``; default ``X.optimal_second_term`` (0 for the DV family, whose partition may
            settle anywhere; 1 for the NWJ family).
        clip: optional clamp of the scores inside the regulariser.
    """

    def __init__(
        self,
        bound: Bound,
        lam: float = 1.0,
        distance: Distance = "euclidean",
        target: Optional[float] = None,
        clip: Optional[float] = None,
    ) -> None:
        super().__init__()
        if not bound.has_partition_term:
            raise ValueError(
                f"bound: {type(bound).__name__} reports a plug-in estimate with no partition term "
                "to regularise; use a bound from the DV or NWJ families"
            )
        if not lam >= 0:
            raise ValueError(f"lam: expected a non-negative weight, got {lam}")
        if distance not in ("euclidean", "log_euclidean"):
            raise ValueError(f"distance: expected 'euclidean' or 'log_euclidean', got {distance!r}")
        if target is None:
            target = bound.optimal_second_term
            if target is None:
                raise ValueError(
                    f"target: {type(bound).__name__} declares no optimal second term (optimal_second_term); "
                    "pass the C* to regularise towards"
                )
        if distance == "log_euclidean":
            if bound.log_domain_second_term:
                raise ValueError(
                    f"distance: 'log_euclidean' needs a positive second term, but "
                    f"{type(bound).__name__}'s is a log-partition; use 'euclidean'"
                )
            if not target > 0:
                raise ValueError(f"target: the log-Euclidean distance needs C* > 0, got {target}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip: expected a positive clamp value or None, got {clip}")
        self.bound = bound
        self.lam = lam
        self.distance = distance
        self.target = float(target)
        self.clip = clip

    # The wrapped bound's metadata, read per instance (the class attributes of Bound describe X).
    @property
    def is_lower_bound(self) -> bool:  # type: ignore[override]
        return self.bound.is_lower_bound

    @property
    def is_upper_bound(self) -> bool:  # type: ignore[override]
        return self.bound.is_upper_bound

    @property
    def log_domain_second_term(self) -> bool:  # type: ignore[override]
        return self.bound.log_domain_second_term

    @property
    def optimal_second_term(self) -> Optional[float]:  # type: ignore[override]
        return self.bound.optimal_second_term

    @property
    def second_term_target(self) -> Optional[float]:
        return self.target

    def value_ceiling(self, negatives_per_row: int) -> Optional[float]:
        return self.bound.value_ceiling(negatives_per_row)

    @property
    def pmi_normalizer(self) -> Optional[str]:  # type: ignore[override]
        return self.bound.pmi_normalizer

    @property
    def pmi_up_to_constant(self) -> bool:  # type: ignore[override]
        return self.bound.pmi_up_to_constant

    def log_normalizer(self, pairs: PairScores) -> Tensor:
        return self.bound.log_normalizer(pairs)

    @property
    def label(self) -> str:
        inner = self.bound.short_name or type(self.bound).__name__
        inner_settings = self.bound.label[len(inner) :].strip("()")
        settings = ([inner_settings] if inner_settings else []) + [f"λ={self.lam:g}"]
        if self.distance == "log_euclidean":
            settings.append("log-Euclidean")
        if self.target != self.bound.optimal_second_term:
            settings.append(f"C*={self.target:g}")
        if self.clip is not None:
            settings.append(f"clip={self.clip:g}")
        return f"Re{_SHORT_NAMES.get(inner, inner)}({', '.join(settings)})"

    def hyperparameters(self) -> dict[str, Any]:
        return {"λ": self.lam}

    def regularizer(self, pairs: PairScores) -> Tensor:
        if self.clip is not None:
            pairs = PairScores(pairs.joint, pairs.marginal.clamp(-self.clip, self.clip))
        if self.distance == "euclidean":
            return (self.bound.second_term(pairs) - self.target).square()
        return (self.bound.log_second_term(pairs) - math.log(self.target)).square()

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        objective, extras = self.bound.objective(pairs)
        penalty = self.regularizer(pairs)
        return objective - self.lam * penalty, {**extras, "regularizer": penalty}

    def estimate(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return self.bound.estimate(pairs)

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return self.bound.terms(pairs)

    def second_term(self, pairs: PairScores) -> Tensor:
        return self.bound.second_term(pairs)

    def log_second_term(self, pairs: PairScores) -> Tensor:
        return self.bound.log_second_term(pairs)

    def value(self, first: Tensor, second: Tensor, pairs: PairScores) -> Tensor:
        return self.bound.value(first, second, pairs)

    def pointwise(self, pairs: PairScores) -> PairScores:
        return self.bound.pointwise(pairs)
