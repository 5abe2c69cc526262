"""Joint ("concat") critic: an MLP over ``[x; y]`` scored for all ``n^2`` pairs without tiling."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import activation_by_name, mlp, stacked_linear, stacked_mlp
from .base import Critic
from .fused_joint import JointReluGrid, fused_grid_applies, linear_parameters

__all__ = ["JointCritic"]


def _flat_inputs(x: Tensor, y: Tensor, members_dim: bool, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``[n, ...]`` (``[K, n, ...]``) inputs as ``[n, d]`` (``[K, n, d]``) of ``dtype`` (no operation when they are)."""
    lead = 2 if members_dim else 1
    x = x if x.dim() == lead + 1 else x.reshape(*x.shape[:lead], -1)
    y = y if y.dim() == lead + 1 else y.reshape(*y.shape[:lead], -1)
    return (x if x.dtype == dtype else x.to(dtype)), (y if y.dtype == dtype else y.to(dtype))


class JointCritic(Critic):
    """``T(x, y) = MLP([x; y])`` (Belghazi et al. 2018; the "concat" critic of Poole et al. 2019).

    The first layer is linear, so ``W [x; y] + b = W_x x + (W_y y + b)``: each half is computed once
    per sample (``O(n d h)``) and broadcast to the ``n x n`` grid, instead of pushing ``n^2`` tiled
    copies of ``[x; y]`` through it (``O(n^2 d h)`` and ``n^2 (d_x + d_y)`` memory). The weights are
    those of ``nn.Linear(x_dim + y_dim, hidden)``, so a checkpoint matches a plain concat MLP. When a ReLU critic's
    grid is differentiated on a CPU, it is computed in cache-sized blocks of pairs
    (:class:`~pdlightning.critics.fused_joint.JointReluGrid`), with the same scores and gradients.

    Args:
        x_dim, y_dim: input features per sample (inputs are flattened).
        hidden_dims: hidden layer widths; the papers' protocol is two layers of 256.
        activation: hidden activation name (``relu``, ``elu``, ``gelu``, ``silu``, ``tanh``, ...).
    """

    #: a loop over members on a CPU: the ``[n^2, h]`` activations of several members at once fall out of the caches
    #: (``benchmarks/engine_speed.py``, Intel Xeon, one thread: the loop at 1.6-1.9x the explicit batched layer's rate
    #: at K = 5 and 8, batch 64, 2 x 256).
    cpu_chunk_size = 1

    def __init__(
        self, x_dim: int, y_dim: int, hidden_dims: Sequence[int] = (256, 256), activation: str = "relu"
    ) -> None:
        super().__init__(x_dim, y_dim)
        if len(hidden_dims) < 1:
            raise ValueError("hidden_dims: the joint critic needs at least one hidden layer")
        self.first = nn.Linear(x_dim + y_dim, hidden_dims[0])
        self.first_activation = activation_by_name(activation)
        self.rest = mlp(hidden_dims[0], hidden_dims[1:], 1, activation)

    def _halves(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x, y = self._inputs(x, y)
        weight_x, weight_y = self.first.weight.split([self.x_dim, self.y_dim], dim=1)
        return F.linear(x, weight_x, self.first.bias), F.linear(y, weight_y)

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        hx, hy = self._halves(x, y)
        n, m = hx.shape[0], hy.shape[0]
        if fused_grid_applies(self.first_activation, self.rest, hx, hy):  # a CPU fit: blocks of pairs in cache
            return JointReluGrid.apply(hx, hy, *linear_parameters(self.rest)).reshape(n, m)
        hidden = self.first_activation(hx.unsqueeze(1) + hy.unsqueeze(0))  # [n, m, h]
        # One [n m, h] GEMM per layer (also under vmap over ensemble members: one batched GEMM).
        return self.rest(hidden.reshape(n * m, -1)).reshape(n, m)

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_paired(x, y)
        hx, hy = self._halves(x, y)
        return self.rest(self.first_activation(hx + hy)).squeeze(-1)

    def stacked(
        self, method: str, state: dict[str, Tensor], x: Tensor, y: Tensor, members_dim: bool
    ) -> Optional[Tensor]:
        """The explicit batched layer (see :meth:`Critic.stacked`): the first layer's halves per sample, broadcast
        over the pairs, then one batched GEMM per layer for all members."""
        x, y = _flat_inputs(x, y, members_dim, state["first.weight"].dtype)
        if x.shape[-1] != self.x_dim or y.shape[-1] != self.y_dim:
            return None  # the plain method raises the error that names the input
        weight_x, weight_y = state["first.weight"].split([self.x_dim, self.y_dim], dim=-1)
        hx = stacked_linear(x, weight_x, state["first.bias"])
        hy = stacked_linear(y, weight_y, None)
        if method == "pointwise":
            hidden = self.first_activation(hx + hy)
            return stacked_mlp(self.rest, state, "rest.", hidden).squeeze(-1)
        k, n, m = hx.shape[0], hx.shape[-2], hy.shape[-2]
        hidden = self.first_activation(hx.unsqueeze(-2) + hy.unsqueeze(-3)).reshape(k, n * m, -1)
        return stacked_mlp(self.rest, state, "rest.", hidden).reshape(k, n, m)
