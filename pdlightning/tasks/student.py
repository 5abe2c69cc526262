"""Multivariate Student-t tasks: heavy tails with a closed-form MI.

``(X, Y) = Z / sqrt(W / ν)`` with ``Z ~ N(0, Σ)``, ``W ~ χ²_ν``: a multivariate t with ``ν`` degrees of freedom
and dispersion ``Σ``; its marginals are t with the same ``ν`` and the dispersion blocks. With the log-density

    ``log t_k(z; ν, Σ) = c_k - 1/2 log det Σ - (ν + k)/2 log(1 + zᵀ Σ⁻¹ z / ν)``,
    ``c_k = log Γ((ν + k)/2) - log Γ(ν/2) - k/2 log(ν π)``,

the PMI is ``log t_{dx+dy}(x, y) - log t_dx(x) - log t_dy(y)`` and the MI splits into the Gaussian MI of ``Σ``
and a correction that depends on ``ν`` and the dimensions only (Arellano-Valle, Contreras-Reyes & Genton,
Scand. J. Statist. 40, 2013, entropies of their Eq. 7):

    ``I = I_Gauss(Σ) + h_dx + h_dy - h_{dx+dy}``,  ``h_k = -c_k + (ν + k)/2 (ψ((ν + k)/2) - ψ(ν/2))``

(``h_k`` is the entropy of a standard ``t_k``). Even with ``Σ = I`` (the suite's ``student-identity`` tasks)
X and Y are dependent through the shared ``W``; ``I -> 0`` as ``ν -> ∞``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import scipy.special
import torch
from torch import Tensor

from .base import Task, check_positive_int, draw_device
from .gaussian import SplitQuadraticForms, as_covariance, gaussian_mi

__all__ = ["StudentTTask", "student_t_mi_correction", "student_t_entropy"]


def _log_normaliser(k: int, dof: float) -> float:
    """``c_k = log Γ((ν + k)/2) - log Γ(ν/2) - k/2 log(ν π)``."""
    return math.lgamma(0.5 * (dof + k)) - math.lgamma(0.5 * dof) - 0.5 * k * math.log(dof * math.pi)


def student_t_entropy(k: int, dof: float) -> float:
    """Differential entropy (nats) of the standard ``k``-variate t with ``ν = dof``."""
    half = 0.5 * (dof + k)
    return -_log_normaliser(k, dof) + half * float(scipy.special.digamma(half) - scipy.special.digamma(0.5 * dof))


def student_t_mi_correction(x_dim: int, y_dim: int, dof: float) -> float:
    """``h_dx + h_dy - h_{dx+dy}``: the MI of a split t beyond the Gaussian MI of its dispersion."""
    return student_t_entropy(x_dim, dof) + student_t_entropy(y_dim, dof) - student_t_entropy(x_dim + y_dim, dof)


class StudentTTask(Task):
    """``student-identity-{x_dim}-{y_dim}-{dof}``: a split multivariate Student-t.

    Args:
        x_dim: dimension of X.
        y_dim: dimension of Y.
        dof: degrees of freedom ``ν > 0`` (need not be an integer).
        dispersion: the ``(x_dim + y_dim)``-square dispersion ``Σ`` (not the covariance, which is
            ``ν/(ν - 2) Σ`` for ``ν > 2``); default the identity.
        name: the task id (default ``student-identity-…`` for the identity, ``student-{x_dim}-{y_dim}-{dof}``
            otherwise).
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        dof: float,
        dispersion: Optional[Sequence[Sequence[float]]] = None,
        name: Optional[str] = None,
    ) -> None:
        check_positive_int("x_dim", x_dim)
        check_positive_int("y_dim", y_dim)
        dof = float(dof)
        if not (math.isfinite(dof) and dof > 0.0):
            raise ValueError(f"dof (degrees of freedom) must be a positive finite number, got {dof}")
        total = x_dim + y_dim
        if dispersion is None:
            scale = torch.eye(total, dtype=torch.float64)
        else:
            scale = as_covariance(dispersion, "dispersion")
            if scale.shape[0] != total:
                raise ValueError(f"dispersion must be {total}x{total} (x_dim + y_dim), got {tuple(scale.shape)}")
        self._x_dim, self._y_dim, self.dof = x_dim, y_dim, dof
        dof_text = str(int(dof)) if dof.is_integer() else repr(dof)
        default = (
            f"student-identity-{x_dim}-{y_dim}-{dof_text}"
            if dispersion is None
            else f"student-{x_dim}-{y_dim}-{dof_text}"
        )
        self._name = name or default
        self._dispersion = scale
        self._cholesky = torch.linalg.cholesky(scale)
        self._forms = SplitQuadraticForms(scale, x_dim)
        self.gaussian_part = gaussian_mi(scale, x_dim)
        self.correction = student_t_mi_correction(x_dim, y_dim, dof)
        self._mi = self.gaussian_part + self.correction
        # The PMI's constant: c_{dx+dy} - c_dx - c_dy + I_Gauss(Σ) (the log-determinants of Σ and its blocks).
        self._pmi_offset = (
            _log_normaliser(total, dof) - _log_normaliser(x_dim, dof) - _log_normaliser(y_dim, dof) + self.gaussian_part
        )

    @property
    def dispersion(self) -> Tensor:
        """The dispersion ``Σ`` (float64 copy)."""
        return self._dispersion.clone()

    def sample_latents(self, n: int, generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
        device = draw_device(generator)
        total = self._x_dim + self._y_dim
        z = torch.randn(n, total, generator=generator, dtype=torch.float64, device=device) @ self._cholesky.to(device).T
        # W ~ χ²_ν by inverting its CDF at a uniform draw of the same generator (torch has no seeded gamma).
        uniform = torch.rand(n, generator=generator, dtype=torch.float64, device=device).clamp_min(2.0**-60)
        chi2 = 2.0 * scipy.special.gammaincinv(0.5 * self.dof, uniform.cpu().numpy())
        scale = torch.from_numpy(np.sqrt(self.dof / chi2)).to(device)
        t = z * scale[:, None]
        return t[:, : self._x_dim], t[:, self._x_dim :]

    def _pmi(self, q: Tensor, q_x: Tensor, q_y: Tensor) -> Tensor:
        nu = self.dof
        return (
            self._pmi_offset
            - 0.5 * (nu + self._x_dim + self._y_dim) * torch.log1p(q / nu)
            + 0.5 * (nu + self._x_dim) * torch.log1p(q_x / nu)
            + 0.5 * (nu + self._y_dim) * torch.log1p(q_y / nu)
        )

    def pmi_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        return self._pmi(*self._forms.pairs(latent_x.double(), latent_y.double()))

    def pmi_matrix_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        return self._pmi(*self._forms.matrix(latent_x.double(), latent_y.double()))
