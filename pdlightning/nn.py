"""Building blocks shared by critics and encoders: activations by name and plain MLPs."""

from __future__ import annotations

from typing import Sequence

from torch import nn

__all__ = ["mlp", "activation_by_name", "ACTIVATIONS"]

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
