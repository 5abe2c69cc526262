"""Injective maps that turn a base distribution into the suite's non-Gaussian tasks (Czyż et al. 2023).

Each map is applied to X or Y alone, so it leaves the MI and the PMI of every pair unchanged (see
:mod:`pdlightning.tasks.base`); only injectivity matters, which each class below guarantees for its inputs
(and tests check through :meth:`Transform.inverse`). All maps act on float64 tensors ``[..., d]``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "Transform",
    "NormalCDF",
    "HalfCube",
    "Asinh",
    "Wiggly",
    "Spiral",
    "SwissRoll",
    "GaussianMixtureQuantile",
    "WIGGLY_X",
    "WIGGLY_Y",
]

_BISECTION_STEPS = 64


def normal_cdf(z: Tensor) -> Tensor:
    """``Φ(z)`` with full relative precision in the lower tail: ``exp(log Φ(z))``.

    (``torch.special.ndtr`` loses ~5 digits below ``z ≈ -7``; ``log_ndtr`` does not.)
    """
    return torch.exp(torch.special.log_ndtr(z))


def _bisect(increasing: Callable[[Tensor], Tensor], target: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Solve ``increasing(t) = target`` elementwise on brackets ``[low, high]`` that contain the root.

    ``increasing(t) - target`` may be given directly by passing ``target = 0``; 64 halvings reach float64
    resolution for brackets up to ~1e3 wide.
    """
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (low + high)
        below = increasing(mid) < target
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return 0.5 * (low + high)


class Transform(ABC):
    """An injective map of one variable, ``[..., input_dim] -> [..., output_dim(input_dim)]``."""

    #: How the suite's ids name the map (``half_cube-…``, ``swissroll_x-…``).
    id_prefix: str = "transform"

    def output_dim(self, input_dim: int, name: str = "input_dim") -> int:
        """The output dimension for an input of ``input_dim``; a ValueError naming ``name`` if it does not fit."""
        return input_dim

    @abstractmethod
    def __call__(self, z: Tensor) -> Tensor:
        """Apply the map to ``z [..., input_dim]``."""

    def inverse(self, t: Tensor) -> Tensor:
        """The pre-image of an output (the map is injective); not every map implements it."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse implemented")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NormalCDF(Transform):
    """``z -> Φ(z)`` per coordinate: maps a Gaussian onto the unit cube (uniform marginals)."""

    id_prefix = "normal_cdf"

    def __call__(self, z: Tensor) -> Tensor:
        return normal_cdf(z)

    def inverse(self, t: Tensor) -> Tensor:
        return torch.special.ndtri(t)


class HalfCube(Transform):
    """``z -> z |z|^{1/2}`` per coordinate (a signed ``z^{3/2}``): lengthens the tails."""

    id_prefix = "half_cube"

    def __call__(self, z: Tensor) -> Tensor:
        return z * z.abs().sqrt()

    def inverse(self, t: Tensor) -> Tensor:
        return torch.sign(t) * t.abs().pow(2.0 / 3.0)


class Asinh(Transform):
    """``z -> asinh(z)`` per coordinate: shortens heavy tails (``~ sign(z) log 2|z|``)."""

    id_prefix = "asinh"

    def __call__(self, z: Tensor) -> Tensor:
        return torch.asinh(z)

    def inverse(self, t: Tensor) -> Tensor:
        return torch.sinh(t)


class Wiggly(Transform):
    """``z -> z + Σ_k a_k sin(ω_k z + φ_k)`` per coordinate.

    Strictly increasing (hence injective) when ``Σ_k |a_k ω_k| < 1``, since the derivative is at least
    ``1 - Σ_k |a_k ω_k|``. :data:`WIGGLY_X` and :data:`WIGGLY_Y` are the suite's two maps.
    """

    id_prefix = "wiggly"

    def __init__(self, amplitudes: Sequence[float], frequencies: Sequence[float], phases: Sequence[float]) -> None:
        if not len(amplitudes) == len(frequencies) == len(phases):
            raise ValueError(
                f"amplitudes, frequencies and phases must have equal lengths, got "
                f"{len(amplitudes)}, {len(frequencies)}, {len(phases)}"
            )
        self.amplitudes = [float(a) for a in amplitudes]
        self.frequencies = [float(w) for w in frequencies]
        self.phases = [float(p) for p in phases]
        slope = sum(abs(a * w) for a, w in zip(self.amplitudes, self.frequencies))
        if not slope < 1.0:
            raise ValueError(
                f"amplitudes x frequencies must satisfy sum |a_k w_k| < 1 for the map to be increasing, got {slope:.6g}"
            )

    def __call__(self, z: Tensor) -> Tensor:
        out = z.clone()
        for a, w, p in zip(self.amplitudes, self.frequencies, self.phases):
            out = out + a * torch.sin(w * z + p)
        return out

    def inverse(self, t: Tensor) -> Tensor:
        reach = sum(abs(a) for a in self.amplitudes)  # |f(z) - z| <= reach, so z ∈ [t - reach, t + reach]
        return _bisect(self.__call__, t, t - reach, t + reach)

    def __repr__(self) -> str:
        return f"Wiggly(amplitudes={self.amplitudes}, frequencies={self.frequencies}, phases={self.phases})"


#: The suite's wiggly map of X: ``x + 0.4 sin x + 0.2 sin(1.7x + 1) + 0.03 sin(3.3x - 2.5)``.
WIGGLY_X = dict(amplitudes=[0.4, 0.2, 0.03], frequencies=[1.0, 1.7, 3.3], phases=[0.0, 1.0, -2.5])
#: The suite's wiggly map of Y: ``y - 0.4 sin 0.4y + 0.17 sin(1.3y + 3.5) + 0.02 sin(4.3y - 2.5)``.
WIGGLY_Y = dict(amplitudes=[-0.4, 0.17, 0.02], frequencies=[0.4, 1.3, 4.3], phases=[0.0, 3.5, -2.5])


class Spiral(Transform):
    """``z -> R(θ) z`` with ``R(θ) = exp(θ A)`` a rotation in the coordinate plane ``(i, j)``, ``θ = s ||z||²``.

    ``A`` is the so(d) generator with ``A[i, j] = -1``, ``A[j, i] = 1``, so ``R(θ)`` turns ``(z_i, z_j)`` by the
    angle θ. A rotation keeps ``||z||``, hence θ, so the inverse turns back by ``-s ||t||²``. With
    ``normalize_speed`` the rate is ``s = speed / d`` (the suite uses ``speed = 1``, plane ``(0, 1)`` for X and
    ``(1, 2)`` for Y, so its spiral tasks need ``x_dim ≥ 2`` and ``y_dim ≥ 3``).
    """

    id_prefix = "spiral"

    def __init__(self, plane: Sequence[int] = (0, 1), speed: float = 1.0, normalize_speed: bool = True) -> None:
        if len(plane) != 2 or not 0 <= int(plane[0]) < int(plane[1]):
            raise ValueError(f"plane must be two coordinate indices 0 <= i < j, got {plane!r}")
        speed = float(speed)
        if not math.isfinite(speed):
            raise ValueError(f"speed must be finite, got {speed}")
        self.plane = (int(plane[0]), int(plane[1]))
        self.speed = speed
        self.normalize_speed = normalize_speed

    def output_dim(self, input_dim: int, name: str = "input_dim") -> int:
        if input_dim <= self.plane[1]:
            raise ValueError(
                f"{name} must be at least {self.plane[1] + 1} for a spiral in the plane {self.plane}, got {input_dim}"
            )
        return input_dim

    def _rotate(self, z: Tensor, sign: float) -> Tensor:
        rate = self.speed / z.shape[-1] if self.normalize_speed else self.speed
        theta = sign * rate * (z * z).sum(-1)
        i, j = self.plane
        cos, sin = torch.cos(theta), torch.sin(theta)
        out = z.clone()
        out[..., i] = cos * z[..., i] - sin * z[..., j]
        out[..., j] = sin * z[..., i] + cos * z[..., j]
        return out

    def __call__(self, z: Tensor) -> Tensor:
        return self._rotate(z, 1.0)

    def inverse(self, t: Tensor) -> Tensor:
        return self._rotate(t, -1.0)

    def __repr__(self) -> str:
        return f"Spiral(plane={self.plane}, speed={self.speed}, normalize_speed={self.normalize_speed})"


class SwissRoll(Transform):
    """``u -> (s cos s, s sin s) / 21`` with ``s = 3π/2 (1 + 2u)``: embeds ``[0, 1]`` as a 2-d Swiss roll.

    The radius ``s/21`` grows with ``u``, so the map is injective (the inverse reads ``u`` off the radius).
    Needs a 1-d input in ``[0, 1]`` (the suite applies it to the uniform X of ``normal_cdf-1v1-normal-0.75``).
    """

    id_prefix = "swissroll"

    def output_dim(self, input_dim: int, name: str = "input_dim") -> int:
        if input_dim != 1:
            raise ValueError(f"{name} must be 1 for the Swiss-roll embedding (it embeds a line), got {input_dim}")
        return 2

    def __call__(self, z: Tensor) -> Tensor:
        s = 1.5 * math.pi * (1.0 + 2.0 * z[..., 0])
        return torch.stack([s * torch.cos(s), s * torch.sin(s)], dim=-1) / 21.0

    def inverse(self, t: Tensor) -> Tensor:
        s = 21.0 * torch.linalg.vector_norm(t, dim=-1)
        return ((s / (1.5 * math.pi) - 1.0) / 2.0)[..., None]


class GaussianMixtureQuantile(Transform):
    """``z -> F⁻¹(Φ(z))`` per coordinate, ``F`` the CDF of ``Σ_k w_k N(μ_k, 1)``: turns a standard normal
    coordinate into a (multi-modal) mixture by matching quantiles; strictly increasing.

    Solved by bisection in ``z``-space on the bracket ``[z + min μ, z + max μ]`` (each component's quantile
    bounds the mixture's), comparing lower tails for ``z ≤ 0`` and upper tails for ``z > 0`` so that the
    tails keep full float64 precision. The suite's ``1v1-bimodal-0.75`` uses ``0.3 N(0, 1) + 0.7 N(5, 1)``
    for X and ``0.5 N(-1, 1) + 0.5 N(3, 1)`` for Y on the bivariate normal (ρ = 0.75).
    """

    id_prefix = "mixture"

    def __init__(self, weights: Sequence[float], means: Sequence[float]) -> None:
        if len(weights) != len(means) or len(weights) == 0:
            raise ValueError(
                f"weights and means must be non-empty and of equal length, got {len(weights)}, {len(means)}"
            )
        if any(not (w > 0.0) for w in weights) or abs(sum(weights) - 1.0) > 1e-9:
            raise ValueError(f"weights must be positive and sum to 1, got {list(weights)}")
        self.weights = [float(w) for w in weights]
        self.means = [float(m) for m in means]

    def _cdf(self, x: Tensor) -> Tensor:
        return sum((w * normal_cdf(x - m) for w, m in zip(self.weights, self.means)), torch.zeros_like(x))

    def _survival(self, x: Tensor) -> Tensor:
        return sum((w * normal_cdf(m - x) for w, m in zip(self.weights, self.means)), torch.zeros_like(x))

    def __call__(self, z: Tensor) -> Tensor:
        low, high = min(self.means), max(self.means)
        out = torch.empty_like(z)
        lower = z <= 0
        # Solve F(x) = Φ(z) in the lower tail and S(x) = Φ(-z) (as -S(x) = -Φ(-z), increasing) in the upper one.
        z_low, z_high = z[lower], z[~lower]
        out[lower] = _bisect(self._cdf, normal_cdf(z_low), z_low + low, z_low + high)
        out[~lower] = _bisect(lambda x: -self._survival(x), -normal_cdf(-z_high), z_high + low, z_high + high)
        return out

    def inverse(self, t: Tensor) -> Tensor:
        cdf, survival = self._cdf(t), self._survival(t)
        return torch.where(cdf <= 0.5, torch.special.ndtri(cdf), -torch.special.ndtri(survival))

    def __repr__(self) -> str:
        return f"GaussianMixtureQuantile(weights={self.weights}, means={self.means})"
