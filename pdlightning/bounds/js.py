"""Jensen-Shannon (f-GAN) objective, reported through NWJ.

Nowozin et al. (2016), Hjelm et al. "Deep InfoMax" (ICLR 2019); reporting as in Poole et al. (2019)
and Song & Ermon (SMILE, ICLR 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Bound, PairScores, log_mean_exp

__all__ = ["JS", "js_objective"]


def js_objective(pairs: PairScores) -> Tensor:
    """``-E_p[softplus(-f)] - E_{p(x)p(y)}[softplus(f)]``, maximised at ``f* = log r``."""
    return -F.softplus(-pairs.joint).mean() - F.softplus(pairs.marginal).mean()


class JS(Bound):
    """Learns with the JS objective and reports ``I_NWJ(f + 1) = 1 + E_p[f] - E_{p(x)p(y)}[e^f]``.

    The JS optimum is ``f* = log r``, and NWJ's optimum is ``1 + log r``, so NWJ evaluated on
    ``f + 1`` equals the true MI at the JS optimum. (NWJ on ``f`` itself would sit ``1/e`` nats
    below it there; one public code does that. We keep the variant that is exact at the optimum.)
    """

    is_lower_bound = True
    optimal_second_term = 1.0

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        return js_objective(pairs), {}

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return 1.0 + pairs.joint.mean(), torch.exp(self.log_second_term(pairs))

    def log_second_term(self, pairs: PairScores) -> Tensor:
        return log_mean_exp(pairs.marginal)

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs
