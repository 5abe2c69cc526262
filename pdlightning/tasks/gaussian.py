"""Multivariate normal tasks: a general split Gaussian, the bivariate normal, dense and sparse ("2-pair").

For ``(X, Y) ~ N(0, Σ)`` with blocks ``Σ_xx``, ``Σ_yy`` and ``z = (x, y)``:

    ``PMI(x, y) = I - 1/2 (zᵀ Σ⁻¹ z - xᵀ Σ_xx⁻¹ x - yᵀ Σ_yy⁻¹ y)``,
    ``I(X; Y) = 1/2 log(det Σ_xx det Σ_yy / det Σ) = -1/2 Σ_i log(1 - ρ_i²)``

over the canonical correlations ``ρ_i``. The suite's parametrisations (Czyż et al., NeurIPS 2023):
dense, all off-diagonal correlations equal; sparse, ``n_interacting`` pairs ``(X_i, Y_i)`` with correlation
``λ²/(1 + λ²)`` (a latent ``Z_i`` of weight λ shared by ``X_i`` and ``Y_i``, unit noise, the other
coordinates' variance matched with weight λ) and no other correlation. :class:`RandomGaussianTask`: a random mean
and a random SPD covariance drawn from a seed (Mroueh et al., AAAI 2021, Sec. 5).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .base import Task, check_positive_int, draw_device, format_number

__all__ = [
    "SplitQuadraticForms",
    "GaussianTask",
    "BivariateNormalTask",
    "DenseGaussianTask",
    "SparseGaussianTask",
    "RandomGaussianTask",
    "gaussian_mi",
    "as_covariance",
]

MatrixLike = Union[Sequence[Sequence[float]], Tensor]


def as_covariance(matrix: MatrixLike, name: str) -> Tensor:
    """``matrix`` as a float64 symmetric positive-definite tensor, or a ValueError naming ``name``."""
    cov = torch.as_tensor(matrix, dtype=torch.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] < 2:
        raise ValueError(f"{name} must be a square matrix of size at least 2x2, got shape {tuple(cov.shape)}")
    if not torch.isfinite(cov).all():
        raise ValueError(f"{name} must be finite")
    if not torch.allclose(cov, cov.T, rtol=0.0, atol=1e-12 * cov.abs().max().item()):
        raise ValueError(f"{name} must be symmetric")
    _, info = torch.linalg.cholesky_ex(cov)
    if info.item() != 0:
        raise ValueError(f"{name} must be positive definite")
    return cov


def _log_det(matrix: Tensor) -> Tensor:
    return 2.0 * torch.linalg.cholesky(matrix).diagonal().log().sum()


def gaussian_mi(covariance: Tensor, x_dim: int) -> float:
    """``I(X; Y) = 1/2 (log det Σ_xx + log det Σ_yy - log det Σ)`` for ``(X, Y) ~ N(μ, Σ)``."""
    cov = covariance.to(torch.float64)
    mi = 0.5 * (_log_det(cov[:x_dim, :x_dim]) + _log_det(cov[x_dim:, x_dim:]) - _log_det(cov))
    return max(float(mi), 0.0)


class SplitQuadraticForms:
    """The three quadratic forms of a split elliptical density with scale matrix ``Σ``:
    ``q = zᵀ Σ⁻¹ z``, ``q_x = xᵀ Σ_xx⁻¹ x``, ``q_y = yᵀ Σ_yy⁻¹ y``, for aligned pairs or for all pairs.

    For all pairs ``q_ij = a_i + 2 x_iᵀ B y_j + c_j`` with ``Σ⁻¹ = [[A, B], [Bᵀ, C]]``, ``a_i = x_iᵀ A x_i`` and
    ``c_j = y_jᵀ C y_j``: one ``[n, dx] x [dx, m]`` product instead of ``n m`` quadratic forms.
    """

    def __init__(self, scale: Tensor, x_dim: int) -> None:
        precision = torch.cholesky_inverse(torch.linalg.cholesky(scale))
        self.x_dim = x_dim
        self.a = precision[:x_dim, :x_dim]
        self.b = precision[:x_dim, x_dim:]
        self.c = precision[x_dim:, x_dim:]
        self.precision_x = torch.cholesky_inverse(torch.linalg.cholesky(scale[:x_dim, :x_dim]))
        self.precision_y = torch.cholesky_inverse(torch.linalg.cholesky(scale[x_dim:, x_dim:]))

    @staticmethod
    def _form(u: Tensor, m: Tensor, v: Tensor) -> Tensor:
        return torch.einsum("...i,ij,...j->...", u, m.to(u.device), v)

    def pairs(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(q, q_x, q_y)`` of aligned pairs ``(u[..., i, :], v[..., i, :])`` (broadcasting)."""
        q = self._form(u, self.a, u) + 2.0 * self._form(u, self.b, v) + self._form(v, self.c, v)
        return q, self._form(u, self.precision_x, u), self._form(v, self.precision_y, v)

    def matrix(self, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(q [n, m], q_x [n, 1], q_y [1, m])`` of every pair ``(u[i], v[j])``."""
        a = self._form(u, self.a, u)[:, None]
        c = self._form(v, self.c, v)[None, :]
        q = a + c + 2.0 * (u @ self.b.to(u.device)) @ v.T
        return q, self._form(u, self.precision_x, u)[:, None], self._form(v, self.precision_y, v)[None, :]


class GaussianTask(Task):
    """``(X, Y) ~ N(0, Σ)`` with ``X`` the first ``x_dim`` coordinates.

    Args:
        covariance: the ``(x_dim + y_dim)``-square covariance ``Σ`` (symmetric positive definite).
        x_dim: dimension of X; Y gets the remaining coordinates.
        name: the task id (default ``multinormal-{x_dim}-{y_dim}``).
    """

    def __init__(self, covariance: Sequence[Sequence[float]], x_dim: int, name: Optional[str] = None) -> None:
        self._covariance = as_covariance(covariance, "covariance")
        total = self._covariance.shape[0]
        check_positive_int("x_dim", x_dim)
        if x_dim >= total:
            raise ValueError(
                f"x_dim must be smaller than the covariance size {total} (Y needs a dimension), got {x_dim}"
            )
        self._x_dim, self._y_dim = x_dim, total - x_dim
        self._name = name or f"multinormal-{self._x_dim}-{self._y_dim}"
        self._cholesky = torch.linalg.cholesky(self._covariance)
        self._forms = SplitQuadraticForms(self._covariance, x_dim)
        self._mi = gaussian_mi(self._covariance, x_dim)

    @property
    def covariance(self) -> Tensor:
        """The joint covariance ``Σ`` (float64 copy)."""
        return self._covariance.clone()

    def sample_latents(self, n: int, generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
        device = draw_device(generator)
        noise = torch.randn(n, self._covariance.shape[0], generator=generator, dtype=torch.float64, device=device)
        z = noise @ self._cholesky.to(device).T
        return z[:, : self._x_dim], z[:, self._x_dim :]

    def pmi_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        q, q_x, q_y = self._forms.pairs(latent_x.double(), latent_y.double())
        return self._mi - 0.5 * (q - q_x - q_y)

    def pmi_matrix_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        q, q_x, q_y = self._forms.matrix(latent_x.double(), latent_y.double())
        return self._mi - 0.5 * (q - q_x - q_y)


def _check_correlation(name: str, value: float) -> float:
    value = float(value)
    if not -1.0 < value < 1.0:
        raise ValueError(f"{name} must lie in the open interval (-1, 1), got {value}")
    return value


class BivariateNormalTask(GaussianTask):
    """``1v1-normal-{correlation}``: standard bivariate normal, ``I = -1/2 log(1 - ρ²)``."""

    def __init__(self, correlation: float = 0.75) -> None:
        rho = _check_correlation("correlation", correlation)
        super().__init__([[1.0, rho], [rho, 1.0]], x_dim=1, name=f"1v1-normal-{format_number(rho)}")


class DenseGaussianTask(GaussianTask):
    """``multinormal-dense-{x_dim}-{y_dim}-{correlation}``: unit variances, every off-diagonal correlation
    equal to ``correlation`` (positive definite for ``-1/(x_dim + y_dim - 1) < correlation < 1``)."""

    def __init__(self, x_dim: int, y_dim: int, correlation: float = 0.5) -> None:
        check_positive_int("x_dim", x_dim)
        check_positive_int("y_dim", y_dim)
        rho = _check_correlation("correlation", correlation)
        total = x_dim + y_dim
        if rho <= -1.0 / (total - 1):
            raise ValueError(
                f"correlation must exceed -1/(x_dim + y_dim - 1) = {-1.0 / (total - 1):.6g} for an equicorrelated "
                f"{total}x{total} matrix to be positive definite, got {rho}"
            )
        covariance = torch.full((total, total), rho, dtype=torch.float64)
        covariance.fill_diagonal_(1.0)
        super().__init__(covariance.tolist(), x_dim, name=f"multinormal-dense-{x_dim}-{y_dim}-{format_number(rho)}")


class SparseGaussianTask(GaussianTask):
    """``multinormal-sparse-{x_dim}-{y_dim}-{n_interacting}-{strength}``: ``corr(X_i, Y_i) = λ²/(1 + λ²)`` for
    ``i < n_interacting`` (λ = ``strength``), all other coordinates uncorrelated; unit variances.

    ``I = -n_interacting log(1 - ρ²) / 2``; the suite's ``2-pair`` tasks have ``n_interacting = 2``, λ = 2,
    ρ = 0.8, ``I = -log 0.36 ≈ 1.0217`` nats in every dimension.
    """

    def __init__(self, x_dim: int, y_dim: int, n_interacting: int = 2, strength: float = 2.0) -> None:
        check_positive_int("x_dim", x_dim)
        check_positive_int("y_dim", y_dim)
        if (
            isinstance(n_interacting, bool)
            or not isinstance(n_interacting, int)
            or not 0 <= n_interacting <= min(x_dim, y_dim)
        ):
            raise ValueError(
                f"n_interacting must be an integer between 0 and min(x_dim, y_dim) = {min(x_dim, y_dim)}, "
                f"got {n_interacting!r}"
            )
        strength = float(strength)
        if not (math.isfinite(strength) and strength > 0.0):
            raise ValueError(f"strength must be a positive finite number, got {strength}")
        rho = strength**2 / (1.0 + strength**2)
        covariance = torch.eye(x_dim + y_dim, dtype=torch.float64)
        for i in range(n_interacting):
            covariance[i, x_dim + i] = covariance[x_dim + i, i] = rho
        self.interacting_correlation = rho
        super().__init__(
            covariance.tolist(),
            x_dim,
            name=f"multinormal-sparse-{x_dim}-{y_dim}-{n_interacting}-{format_number(strength)}",
        )


class RandomGaussianTask(GaussianTask):
    """``random-normal-{x_dim}-{y_dim}-s{seed}``: ``N(μ, Σ)`` in ``dim`` dimensions with a random mean and a random
    symmetric positive-definite covariance (the synthetic Gaussians of Mroueh et al., AAAI 2021, Sec. 5), ``X`` the
    first ``x_dim`` coordinates (default ``dim // 2``), ``Y`` the rest.

    Drawn from ``seed`` (float64, CPU): ``A`` with entries ``N(0, 1/dim)``, ``Σ = A Aᵀ + ridge · I`` (a Wishart matrix
    of ``dim`` degrees of freedom over ``dim``, plus a ridge that bounds its smallest eigenvalue, hence the MI), then
    ``μ ~ N(0, mean_scale² I)``. ``I(X; Y) = ½ log(det Σ_xx det Σ_yy / det Σ)``: the mean does not enter. The
    latents are the centred pairs (their PMI is the observations'); the observations add ``μ``.

    Args:
        dim: the joint dimension ``x_dim + y_dim`` (at least 2).
        seed: seed of ``Σ`` and ``μ`` (not of the samples, which the sampling generator draws).
        x_dim: dimension of X (default ``dim // 2``), ``1 <= x_dim < dim``.
        ridge: added to the diagonal of ``A Aᵀ`` (> 0).
        mean_scale: standard deviation of the mean's entries (>= 0; 0 centres the task).
    """

    def __init__(
        self, dim: int, seed: int = 0, x_dim: Optional[int] = None, ridge: float = 0.1, mean_scale: float = 1.0
    ) -> None:
        check_positive_int("dim", dim)
        if dim < 2:
            raise ValueError(f"dim must be at least 2 (X and Y need a coordinate each), got {dim}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        x_dim = dim // 2 if x_dim is None else x_dim
        ridge, mean_scale = float(ridge), float(mean_scale)
        if not (math.isfinite(ridge) and ridge > 0.0):
            raise ValueError(f"ridge must be a positive finite number, got {ridge}")
        if not (math.isfinite(mean_scale) and mean_scale >= 0.0):
            raise ValueError(f"mean_scale must be a finite number >= 0, got {mean_scale}")
        generator = torch.Generator().manual_seed(seed)
        factor = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / math.sqrt(dim)
        covariance = factor @ factor.T + ridge * torch.eye(dim, dtype=torch.float64)
        self._mean = mean_scale * torch.randn(dim, generator=generator, dtype=torch.float64)
        self.seed, self.ridge, self.mean_scale = seed, ridge, mean_scale
        name = f"random-normal-{x_dim}-{dim - x_dim}-s{seed}" if isinstance(x_dim, int) else None
        super().__init__((0.5 * (covariance + covariance.T)).tolist(), x_dim, name=name)

    @property
    def mean(self) -> Tensor:
        """The mean ``μ`` of ``(X, Y)`` (float64 copy)."""
        return self._mean.clone()

    def observe_x(self, latent_x: Tensor) -> Tensor:
        return latent_x + self._mean[: self.x_dim].to(latent_x.device, latent_x.dtype)

    def observe_y(self, latent_y: Tensor) -> Tensor:
        return latent_y + self._mean[self.x_dim :].to(latent_y.device, latent_y.dtype)
