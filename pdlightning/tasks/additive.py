"""Uniform signal with additive uniform noise: ``X ~ U(0, 1)``, ``N ~ U(-ε, ε)``, ``Y = X + N``.

``p(y | x) = 1/(2ε)`` on ``|y - x| ≤ ε`` and ``p(y) = L(y)/(2ε)`` with ``L(y) = |[0, 1] ∩ [y - ε, y + ε]|``, so

    ``PMI(x, y) = -log L(y)`` if ``|y - x| ≤ ε``, else ``-inf`` (the pair lies outside the joint support),

    ``I(X; Y) = E[-log L(Y)] = ε - log(2ε)`` for ``ε ≤ 1/2`` and ``1/(4ε)`` for ``ε ≥ 1/2``

(both give ``1/2`` at ``ε = 1/2``). The suite's ``1v1-additive-0.1`` and ``1v1-additive-0.75`` (Czyż et al.
2023). A product-of-marginals pair ``(x_i, y_j)`` with ``|y_j - x_i| > ε`` has PMI ``-inf``: pointwise error
metrics must skip such pairs (rank statistics may keep them).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from .base import Task, draw_device, format_number

__all__ = ["AdditiveUniformTask", "additive_uniform_mi"]


def additive_uniform_mi(epsilon: float) -> float:
    """``I(X; X + N)`` for ``X ~ U(0, 1)``, ``N ~ U(-ε, ε)``."""
    return epsilon - math.log(2.0 * epsilon) if epsilon <= 0.5 else 0.25 / epsilon


class AdditiveUniformTask(Task):
    """``1v1-additive-{epsilon}``: ``Y = X + N``, ``X ~ U(0, 1)``, ``N ~ U(-epsilon, epsilon)``."""

    def __init__(self, epsilon: float) -> None:
        epsilon = float(epsilon)
        if not (math.isfinite(epsilon) and epsilon > 0.0):
            raise ValueError(f"epsilon (the noise half-width) must be a positive finite number, got {epsilon}")
        self.epsilon = epsilon
        self._mi = additive_uniform_mi(epsilon)
        self._name, self._x_dim, self._y_dim = f"1v1-additive-{format_number(epsilon)}", 1, 1

    def sample_latents(self, n: int, generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
        device = draw_device(generator)
        x = torch.rand(n, 1, generator=generator, dtype=torch.float64, device=device)
        noise = torch.rand(n, 1, generator=generator, dtype=torch.float64, device=device)
        return x, x + self.epsilon * (2.0 * noise - 1.0)

    def pmi_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        x, y = latent_x.double()[..., 0], latent_y.double()[..., 0]
        overlap = torch.minimum(y + self.epsilon, torch.ones_like(y)) - torch.maximum(
            y - self.epsilon, torch.zeros_like(y)
        )
        inside = (y - x).abs() <= self.epsilon
        return torch.where(inside, -torch.log(overlap), torch.full_like(overlap, -math.inf))
