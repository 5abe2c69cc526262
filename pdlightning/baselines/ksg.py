"""The Kraskov-Stögbauer-Grassberger estimator (KSG, algorithm 1; Phys. Rev. E 69, 066138, 2004).

With ``ε_i`` the distance from ``(x_i, y_i)`` to its ``k``-th nearest neighbour in the joint space, measured by
``max(||x - x'||, ||y - y'||)``, and ``n_x(i)``, ``n_y(i)`` the numbers of other points strictly within ``ε_i``
of ``x_i`` in X and of ``y_i`` in Y,

    ``Î = ψ(k) + ψ(N) - mean_i [ψ(n_x(i) + 1) + ψ(n_y(i) + 1)]``.

X and Y may be multivariate. ``metric`` is the norm within X and within Y: ``"chebyshev"`` (max-norm, Kraskov et
al.'s choice) or ``"euclidean"`` (the configuration of the "Beyond Normal" benchmark's published KSG numbers,
Czyż et al. 2023, which also clip the estimate at 0; this one is not clipped). The summands are the *local*
estimates, a noisy per-pair PMI estimate whose mean is ``Î``. KSG is biased downward for large MI and high
dimension, a known limitation that the benchmark documents.

Neighbour searches: scipy's ``cKDTree`` (``O(N log N)``, fast in low dimension, max-norm only) or a chunked
brute-force search in torch (``O(N² d)``, faster above ~10 joint dimensions, either norm, CPU or GPU).
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import numpy as np
import scipy.special
import torch
from scipy.spatial import cKDTree

from .base import ArrayLike, BaselineEstimate, as_paired_arrays

__all__ = ["KSG", "ksg_mi"]

Metric = Literal["chebyshev", "euclidean"]
Algorithm = Literal["auto", "kdtree", "brute"]

# "auto" uses the KD-tree up to this many joint dimensions (beyond it the tree degrades towards brute force).
_KDTREE_MAX_DIM = 10
# Elements of one [rows, n] block of the brute-force search.
_BLOCK_ELEMENTS = 1 << 22


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return k


def _standardize(array: np.ndarray, name: str) -> np.ndarray:
    std = array.std(axis=0)
    if (std == 0).any():
        raise ValueError(f"{name} has a constant column: KSG with standardize=True needs every column to vary")
    return (array - array.mean(axis=0)) / std


def _counts_kdtree(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    joint = np.hstack([x, y])
    distance, _ = cKDTree(joint).query(joint, k=[k + 1], p=np.inf)  # neighbour 1 is the point itself
    radius = np.nextafter(distance[:, 0], 0.0)  # strictly within ε_i
    n_x = cKDTree(x).query_ball_point(x, r=radius, p=np.inf, return_length=True) - 1
    n_y = cKDTree(y).query_ball_point(y, r=radius, p=np.inf, return_length=True) - 1
    return n_x, n_y


def _counts_brute(
    x: np.ndarray, y: np.ndarray, k: int, metric: Metric, device: Union[torch.device, str, None]
) -> tuple[np.ndarray, np.ndarray]:
    p = float("inf") if metric == "chebyshev" else 2.0
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    n = xt.shape[0]
    rows = max(1, _BLOCK_ELEMENTS // n)
    n_x, n_y = [], []
    for start in range(0, n, rows):
        # Exact distances (no matrix-product shortcut), so each point is at distance 0 from itself.
        dist_x = torch.cdist(xt[start : start + rows], xt, p=p, compute_mode="donot_use_mm_for_euclid_dist")
        dist_y = torch.cdist(yt[start : start + rows], yt, p=p, compute_mode="donot_use_mm_for_euclid_dist")
        eps = torch.maximum(dist_x, dist_y).topk(k + 1, dim=1, largest=False).values[:, k]
        n_x.append((dist_x < eps[:, None]).sum(1) - 1)
        n_y.append((dist_y < eps[:, None]).sum(1) - 1)
    return torch.cat(n_x).cpu().numpy(), torch.cat(n_y).cpu().numpy()


def ksg_mi(
    x: ArrayLike,
    y: ArrayLike,
    k: int = 5,
    standardize: bool = True,
    metric: Metric = "chebyshev",
    algorithm: Algorithm = "auto",
    device: Union[torch.device, str, None] = None,
) -> BaselineEstimate:
    """KSG estimate of ``I(X; Y)`` (nats) from paired samples ``x [n, dx]``, ``y [n, dy]``.

    Args:
        k: neighbours (the suite uses 5 and 10).
        standardize: scale each column to zero mean and unit variance first (the estimate is not scale
            invariant across columns; per-column scaling is a bijection of X and of Y, so the MI is unchanged).
        metric: the norm within X and within Y, ``"chebyshev"`` or ``"euclidean"``.
        algorithm: ``"kdtree"`` (Chebyshev only), ``"brute"``, or ``"auto"``: the KD-tree for Chebyshev up to
            10 joint dimensions, brute force otherwise. Both give the same counts.
        device: where the brute-force search runs (default CPU).
    """
    _check_k(k)
    if metric not in ("chebyshev", "euclidean"):
        raise ValueError(f"metric must be 'chebyshev' or 'euclidean', got {metric!r}")
    if algorithm not in ("auto", "kdtree", "brute"):
        raise ValueError(f"algorithm must be 'auto', 'kdtree' or 'brute', got {algorithm!r}")
    if algorithm == "kdtree" and metric != "chebyshev":
        raise ValueError("algorithm='kdtree' supports metric='chebyshev' only (use algorithm='brute')")
    x, y = as_paired_arrays(x, y)
    n = x.shape[0]
    if n <= k:
        raise ValueError(f"KSG needs more pairs than k neighbours: got n={n}, k={k}")
    if standardize:
        x, y = _standardize(x, "x"), _standardize(y, "y")
    use_tree = algorithm == "kdtree" or (
        algorithm == "auto" and metric == "chebyshev" and x.shape[1] + y.shape[1] <= _KDTREE_MAX_DIM
    )
    n_x, n_y = _counts_kdtree(x, y, k) if use_tree else _counts_brute(x, y, k, metric, device)
    digamma = scipy.special.digamma
    local = digamma(k) + digamma(n) - digamma(n_x + 1) - digamma(n_y + 1)
    return BaselineEstimate(mi=float(local.mean()), pmi=torch.from_numpy(np.asarray(local, dtype=np.float64)))


class KSG:
    """The KSG baseline with fixed settings: ``KSG(k=5).estimate(x, y)``; its ``name`` is ``ksg-{k}``
    (``ksg-{k}-euclidean`` for the Euclidean norm)."""

    def __init__(
        self,
        k: int = 5,
        standardize: bool = True,
        metric: Metric = "chebyshev",
        algorithm: Algorithm = "auto",
        device: Optional[str] = None,
    ) -> None:
        self.k = _check_k(k)
        if metric not in ("chebyshev", "euclidean"):
            raise ValueError(f"metric must be 'chebyshev' or 'euclidean', got {metric!r}")
        self.standardize, self.metric, self.algorithm, self.device = standardize, metric, algorithm, device

    @property
    def name(self) -> str:
        return f"ksg-{self.k}" if self.metric == "chebyshev" else f"ksg-{self.k}-{self.metric}"

    def estimate(self, x: ArrayLike, y: ArrayLike) -> BaselineEstimate:
        return ksg_mi(
            x,
            y,
            k=self.k,
            standardize=self.standardize,
            metric=self.metric,
            algorithm=self.algorithm,
            device=self.device,
        )
