"""RealNVP-style invertible encoder of the PD paper's shallow SSL task (after Tschannen et al. 2020).

Tschannen et al., "On Mutual Information Maximization for Representation Learning" (ICLR 2020), Sec. 3.1,
and the PD paper's public shallow code: each half of a flattened image is encoded by a chain of
``num_couplings`` coupling layers (Dinh et al. 2017), each followed by a fixed random permutation.
A coupling keeps the first ``d/2`` coordinates and shifts (and optionally scales) the rest by an MLP
of the kept half:

    y_{1:d/2} = x_{1:d/2},    y_{d/2+1:d} = x_{d/2+1:d} * s(x_{1:d/2}) + t(x_{1:d/2}),

so the encoder is a bijection and cannot add or drop information: any gain in linear separability
comes from the objective, not from a bottleneck. The public code uses ``shift_only`` couplings
(``s = 1``), 30 couplings with ``[512, 512]`` ReLU MLPs and weights drawn from a truncated normal
with std ``1e-4`` (so the encoder starts as a permutation of the pixels); with ``shift_only=False``
the scale is ``1e-7 + softplus(.)`` as in that code.
"""

from __future__ import annotations

from typing import Sequence, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import mlp

__all__ = ["AdditiveCoupling", "RealNVPEncoder"]


class AdditiveCoupling(nn.Module):
    """One coupling layer on ``[n, dim]``: keep the first ``dim // 2`` coordinates, shift (and
    optionally scale) the others by an MLP of the kept ones."""

    def __init__(self, dim: int, hidden_dims: Sequence[int], shift_only: bool = True, init_std: float = 1e-4) -> None:
        super().__init__()
        self.num_masked = dim // 2
        self.shift_only = shift_only
        out = dim - self.num_masked
        self.net = mlp(self.num_masked, hidden_dims, out if shift_only else 2 * out, "relu")
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
                nn.init.zeros_(layer.bias)

    def _shift_scale(self, kept: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.net(kept)
        if self.shift_only:
            return out, None
        shift, raw_scale = out.chunk(2, dim=-1)
        return shift, 1e-7 + F.softplus(raw_scale)

    def forward(self, x: Tensor) -> Tensor:
        kept, rest = x[:, : self.num_masked], x[:, self.num_masked :]
        shift, scale = self._shift_scale(kept)
        rest = rest + shift if scale is None else rest * scale + shift
        return torch.cat([kept, rest], dim=-1)

    def inverse(self, y: Tensor) -> Tensor:
        kept, rest = y[:, : self.num_masked], y[:, self.num_masked :]
        shift, scale = self._shift_scale(kept)
        rest = rest - shift if scale is None else (rest - shift) / scale
        return torch.cat([kept, rest], dim=-1)


class RealNVPEncoder(nn.Module):
    """Invertible encoder ``R^dim -> R^dim``: ``num_couplings`` x (coupling, fixed permutation).

    Args:
        dim: input features (inputs ``[n, ...]`` are flattened); 392 for half an MNIST image.
        num_couplings: coupling layers (30 in the public shallow code).
        hidden_dims: hidden widths of each coupling's MLP (``[512, 512]`` there).
        shift_only: additive couplings (the public code) or affine ones.
        init_std: std of the truncated-normal weight init (``1e-4`` there: near-identity start).
        permutation_seed: seed of the fixed permutations (stored as buffers, so checkpoints keep them).

    Attributes:
        output_dim: ``dim`` (the representation has the input's size).
    """

    permutations: Tensor  # a registered buffer: [num_couplings, dim]

    def __init__(
        self,
        dim: int,
        num_couplings: int = 30,
        hidden_dims: Sequence[int] = (512, 512),
        shift_only: bool = True,
        init_std: float = 1e-4,
        permutation_seed: int = 0,
    ) -> None:
        super().__init__()
        if not (isinstance(dim, int) and dim >= 2):
            raise ValueError(f"dim: expected an integer >= 2 (features per sample), got {dim!r}")
        if not (isinstance(num_couplings, int) and num_couplings >= 1):
            raise ValueError(f"num_couplings: expected a positive integer, got {num_couplings!r}")
        if not init_std > 0:
            raise ValueError(f"init_std: expected a positive standard deviation, got {init_std}")
        self.dim = dim
        self.output_dim = dim
        self.couplings = nn.ModuleList(
            AdditiveCoupling(dim, hidden_dims, shift_only, init_std) for _ in range(num_couplings)
        )
        generator = torch.Generator().manual_seed(permutation_seed)
        self.register_buffer(
            "permutations", torch.stack([torch.randperm(dim, generator=generator) for _ in range(num_couplings)])
        )

    def _flatten(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(
                f"x: RealNVPEncoder(dim={self.dim}) got {flat.shape[1]} features per sample "
                f"(batch shape {tuple(x.shape)})"
            )
        return flat

    def forward(self, x: Tensor) -> Tensor:
        h = self._flatten(x)
        for coupling, permutation in zip(self.couplings, self.permutations):
            h = coupling(h)[:, permutation]
        return h

    def inverse(self, z: Tensor) -> Tensor:
        """Exact inverse of :meth:`forward` (``[n, dim] -> [n, dim]``)."""
        h = self._flatten(z)
        for coupling, permutation in zip(reversed(self.couplings), reversed(self.permutations)):
            h = cast(AdditiveCoupling, coupling).inverse(h[:, torch.argsort(permutation)])  # ModuleList is untyped
        return h
