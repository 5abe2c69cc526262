"""Telescoping density-ratio estimation (TRE) as a reporting bound: the plug-in mean of ``log r = Σ_k log r_k``.

Rhodes, Xu & Gutmann, "Telescoping Density-Ratio Estimation" (NeurIPS 2020). The critic
(:class:`~pdlightning.critics.TelescopingCritic`) holds one logistic classifier per bridge between consecutive
waymark distributions and scores a pair by the telescoped sum of their log-ratios, an estimate of
``log p(x, y) / (p(x)p(y))``. It learns through its own loss, :meth:`TelescopingCritic.bridge_loss` (the sum of the
bridges' logistic losses on waymark samples built from the batch), not through a function of the scores: this bound
declares that with :attr:`TRE.critic_loss`, and its own objective on the scores is zero.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .base import PairScores
from .plug_in import PlugInBound

__all__ = ["TRE"]


class TRE(PlugInBound):
    """Reports ``E_p[log r_hat]``, the mean telescoped score of the joint pairs; ``pmi`` is the score.

    **Contract with the engine.** :attr:`critic_loss` names the critic method whose value the module adds to this
    member's loss: ``critic.bridge_loss(x, y, y_marginal)``, with ``y_marginal`` the batch's ``y`` re-paired by a
    permutation (a derangement: :func:`pdlightning.data.random_derangement`), the product-of-marginals end of the
    waymarks. The bound's own objective is ``0`` (a zero that keeps the joint scores in the graph), so without that
    loss nothing trains.
    """

    #: the critic method the engine adds to this member's loss: ``critic.bridge_loss(x, y, y_marginal)``.
    critic_loss: ClassVar[str] = "bridge_loss"
    objective_reads_marginal = False

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        return pairs.joint.sum() * 0.0, {}

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs
