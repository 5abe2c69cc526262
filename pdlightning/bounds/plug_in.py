"""Plug-in MI estimation from a pointwise dependency estimate (PD paper, Eq. 7).

Tsai, Zhao, Yamada, Morency & Salakhutdinov, "Neural Methods for Point-wise Dependency Estimation"
(NeurIPS 2020): learn ``log r`` (or ``r``) with any objective, then report ``I = E_p[log r_hat]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Bound, PairScores
from .js import js_objective

__all__ = ["PlugInBound", "VariationalPlugIn"]


class PlugInBound(Bound):
    """Base of the PD estimators: reported MI = mean of ``pointwise`` over the joint pairs."""

    has_partition_term = False

    def estimate(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            first = self.pointwise(pairs).joint.mean()
        return first, torch.zeros_like(first)

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return self.estimate(pairs)


class VariationalPlugIn(PlugInBound):
    """ "Variational MI bounds" row of Table 1: learn ``f ~ log r`` with JS, report ``E_p[f]``."""

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        return js_objective(pairs), {}

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs
