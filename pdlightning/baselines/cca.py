"""Canonical correlation analysis (CCA) as an MI estimator: exact for Gaussians.

For ``(X, Y)`` jointly Gaussian, ``I(X; Y) = -1/2 Σ_i log(1 - ρ_i²)`` over the canonical correlations ``ρ_i``, the
singular values of ``Σ_xx^{-1/2} Σ_xy Σ_yy^{-1/2}`` (equivalently ``1/2 log(det Σ_xx det Σ_yy / det Σ)``). The
estimator plugs in the sample covariance: it is the MI of the Gaussian fitted to the data, so it is consistent
for Gaussian tasks, equals the truth when the sample covariance does, and on other tasks measures only the
linear (second-order) part of the dependence. The per-pair values are the PMI of that fitted Gaussian.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import ArrayLike, BaselineEstimate, as_paired_arrays

__all__ = ["CCA", "canonical_correlations", "cca_mi"]


def _centred_covariance(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    joint = np.hstack([x, y])
    centred = joint - joint.mean(axis=0)
    if centred.shape[0] <= joint.shape[1]:
        raise ValueError(f"CCA needs more pairs than x_dim + y_dim = {joint.shape[1]}, got n={centred.shape[0]}")
    covariance = centred.T @ centred / centred.shape[0]
    eigenvalues = np.linalg.eigvalsh(covariance)
    if eigenvalues[0] <= 1e-12 * eigenvalues[-1]:
        raise ValueError("the sample covariance of (x, y) is singular: CCA needs linearly independent columns")
    return centred[:, : x.shape[1]], centred[:, x.shape[1] :], covariance


def _inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors / np.sqrt(values)) @ vectors.T


def canonical_correlations(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """The ``min(dx, dy)`` sample canonical correlations of ``x [n, dx]`` and ``y [n, dy]``, descending."""
    x, y = as_paired_arrays(x, y)
    _, _, cov = _centred_covariance(x, y)
    dx = x.shape[1]
    whitened = _inverse_sqrt(cov[:dx, :dx]) @ cov[:dx, dx:] @ _inverse_sqrt(cov[dx:, dx:])
    return np.clip(np.linalg.svd(whitened, compute_uv=False), 0.0, 1.0)


def cca_mi(x: ArrayLike, y: ArrayLike) -> BaselineEstimate:
    """``-1/2 Σ log(1 - ρ_i²)`` of the sample canonical correlations, with the fitted Gaussian's PMI per pair."""
    x, y = as_paired_arrays(x, y)
    cx, cy, cov = _centred_covariance(x, y)
    rho = canonical_correlations(x, y)
    mi = float(-0.5 * np.log1p(-(rho**2)).sum())
    dx = x.shape[1]
    joint = np.hstack([cx, cy])
    # PMI of N(mean, cov) at each pair: mi - 1/2 (zᵀΣ⁻¹z - xᵀΣ_xx⁻¹x - yᵀΣ_yy⁻¹y); its sample mean is mi exactly.
    q = np.einsum("ni,ij,nj->n", joint, np.linalg.inv(cov), joint)
    q_x = np.einsum("ni,ij,nj->n", cx, np.linalg.inv(cov[:dx, :dx]), cx)
    q_y = np.einsum("ni,ij,nj->n", cy, np.linalg.inv(cov[dx:, dx:]), cy)
    return BaselineEstimate(mi=mi, pmi=torch.from_numpy(mi - 0.5 * (q - q_x - q_y)))


class CCA:
    """The CCA (Gaussian) baseline: ``CCA().estimate(x, y)``; its ``name`` is ``cca``."""

    name = "cca"

    def estimate(self, x: ArrayLike, y: ArrayLike) -> BaselineEstimate:
        return cca_mi(x, y)
