"""High-MI tasks: the TRE protocol's correlated Gaussians (10 to 80 nats) and a Student-t at matched MI.

The protocol of Rhodes, Xu & Gutmann ("Telescoping Density-Ratio Estimation", NeurIPS 2020, Sec. 4.2 and their
code): ``X, Y ∈ R^d``, every pair ``(X_i, Y_i)`` a standard bivariate normal with correlation ``ρ``, the pairs
independent, so

    ``I(X; Y) = -d/2 log(1 - ρ²)``,  ``ρ = sqrt(1 - exp(-2 I / d))``.

The paper's four levels are ``(d, I) = (20, 10), (40, 20), (80, 40), (160, 80)`` nats: the same ``ρ`` (half a nat per
coordinate) in ever more coordinates. (The paper counts the dimension of the joint vector ``(x, y)``: 40 to 320.)

**Reachability.** ``1 - ρ² = exp(-2 I / d)``. The observations are float32: once ``1 - ρ²`` falls below float32's
machine epsilon ``2^-23`` the correlation rounds to 1 in float32 and the covariance of the observations is singular
(80 nats in ``d = 2`` would need ``1 - ρ ≈ 1e-35``). A task therefore requires ``1 - ρ² >= 2^-23``, i.e.
``I / d <= 23/2 log 2 ≈ 7.97`` nats per coordinate; past it the constructor raises a ValueError naming ``mi``.

**Student-t at matched MI.** ``(X, Y) = Z / sqrt(W / ν)`` with ``Z ~ N(0, Σ_ρ)`` (the same block covariance) and
``W ~ χ²_ν`` has the closed-form MI ``I_Gauss(Σ_ρ) + h_d + h_d - h_{2d}`` (:mod:`.student`: the entropies of
standard t's), so ``ρ`` is solved for exactly: ``-d/2 log(1 - ρ²) = I - (h_d + h_d - h_{2d})``; no Monte Carlo.
"""

from __future__ import annotations

import math

import torch

from .base import check_positive_int, format_number
from .gaussian import GaussianTask
from .student import StudentTTask, student_t_mi_correction

__all__ = [
    "CorrelatedGaussianTask",
    "CorrelatedStudentTTask",
    "HIGH_MI_LEVELS",
    "MAX_MI_PER_DIMENSION",
    "correlation_for_mi",
]

#: The TRE protocol's levels ``(d, I in nats)`` (Rhodes et al. 2020, Fig. 4; their code's ``make_gaussians_configs``).
HIGH_MI_LEVELS: tuple[tuple[int, float], ...] = ((20, 10.0), (40, 20.0), (80, 40.0), (160, 80.0))

#: ``1 - ρ²`` may not fall below float32's machine epsilon: at most ``-1/2 log(2^-23)`` nats per coordinate.
_MIN_ONE_MINUS_RHO2 = float(torch.finfo(torch.float32).eps)
MAX_MI_PER_DIMENSION = -0.5 * math.log(_MIN_ONE_MINUS_RHO2)


def correlation_for_mi(mi: float, dim: int, name: str = "mi") -> float:
    """The per-coordinate correlation ``ρ = sqrt(1 - exp(-2 mi / dim))`` of ``dim`` independent correlated pairs
    holding ``mi`` nats; a ValueError naming ``name`` when ``mi`` is negative, not finite, or not reachable in float32
    at this dimension (``1 - ρ² < 2^-23``)."""
    check_positive_int("dim", dim)
    mi = float(mi)
    if not (math.isfinite(mi) and mi >= 0.0):
        raise ValueError(f"{name} must be a finite number of nats >= 0, got {mi}")
    one_minus_rho2 = math.exp(-2.0 * mi / dim)
    if one_minus_rho2 < _MIN_ONE_MINUS_RHO2:
        raise ValueError(
            f"{name}: {mi:g} nats in dim={dim} needs a per-coordinate correlation with 1 - rho^2 = "
            f"exp(-2 {name} / dim) = {one_minus_rho2:.3g}, below float32's resolution 2^-23 = "
            f"{_MIN_ONE_MINUS_RHO2:.3g} (the correlation rounds to 1 and the covariance of the float32 observations is "
            f"singular); at dim={dim} "
            f"{name} can reach {MAX_MI_PER_DIMENSION * dim:.4g} nats ({MAX_MI_PER_DIMENSION:.4g} per coordinate): "
            "lower it or raise dim"
        )
    return math.sqrt(-math.expm1(-2.0 * mi / dim))


def _block_covariance(dim: int, rho: float) -> list[list[float]]:
    """``[[I, ρI], [ρI, I]]`` of size ``2 dim``: ``corr(X_i, Y_i) = ρ``, every other pair uncorrelated."""
    eye = torch.eye(dim, dtype=torch.float64)
    return torch.cat([torch.cat([eye, rho * eye], 1), torch.cat([rho * eye, eye], 1)], 0).tolist()


class CorrelatedGaussianTask(GaussianTask):
    """``tre-normal-{dim}-{mi}``: ``X, Y ~ N(0, I_dim)`` with ``corr(X_i, Y_i) = ρ`` per coordinate and
    ``I(X; Y) = mi`` nats (the TRE protocol; see the module docstring for the reachable ``mi``).

    Args:
        dim: dimension ``d`` of X and of Y.
        mi: the mutual information in nats (``ρ = sqrt(1 - exp(-2 mi / d))``).
    """

    def __init__(self, dim: int, mi: float) -> None:
        rho = correlation_for_mi(mi, dim)
        self.correlation = rho
        super().__init__(_block_covariance(dim, rho), dim, name=f"tre-normal-{dim}-{format_number(mi)}")


class CorrelatedStudentTTask(StudentTTask):
    """``tre-student-{dim}-{dof}-{mi}``: the multivariate t with ``dof`` degrees of freedom and the dispersion of
    :class:`CorrelatedGaussianTask`, its correlation chosen so that ``I(X; Y) = mi`` exactly (closed form; see the
    module docstring). Heavier tails than the Gaussian at the same MI.

    Args:
        dim: dimension ``d`` of X and of Y.
        mi: the mutual information in nats; at least the part the shared ``χ²`` alone gives,
            ``h_d + h_d - h_{2d}`` (e.g. 0.56 nats at ``d = 20``, ``ν = 5``).
        dof: degrees of freedom ``ν > 0``.
    """

    def __init__(self, dim: int, mi: float, dof: float = 5.0) -> None:
        check_positive_int("dim", dim)
        dof = float(dof)
        if not (math.isfinite(dof) and dof > 0.0):
            raise ValueError(f"dof (degrees of freedom) must be a positive finite number, got {dof}")
        correction = student_t_mi_correction(dim, dim, dof)
        if not float(mi) >= correction:
            raise ValueError(
                f"mi: a {dim}-dimensional t with dof={dof:g} holds at least {correction:.4g} nats through its shared "
                f"chi-square alone (even uncorrelated); got mi={mi}"
            )
        rho = correlation_for_mi(float(mi) - correction, dim)
        self.correlation = rho
        dof_text = str(int(dof)) if dof.is_integer() else repr(dof)
        super().__init__(
            dim,
            dim,
            dof,
            dispersion=_block_covariance(dim, rho),
            name=f"tre-student-{dim}-{dof_text}-{format_number(mi)}",
        )
