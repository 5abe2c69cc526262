"""Building blocks shared by critics and encoders: activations by name and plain MLPs."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

__all__ = ["mlp", "activation_by_name", "ACTIVATIONS", "stacked_linear", "stacked_mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}


def activation_by_name(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: str = "relu") -> nn.Sequential:
    """``Linear -> act`` for each hidden size, then a final ``Linear`` to ``out_dim``."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), activation_by_name(activation)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def stacked_linear(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``K`` linear layers at once: ``h [K, N, in]`` (or ``[N, in]``, shared) times ``weight [K, out, in]``, plus
    ``bias [K, out]``: one batched GEMM for every member (the explicit batched layer).

    Computed as ``(W h^T)^T``: the weight's gradient ``grad_out^T h`` then comes out in the weight's own ``[K, out,
    in]`` layout, where ``h W^T`` would give it transposed, and the stacked flat parameter's backward would copy it
    through a transpose (measured: two such copies were 15% of a separable-critic step at K = 65 on a CPU)."""
    out = torch.matmul(weight, h.transpose(-1, -2)).transpose(-1, -2)
    return out if bias is None else out + bias.unsqueeze(-2)


def stacked_mlp(layers: nn.Sequential, state: Mapping[str, Tensor], prefix: str, h: Tensor) -> Tensor:
    """:func:`mlp` ``layers`` for ``K`` members whose weights are ``state[f"{prefix}{i}.weight"]`` (``[K, ...]``):
    each ``nn.Linear`` a :func:`stacked_linear`, each activation applied as it is (element-wise)."""
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            h = stacked_linear(h, state[f"{prefix}{index}.weight"], state.get(f"{prefix}{index}.bias"))
        else:
            h = layer(h)
    return h
