"""Bilinear critic ``T(x, y) = x^T W y`` (CPC, Oord et al. 2018; Tschannen et al. 2020)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Critic

__all__ = ["BilinearCritic"]


class BilinearCritic(Critic):
    """``scores = x W y^T``: the critic of the PD paper's shallow SSL task (after Tschannen et al.)."""

    def __init__(self, x_dim: int, y_dim: int) -> None:
        super().__init__(x_dim, y_dim)
        self.weight = nn.Parameter(torch.empty(x_dim, y_dim))
        self.reset_parameters()

    def reset_parameters(self) -> "BilinearCritic":
        nn.init.uniform_(self.weight, -1.0 / math.sqrt(self.x_dim), 1.0 / math.sqrt(self.x_dim))
        return self

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._inputs(x, y)
        return (x @ self.weight) @ y.T

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_paired(x, y)
        x, y = self._inputs(x, y)
        return ((x @ self.weight) * y).sum(-1)
