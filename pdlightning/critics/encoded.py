"""Critics over learned encodings: ``T(x, y) = head(f(x), g(y))``, and the dot-product head.

With ``head = DotProductCritic`` this is the ReMINE benchmark critic (Choi & Lee, UAI 2022, §5.1):
SLB ``T(x, y) = f(x) . onehot(y)`` (``y_encoder = Identity``) and CLB ``T(x1, x2) = f(x1) . f(x2)``
(one shared encoder). With a joint head it is a cheap image critic: the encoders run once per sample
(``2n`` images), only the head sees the ``n x n`` pairs.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor, nn

from .base import Critic

__all__ = ["DotProductCritic", "EncodedCritic"]


class DotProductCritic(Critic):
    """``T(x, y) = x . y / temperature`` for ``dim``-dimensional inputs (no parameters)."""

    def __init__(self, dim: int, temperature: float = 1.0) -> None:
        super().__init__(dim, dim)
        if not temperature > 0:
            raise ValueError(f"temperature: expected a positive value, got {temperature}")
        self.temperature = temperature

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._inputs(x, y)
        return x @ y.T / self.temperature

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_paired(x, y)
        x, y = self._inputs(x, y)
        return (x * y).sum(-1) / self.temperature


class EncodedCritic(Critic):
    """``T(x, y) = head(x_encoder(x), y_encoder(y))``.

    Args:
        x_encoder: maps a batch of ``x`` to ``[n, head.x_dim]`` features.
        y_encoder: maps a batch of ``y`` to ``[n, head.y_dim]``; ``None`` shares ``x_encoder``
            (a siamese critic, as CLB's ``f(x1) . f(x2)``). ``torch.nn.Identity`` passes ``y`` as is
            (SLB's one-hot labels).
        head: any critic over the encodings (dot product, joint MLP, bilinear, ...).
    """

    def __init__(self, x_encoder: nn.Module, head: Critic, y_encoder: Optional[nn.Module] = None) -> None:
        super().__init__(head.x_dim, head.y_dim)
        self.x_encoder = x_encoder
        self.y_encoder = y_encoder
        self.head = head

    def encode_x(self, x: Tensor) -> Tensor:
        return self.x_encoder(x)

    def encode_y(self, y: Tensor) -> Tensor:
        return (self.x_encoder if self.y_encoder is None else self.y_encoder)(y)

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        return self.head.cross(self.encode_x(x), self.encode_y(y))

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_paired(x, y)
        return self.head.pointwise(self.encode_x(x), self.encode_y(y))
