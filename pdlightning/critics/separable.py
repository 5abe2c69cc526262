"""Separable critic ``T(x, y) = g(x)^T h(y) / temperature`` (Oord et al. 2018; Poole et al. 2019)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nn import mlp, stacked_mlp
from .base import Critic
from .joint import _flat_inputs

__all__ = ["SeparableCritic"]


class SeparableCritic(Critic):
    """Two MLP encoders and an inner product: one ``[n, e] x [e, n]`` matmul for all pairs.

    Args:
        x_dim, y_dim: input features per sample.
        hidden_dims: widths of each encoder's hidden layers.
        embed_dim: embedding size ``e`` (32 in the SMILE/PD benchmark).
        normalize: L2-normalise the embeddings (cosine similarity, as SimCLR).
        temperature: divides the scores; with ``normalize`` it sets their range ``[-1/t, 1/t]``.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        embed_dim: int = 32,
        activation: str = "relu",
        normalize: bool = False,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(x_dim, y_dim)
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive value, got {temperature}")
        self.g = mlp(x_dim, hidden_dims, embed_dim, activation)
        self.h = mlp(y_dim, hidden_dims, embed_dim, activation)
        self.normalize = normalize
        self.temperature = temperature

    def embed(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x, y = self._inputs(x, y)
        gx, hy = self.g(x), self.h(y)
        if self.normalize:
            gx, hy = F.normalize(gx, dim=-1), F.normalize(hy, dim=-1)
        return gx, hy

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        gx, hy = self.embed(x, y)
        return gx @ hy.T / self.temperature

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_paired(x, y)
        gx, hy = self.embed(x, y)
        return (gx * hy).sum(-1) / self.temperature

    def stacked(
        self, method: str, state: dict[str, Tensor], x: Tensor, y: Tensor, members_dim: bool
    ) -> Optional[Tensor]:
        """The explicit batched layer (see :meth:`Critic.stacked`): both encoders as batched GEMMs, then one batched
        inner product for all members."""
        x, y = _flat_inputs(x, y, members_dim, state["g.0.weight"].dtype)
        if x.shape[-1] != self.x_dim or y.shape[-1] != self.y_dim:
            return None
        gx, hy = stacked_mlp(self.g, state, "g.", x), stacked_mlp(self.h, state, "h.", y)
        if self.normalize:
            gx, hy = F.normalize(gx, dim=-1), F.normalize(hy, dim=-1)
        if method == "pointwise":
            return (gx * hy).sum(-1) / self.temperature
        if gx.dim() == 2:  # shared inputs and no member axis would be a single critic: never here
            gx = gx.unsqueeze(0)
        return torch.matmul(gx, hy.transpose(-1, -2)) / self.temperature
