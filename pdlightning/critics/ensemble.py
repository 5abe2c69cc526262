"""K critics of one architecture evaluated as one: weights stacked along a leading member axis.

Member ``k``'s parameters are slice ``k`` of stacked tensors ``[K, ...]``; one forward runs the
architecture on every member with batched matrix products (``torch.func.functional_call`` under
``torch.vmap``: every ``nn.Linear`` becomes one batched GEMM over the members), giving scores
``[K, n, n]``. Members never mix: each output slice depends only on its member's weights (and, with
independent data, its member's batch), so the gradient of a sum of member losses with respect to
slice ``k`` is the gradient of member ``k``'s loss alone, and an element-wise optimiser (Adam, SGD)
on the stacked tensors is ``K`` independent optimisers.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from .base import Critic

__all__ = ["CriticEnsemble"]


def _architecture(critic: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(t.shape)) for name, t in [*critic.named_parameters(), *critic.named_buffers()]]


class CriticEnsemble(nn.Module):
    """``K`` members of one critic architecture.

    Args:
        critics: the members (same class and parameter shapes; each keeps its own initial weights,
            which are copied into the stacked tensors).

    Inputs are shared (``x [n, ...]``: every member scores the same batch) or per member
    (``x [K, n, ...]``, ``members_dim=True``: member ``k`` scores its own batch).

    Args:
        critics: the members.
        chunk_size: members evaluated per batched call. ``None`` (default): all of them on a GPU (one
            launch per layer for the whole ensemble), one at a time on a CPU, where a batched call's
            ``K``-fold activations fall out of the cache and run at half the GEMM rate of ``K``
            cache-sized ones (measured by ``benchmarks/ensemble_speed.py``).
    """

    #: the members' architecture without weights (kept in ``__dict__``: not a submodule, not in the state)
    template: Critic

    def __init__(self, critics: Sequence[Critic], chunk_size: Optional[int] = None) -> None:
        super().__init__()
        if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
            raise ValueError(f"chunk_size: expected None or an integer >= 1, got {chunk_size!r}")
        self.chunk_size = chunk_size
        if len(critics) < 1:
            raise ValueError("critics: expected at least one member critic")
        reference = _architecture(critics[0])
        for index, critic in enumerate(critics[1:], 1):
            if type(critic) is not type(critics[0]) or _architecture(critic) != reference:
                raise ValueError(
                    f"critics[{index}]: member {index} is a {type(critic).__name__} with parameters "
                    f"{_architecture(critic)[:4]}..., member 0 a {type(critics[0]).__name__} with "
                    f"{reference[:4]}...; an ensemble stacks members of one architecture"
                )
        params, buffers = stack_module_state(list(critics))
        self.num_members = len(critics)
        self.x_dim, self.y_dim = critics[0].x_dim, critics[0].y_dim
        # Parameter names may not contain dots: keep the template's names in a mapping.
        self._names = {name: name.replace(".", "__") for name in [*params, *buffers]}
        self.stacked = nn.ParameterDict({self._names[k]: nn.Parameter(v) for k, v in params.items()})
        for name, value in buffers.items():
            self.register_buffer(f"buffer__{self._names[name]}", value)
        self._buffer_names = list(buffers)
        # The architecture without weights (on the meta device, outside the module's state).
        self.__dict__["template"] = copy.deepcopy(critics[0]).to("meta")

    def member_state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(parameters, buffers)`` of every member, stacked, under the template's names."""
        params = {name: self.stacked[key] for name, key in self._names.items() if key in self.stacked}
        buffers = {name: getattr(self, f"buffer__{self._names[name]}") for name in self._buffer_names}
        return params, buffers

    def member(self, index: int) -> Critic:
        """A standalone critic holding member ``index``'s current weights (a copy)."""
        critic = copy.deepcopy(self.template).to_empty(device=next(iter(self.stacked.values())).device)
        params, buffers = self.member_state()
        critic.load_state_dict({name: value[index].detach().clone() for name, value in {**params, **buffers}.items()})
        return critic

    def _call(self, method: str, x: Tensor, y: Tensor, members_dim: bool) -> Tensor:
        if members_dim and (x.shape[0] != self.num_members or y.shape[0] != self.num_members):
            raise ValueError(
                f"x and y: expected a leading member dimension of {self.num_members}, got x "
                f"{tuple(x.shape)} and y {tuple(y.shape)}"
            )
        params, buffers = self.member_state()
        state = {f"critic.{name}": value for name, value in {**params, **buffers}.items()}
        call = _MethodCall(self.template, method)

        def one(member_state: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
            return functional_call(call, member_state, (xi, yi), strict=True)

        in_dims = (0, 0, 0) if members_dim else (0, None, None)
        batched = torch.vmap(one, in_dims=in_dims, randomness="error")
        size = self.chunk_size or (self.num_members if x.device.type == "cuda" else 1)
        if size >= self.num_members:
            return batched(state, x, y)
        if size == 1:  # a loop over members: plain calls on views of the stacked weights
            members = {name: value.unbind(0) for name, value in state.items()}
            return torch.stack(
                [
                    one(
                        {name: parts[k] for name, parts in members.items()},
                        x[k] if members_dim else x,
                        y[k] if members_dim else y,
                    )
                    for k in range(self.num_members)
                ]
            )
        chunks = []
        for start in range(0, self.num_members, size):
            part = slice(start, start + size)
            chunk_state = {name: value[part] for name, value in state.items()}
            chunks.append(batched(chunk_state, x[part] if members_dim else x, y[part] if members_dim else y))
        return torch.cat(chunks)

    def forward(self, x: Tensor, y: Tensor, members_dim: bool = False) -> Tensor:
        """``[K, n, n]`` in-batch score matrices."""
        return self._call("forward", x, y, members_dim)

    def pointwise(self, x: Tensor, y: Tensor, members_dim: bool = False) -> Tensor:
        """``[K, n]`` scores of the given pairs."""
        return self._call("pointwise", x, y, members_dim)

    def cross(self, x: Tensor, y: Tensor, members_dim: bool = False) -> Tensor:
        """``[K, n, m]`` scores of every ``x_i`` against every ``y_j``."""
        return self._call("cross", x, y, members_dim)


class _MethodCall(nn.Module):
    """``forward(x, y)`` is ``critic.<method>(x, y)``, so ``functional_call`` reaches any method."""

    def __init__(self, critic: nn.Module, method: str) -> None:
        super().__init__()
        self.critic = critic
        self.method = method

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return getattr(self.critic, self.method)(x, y)
