"""A conditional Gaussian ``q(y | x)`` as a critic: the variational density of CLUB and L1Out.

``q(y | x) = N(y; μ(x), diag(σ²(x)))`` with ``[μ(x), log σ²(x)] = MLP(x)``: the model of Cheng et al. ("CLUB: A
Contrastive Log-ratio Upper Bound of Mutual Information", ICML 2020, and their code, which fits ``q`` by maximum
likelihood on the joint pairs). As a critic it scores a pair by its conditional log-likelihood,

    ``T(x_i, y_j) = log q(y_j | x_i) = -1/2 Σ_d [log 2π + log σ²_d(x_i) + (y_jd - μ_d(x_i))² / σ²_d(x_i)]``,

so :meth:`cross` is the ``[n, m]`` matrix of every ``x_i`` against every ``y_j`` (the bounds' in-batch matrix) and
:meth:`pointwise` the joint pairs' ``log q(y_i | x_i)``, both in at least float32 even under autocast. One MLP gives
both halves (the CLUB code uses two), and the log-variance is unconstrained: the CLUB code bounds it with a ``tanh``
to ``(-1, 1)``, which cannot fit a conditional variance below ``e^-1``, exactly the ``1 - ρ²`` of the TRE levels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from ..nn import mlp
from .base import Critic

__all__ = ["ConditionalGaussianCritic"]


class ConditionalGaussianCritic(Critic):
    """``T(x, y) = log q(y | x)`` for a diagonal Gaussian ``q(y | x)`` whose mean and log-variance an MLP of ``x``
    gives.

    Args:
        x_dim: features of ``x``.
        y_dim: features of ``y``: the dimension of the modelled density (a ``y`` of another size is a ValueError
            naming ``y_dim``).
        hidden_dims: hidden widths of the MLP ``x -> [μ, log σ²]`` (empty: a linear-Gaussian model).
        activation: hidden activation name.
    """

    def __init__(
        self, x_dim: int, y_dim: int, hidden_dims: Sequence[int] = (256, 256), activation: str = "relu"
    ) -> None:
        super().__init__(x_dim, y_dim)
        self.net = mlp(x_dim, hidden_dims, 2 * y_dim, activation)

    def conditional(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ(x) [n, y_dim], log σ²(x) [n, y_dim])`` of a batch ``x [n, ...]``."""
        out = self.net(x)
        return out[..., : self.y_dim], out[..., self.y_dim :]

    def _density_inputs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(μ, log σ², y)`` in at least float32: the quadratic form cancels large terms, which half precision
        (autocast) would round away, so the density is evaluated with autocast off."""
        mean, log_var = self.conditional(x)
        dtype = torch.promote_types(mean.dtype, torch.float32)
        return mean.to(dtype), log_var.to(dtype), y.to(dtype)

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._inputs(x, y)
        mean, log_var, y = self._density_inputs(x, y)
        with torch.autocast(device_type=y.device.type, enabled=False):
            precision = (-log_var).exp()
            # Σ_d (y_jd - μ_id)²/σ²_id = y_j² · 1/σ²_i - 2 y_j · μ_i/σ²_i + Σ_d μ_id²/σ²_id: [n, d] x [d, m] products.
            offset = (mean * mean * precision).sum(-1, keepdim=True)
            square = precision @ (y * y).T - 2.0 * (mean * precision) @ y.T + offset
            return -0.5 * (square + log_var.sum(-1, keepdim=True) + self.y_dim * math.log(2.0 * math.pi))

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_paired(x, y)
        x, y = self._inputs(x, y)
        mean, log_var, y = self._density_inputs(x, y)
        with torch.autocast(device_type=y.device.type, enabled=False):
            square = ((y - mean) ** 2 * (-log_var).exp()).sum(-1)
            return -0.5 * (square + log_var.sum(-1) + self.y_dim * math.log(2.0 * math.pi))
