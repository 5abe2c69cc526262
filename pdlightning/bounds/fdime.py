"""f-DIME: discriminative MI estimation from the variational representation of an f-divergence.

Letizia, Novello & Tonello, "Mutual Information Estimation via f-Divergence and Data Derangements" (NeurIPS 2024;
arXiv:2305.20025, first titled "Variational f-Divergence and Derangements for Discriminative Mutual Information
Estimation", 2023). A discriminator ``D`` maximises the value function of an f-divergence between ``p(x, y)`` and
``p(x)p(y)``; its optimum is a known function of the density ratio ``r = p(x, y) / (p(x)p(y))``, which the
estimator inverts and averages over the joint pairs: ``I_hat = E_p[log r_hat]``. Here the critic's score ``f`` is
the log-ratio itself, ``log r_hat = f``, and ``D`` is the paper's discriminator written through it:

=========  =======================================================================  ==================  ===========
divergence value function ``J(D)`` (maximised)                                        ``D`` through ``f``   ``D*``
=========  =======================================================================  ==================  ===========
KL         ``E_p[log D] - E_{p(x)p(y)}[D] + 1``                                      ``D = e^f``           ``r``
GAN        ``E_p[log(1 - D)] + E_{p(x)p(y)}[log D]``                                 ``D = σ(-f)``         ``1/(1+r)``
HD         ``2 - E_p[D] - E_{p(x)p(y)}[1/D]`` (squared Hellinger)                     ``D = e^{-f/2}``      ``r^{-1/2}``
=========  =======================================================================  ==================  ===========

so the objectives in ``f`` are KL: ``E_p[f] - E_q[e^f] + 1`` (NWJ's objective on ``f + 1``), GAN:
``-E_p[softplus(-f)] - E_q[softplus(f)]`` (the JS / balanced-classifier objective), HD:
``2 - E_p[e^{-f/2}] - E_q[e^{f/2}]``; each is maximised at ``f = log r`` and reports ``E_p[f]``, never the
variational bound itself (f-DIME is a plug-in estimator, not a bound). What sets f-DIME apart is its marginal pairs:
one per row from a random derangement of the batch (:func:`pdlightning.data.with_derangement_pairs`), which the
bound reads as explicit pairs; with in-batch pairs it uses all ``n(n-1)`` off-diagonal pairs, as the paper's
"joint" / "separable" architectures do.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import PairScores, log_mean_exp
from .plug_in import PlugInBound

__all__ = ["FDIME", "fdime_objective"]

Divergence = Literal["kl", "gan", "hd"]
DIVERGENCES: tuple[str, ...] = ("kl", "gan", "hd")


def fdime_objective(pairs: PairScores, divergence: Divergence) -> Tensor:
    """The f-DIME value function of ``divergence`` in terms of the log-ratio scores ``f`` (to maximise)."""
    if divergence == "kl":
        return pairs.joint.mean() - torch.exp(log_mean_exp(pairs.marginal)) + 1.0
    if divergence == "gan":
        return -F.softplus(-pairs.joint).mean() - F.softplus(pairs.marginal).mean()
    if divergence == "hd":
        return 2.0 - torch.exp(log_mean_exp(-0.5 * pairs.joint)) - torch.exp(log_mean_exp(0.5 * pairs.marginal))
    raise ValueError(f"divergence: expected one of {DIVERGENCES}, got {divergence!r}")


class FDIME(PlugInBound):
    """f-DIME with the KL, GAN or squared-Hellinger divergence (see the module docstring for the formulas).

    Args:
        divergence: ``"kl"``, ``"gan"`` or ``"hd"``.

    Learns ``f ≈ log r`` with the divergence's value function and reports ``E_p[f]``; ``pmi`` is ``f``.
    """

    short_name = "f-DIME"

    def __init__(self, divergence: Divergence = "kl") -> None:
        super().__init__()
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence: expected one of {DIVERGENCES}, got {divergence!r}")
        self.divergence = divergence

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        return fdime_objective(pairs, self.divergence), {}

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs

    def hyperparameters(self) -> dict[str, Any]:
        return {"divergence": self.divergence.upper()}
