"""A learned ``y``-baseline subtracted from any critic: TUBA's ``a(y)`` as a critic shift."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from ..nn import mlp
from .base import Critic

__all__ = ["BaselineShiftedCritic"]


class BaselineShiftedCritic(Critic):
    """``T'(x, y) = T(x, y) - b(y)`` with ``b = log a`` an MLP of ``y``.

    TUBA with baseline ``a(y)`` on critic ``T`` equals TUBA with ``a = 1`` on ``T'`` (Poole et al.
    2019, Sec. 2.2), so ``TUBA()`` on this critic is TUBA with a learned ``a(y)``.
    """

    def __init__(self, critic: Critic, hidden_dims: Sequence[int] = (64,), activation: str = "relu") -> None:
        super().__init__(critic.x_dim, critic.y_dim)
        self.critic = critic
        self.log_baseline = mlp(critic.y_dim, hidden_dims, 1, activation)

    def _baseline(self, y: Tensor) -> Tensor:
        flat = y.reshape(y.shape[0], -1)
        return self.log_baseline(flat.to(next(self.log_baseline.parameters()).dtype)).squeeze(-1)

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        return self.critic.cross(x, y) - self._baseline(y).unsqueeze(0)

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        return self.critic.pointwise(x, y) - self._baseline(y)
