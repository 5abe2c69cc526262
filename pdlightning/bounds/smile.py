"""SMILE: Song & Ermon, "Understanding the Limitations of Variational MI Estimators" (ICLR 2020)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from .base import Bound, PairScores, log_mean_exp
from .js import js_objective

__all__ = ["SMILE"]


class SMILE(Bound):
    """Learns with JS, reports ``E_p[f] - log E_{p(x)p(y)}[e^{clip(f, -tau, tau)}]`` (Eq. 17).

    Clipping the partition's scores bounds its variance by ``(e^tau - e^-tau)^2 / 4n`` (Thm. 3) at
    the cost of bias. ``tau = None`` or ``inf`` gives DV on a JS-trained critic.

    Not a lower bound (:attr:`is_lower_bound` is ``False``): a finite ``tau`` shrinks the partition term's large
    scores, so the estimate can read above the MI (the paper puts "lower bound" in quotes), and without a clip it is
    DV's batch estimate, which reads above the MI in expectation (:class:`~pdlightning.bounds.DV`).
    """

    log_domain_second_term = True
    optimal_second_term = 0.0
    pmi_normalizer = "global"
    #: tau also lives in the buffer ``clip_at`` that the computation reads: members of other tau stack together.
    stacked_settings = ("tau",)

    clip_at: Tensor  # a registered buffer: tau, inf for none

    def __init__(self, tau: Optional[float] = 5.0) -> None:
        super().__init__()
        if tau is not None and not (tau > 0):
            raise ValueError(f"tau: expected a positive clip value (or None/inf for none), got {tau}")
        self.tau = None if tau is None or math.isinf(tau) else float(tau)
        self.register_buffer("clip_at", torch.tensor(math.inf if self.tau is None else self.tau), persistent=False)

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        return js_objective(pairs), {}

    def hyperparameters(self) -> dict[str, Any]:
        return {"τ": math.inf if self.tau is None else self.tau}

    def _clipped(self, scores: Tensor) -> Tensor:
        return torch.clamp(scores, -self.clip_at, self.clip_at)

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return pairs.joint.mean(), log_mean_exp(self._clipped(pairs.marginal))

    def second_term(self, pairs: PairScores) -> Tensor:
        """Unclipped DV partition: the regulariser of ReSMILE acts where clipping has no gradient."""
        return log_mean_exp(pairs.marginal)

    def log_normalizer(self, pairs: PairScores) -> Tensor:
        """The clipped log-partition ``log E_{p(x)p(y)}[e^{clip(f)}]``."""
        return log_mean_exp(self._clipped(pairs.marginal))

    def pointwise(self, pairs: PairScores) -> PairScores:
        log_partition = self.log_normalizer(pairs)
        return PairScores(pairs.joint - log_partition, pairs.marginal - log_partition)
