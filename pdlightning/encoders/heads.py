"""Projection heads: the MLP between the representation and the critic (SimCLR, Chen et al. 2020)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

__all__ = ["ProjectionHead", "linear_probe"]


class ProjectionHead(nn.Module):
    """``h -> z``: ``[Linear -> (BatchNorm) -> ReLU] x len(hidden_dims) -> Linear``.

    The critic scores ``z``; linear evaluation uses ``h`` (the encoder's output), as in SimCLR.

    Args:
        in_dim: representation size (the encoder's ``output_dim``).
        hidden_dims: hidden widths (``[]`` gives a linear head).
        out_dim: projection size fed to the critic.
        batch_norm: BatchNorm1d after each hidden layer.
    """

    def __init__(
        self, in_dim: int, hidden_dims: Sequence[int] = (512,), out_dim: int = 128, batch_norm: bool = True
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(nn.ReLU(inplace=True))
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.output_dim = in_dim, out_dim

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h.reshape(h.shape[0], -1))


def linear_probe(feature_dim: int, num_classes: int) -> nn.Sequential:
    """``BatchNorm1d(affine=False) -> Linear``: a linear classifier on standardised features (the
    standardisation is a fixed affine map at evaluation, so the probe stays linear; MAE, He et al. 2022).
    The online probe of contrastive SSL and the offline linear evaluation both use it."""
    return nn.Sequential(nn.BatchNorm1d(feature_dim, affine=False), nn.Linear(feature_dim, num_classes))
