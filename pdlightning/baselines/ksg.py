"""The Kraskov-Stögbauer-Grassberger estimator (KSG, algorithm 1; Phys. Rev. E 69, 066138, 2004).

With ``ε_i`` the max-norm distance from ``(x_i, y_i)`` to its ``k``-th nearest neighbour in the joint space and
``n_x(i)``, ``n_y(i)`` the numbers of other points strictly within ``ε_i`` of ``x_i`` in X and of ``y_i`` in Y,

    ``Î = ψ(k) + ψ(N) - mean_i [ψ(n_x(i) + 1) + ψ(n_y(i) + 1)]``

(X and Y may be multivariate; each is searched with the max-norm). The summands are the *local* estimates, a
noisy per-pair PMI estimate whose mean is ``Î``. Neighbour searches use scipy's ``cKDTree``: ``O(N log N)``.
KSG is biased downward for large MI and high dimension (a known limitation; Czyż et al. 2023 report it).
"""

from __future__ import annotations

import numpy as np
import scipy.special
import torch
from scipy.spatial import cKDTree

from .base import ArrayLike, BaselineEstimate, as_paired_arrays

__all__ = ["KSG", "ksg_mi"]


def _standardize(array: np.ndarray, name: str) -> np.ndarray:
    std = array.std(axis=0)
    if (std == 0).any():
        raise ValueError(f"{name} has a constant column: KSG with standardize=True needs every column to vary")
    return (array - array.mean(axis=0)) / std


def ksg_mi(x: ArrayLike, y: ArrayLike, k: int = 5, standardize: bool = True) -> BaselineEstimate:
    """KSG estimate of ``I(X; Y)`` (nats) from paired samples ``x [n, dx]``, ``y [n, dy]``.

    Args:
        k: neighbours (the suite uses 5 and 10).
        standardize: scale each column to zero mean and unit variance first (the estimate is not scale
            invariant across columns; per-column scaling is a bijection of X and of Y, so the MI is unchanged).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    x, y = as_paired_arrays(x, y)
    n = x.shape[0]
    if n <= k:
        raise ValueError(f"KSG needs more pairs than k neighbours: got n={n}, k={k}")
    if standardize:
        x, y = _standardize(x, "x"), _standardize(y, "y")
    joint = np.hstack([x, y])
    distance, _ = cKDTree(joint).query(joint, k=[k + 1], p=np.inf)  # neighbour 1 is the point itself
    radius = np.nextafter(distance[:, 0], 0.0)  # strictly within ε_i
    n_x = cKDTree(x).query_ball_point(x, r=radius, p=np.inf, return_length=True) - 1
    n_y = cKDTree(y).query_ball_point(y, r=radius, p=np.inf, return_length=True) - 1
    digamma = scipy.special.digamma
    local = digamma(k) + digamma(n) - digamma(n_x + 1) - digamma(n_y + 1)
    return BaselineEstimate(mi=float(local.mean()), pmi=torch.from_numpy(local.astype(np.float64)))


class KSG:
    """The KSG baseline with fixed settings: ``KSG(k=5).estimate(x, y)``; its ``name`` is ``ksg-{k}``."""

    def __init__(self, k: int = 5, standardize: bool = True) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.k, self.standardize = k, standardize

    @property
    def name(self) -> str:
        return f"ksg-{self.k}"

    def estimate(self, x: ArrayLike, y: ArrayLike) -> BaselineEstimate:
        return ksg_mi(x, y, k=self.k, standardize=self.standardize)
