"""Many modules of one structure as one: their tensors stacked on a leading member axis.

``K`` critics (or bounds) that differ only in the values of their parameters and buffers run the same
computation. :class:`Stack` holds their tensors stacked, ``[K, ...]``, as the single source of truth,
and evaluates all of them with one call: ``torch.func.functional_call`` of one template module under
``torch.vmap`` over the member axis (every ``nn.Linear`` becomes one batched GEMM over the members).
Members never mix: member ``k``'s output depends only on slice ``k`` of the tensors (and on its own
inputs), so the gradient of a sum of member losses with respect to slice ``k`` is the gradient of
member ``k``'s loss alone, and an element-wise optimiser on the stacked tensors is ``K`` independent
optimisers.

:func:`structure_key` says which modules may share a stack: same class, same plain settings, same
tensor names, shapes, dtypes and ``requires_grad``, recursively. The number of stacks a fit needs is
the number of distinct structures among its members (critic architectures, bound configurations),
not the number of members.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Hashable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

__all__ = ["structure_key", "Stack", "StackedCritic"]


def _plain_settings(module: nn.Module) -> tuple:
    plain = (int, float, str, bool, type(None))
    stacked = set(getattr(module, "stacked_settings", ()))  # held in buffers too: may differ within a stack
    return tuple(
        sorted(
            (k, v if not isinstance(v, (tuple, list)) else tuple(v))
            for k, v in vars(module).items()
            if not k.startswith("_")
            and k != "training"
            and k not in stacked
            and (isinstance(v, plain) or (isinstance(v, (tuple, list)) and all(isinstance(i, plain) for i in v)))
        )
    )


def structure_key(module: nn.Module) -> Hashable:
    """What makes two modules run the same computation given their tensors (see the module docstring)."""
    tensors = tuple(
        (name, tuple(t.shape), t.dtype, bool(getattr(t, "requires_grad", False)))
        for name, t in [*module.named_parameters(), *module.named_buffers()]
    )
    children = tuple((name, structure_key(child)) for name, child in module.named_children())
    return type(module), _plain_settings(module), tensors, children


class Stack(nn.Module):
    """``K`` modules of one structure (see :func:`structure_key`), their tensors stacked.

    Args:
        modules: the members; each keeps its own values, copied into the stacked tensors (the modules
            themselves are not kept: the stack is the source of truth from then on).

    The members' parameters live in one flat parameter ``flat`` of shape ``[K, P]`` (``P`` the parameters of one
    member, in the template's order; a second one, ``frozen``, holds those that do not train): the optimiser, the
    non-finite gradient check and the weight snapshots then touch one tensor per stack, whatever the number of
    layers. Each call views it as the template's parameters, ``[K, *shape]`` each. Buffers stay one tensor each.

    The first module (deep-copied) is kept as the *template*: its code runs every member's computation, its own
    tensor values are never read. It is not a submodule (not in ``state_dict``, not moved by ``.to()``);
    :meth:`train` sets its mode with the stack's.
    """

    template: nn.Module
    flat: Optional[nn.Parameter]  # registered parameters: the trained and the frozen members' parameters, [K, P]
    frozen: Optional[nn.Parameter]

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(modules) < 1:
            raise ValueError("modules: a stack needs at least one member")
        reference = structure_key(modules[0])
        for index, module in enumerate(modules[1:], 1):
            if structure_key(module) != reference:
                raise ValueError(
                    f"modules[{index}]: a {type(module).__name__} whose settings or tensors differ from member 0's "
                    f"{type(modules[0]).__name__}: a stack holds modules of one structure"
                )
        params, buffers = stack_module_state(list(modules))
        k = self.num_members = len(modules)
        #: per flat parameter ("flat": trained, "frozen": not): the template's parameter names and shapes in it.
        self.layout: dict[str, list[tuple[str, tuple[int, ...]]]] = {"flat": [], "frozen": []}
        for name, parameter in modules[0].named_parameters():
            self.layout["flat" if parameter.requires_grad else "frozen"].append((name, tuple(parameter.shape)))
        for kind in ("flat", "frozen"):
            entries = self.layout[kind]
            if entries:
                values = torch.cat([params[name].detach().reshape(k, -1) for name, _ in entries], dim=1)
                self.register_parameter(kind, nn.Parameter(values.clone(), requires_grad=kind == "flat"))
            else:
                self.register_parameter(kind, None)
        self._buffer_keys = {name: f"buffer__{name.replace('.', '__')}" for name in buffers}
        for name, value in buffers.items():
            self.register_buffer(self._buffer_keys[name], value.detach().clone())
        self.__dict__["template"] = copy.deepcopy(modules[0])
        self.template.requires_grad_(False)

    def train(self, mode: bool = True) -> "Stack":
        super().train(mode)
        self.template.train(mode)
        return self

    # ------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, Tensor]:
        """Every member's tensors under the template's names: views ``[K, *shape]`` of the flat parameters, and
        the buffers."""
        out: dict[str, Tensor] = {}
        for kind in ("flat", "frozen"):
            flat = getattr(self, kind)
            entries = self.layout[kind]
            if flat is None:
                continue
            sizes = [math.prod(shape) for _, shape in entries]
            for (name, shape), part in zip(entries, flat.split(sizes, dim=1)):
                out[name] = part.view(self.num_members, *shape)
        out.update({name: getattr(self, key) for name, key in self._buffer_keys.items()})
        return out

    def parameter_names(self) -> list[tuple[str, int, int]]:
        """``(name, start, stop)``: which columns of ``flat`` each trained parameter of the template occupies."""
        out, start = [], 0
        for name, shape in self.layout["flat"]:
            stop = start + math.prod(shape)
            out.append((name, start, stop))
            start = stop
        return out

    def member(self, index: int) -> nn.Module:
        """A standalone copy of member ``index`` (its current values)."""
        module = copy.deepcopy(self.template)
        _load(module, self.state(), index)
        return module.requires_grad_(True) if not self.layout["frozen"] else _restore_frozen(module, self.layout)

    # ---------------------------------------------------------------------------------- calling
    def vmap(
        self,
        fn: Callable[..., Any],
        *args: Any,
        in_dims: Sequence[Optional[int]] = (),
        members: Optional[Tensor] = None,
        chunk_size: Optional[int] = None,
        direct_single: bool = True,
    ) -> Any:
        """``fn(module, *args)`` for every member at once, outputs stacked on a leading member axis.

        ``in_dims`` says which ``args`` carry a member axis (0) and which every member shares (``None``).
        ``members`` (an index tensor) evaluates only those members (outputs in that order).
        ``chunk_size`` evaluates that many members per batched call (1: a loop over members, for devices
        where one batched call is slower than several small ones). A stack of one member is called
        directly, without ``vmap`` (any module works then, e.g. batch norm in training mode), unless
        ``direct_single`` is off (``vmap`` costs fewer operations in backward for simple functions such as bounds).
        """
        state = self.state()
        if members is not None:
            state = {name: value.index_select(0, members) for name, value in state.items()}
        count = self.num_members if members is None else int(members.shape[0])
        dims = tuple(in_dims) + (None,) * (len(args) - len(in_dims))
        template = self.template

        def one(member_state: dict[str, Tensor], *member_args: Any) -> Any:
            return fn(_Bound(template, member_state), *member_args)

        def single(index: int) -> Any:
            member_state = {name: value[index] for name, value in state.items()}
            member_args = [arg[index] if dim == 0 else arg for arg, dim in zip(args, dims)]
            return one(member_state, *member_args)

        if count == 1 and direct_single:
            return torch.utils._pytree.tree_map(lambda t: t.unsqueeze(0), single(0))
        size = chunk_size or count
        batched = torch.vmap(one, in_dims=(0, *dims), randomness="error")
        if size >= count:
            return batched(state, *args)
        if size == 1:
            outputs = [single(k) for k in range(count)]
        else:
            outputs = []
            for start in range(0, count, size):
                part = slice(start, start + size)
                chunk_args = [arg[part] if dim == 0 else arg for arg, dim in zip(args, dims)]
                outputs.append(batched({n: v[part] for n, v in state.items()}, *chunk_args))
            return torch.utils._pytree.tree_map(lambda *parts: torch.cat(parts), *outputs)
        return torch.utils._pytree.tree_map(lambda *parts: torch.stack(parts), *outputs)


def _load(module: nn.Module, state: dict[str, Tensor], index: int) -> None:
    """Copy member ``index``'s values into ``module``'s parameters and buffers (non-persistent ones too)."""
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            tensor.copy_(state[name][index])


def _restore_frozen(module: nn.Module, layout: dict[str, list]) -> nn.Module:
    """Trainable parameters train again in the copy; the frozen ones stay frozen."""
    frozen = {name for name, _ in layout["frozen"]}
    for name, parameter in module.named_parameters():
        parameter.requires_grad_(name not in frozen)
    return module


class _Bound:
    """A module with a member's tensors swapped in: ``bound.method(*args)`` runs ``functional_call``."""

    def __init__(self, module: nn.Module, state: dict[str, Tensor]) -> None:
        self.module, self.state = module, state

    def __call__(self, *args: Any) -> Any:
        return functional_call(self.module, self.state, args, strict=True)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.module, name)
        if not callable(attribute):
            return attribute
        return lambda *args: functional_call(_MethodCall(self.module, name), _prefixed(self.state), args, strict=True)


def _prefixed(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"module.{name}": value for name, value in state.items()}


class _MethodCall(nn.Module):
    """``forward(*args)`` is ``module.<method>(*args)``, so ``functional_call`` reaches any method."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module = module
        self.method = method

    def forward(self, *args: Any) -> Any:
        return getattr(self.module, self.method)(*args)


class StackedCritic(Stack):
    """``K`` critics of one architecture: scores of every member in one call.

    Inputs are shared (``x [n, ...]``: every member scores the same batch) or per member
    (``x [K, n, ...]``, ``members_dim=True``: member ``k`` scores its own batch).

    Args:
        critics: the members.
        chunk_size: members per batched call. ``None`` (default): all of them in one call on a GPU (one launch
            per layer for the whole stack: the GPU's best, and the same number of operations at any
            ``K``); on a CPU the critic's :attr:`~pdlightning.critics.Critic.cpu_chunk_size` (the joint critic:
            1, a loop over members, whose ``K``-fold ``[n^2, h]`` activations would fall out of the caches).
    """

    def __init__(self, critics: Sequence[nn.Module], chunk_size: Optional[int] = None) -> None:
        if chunk_size is not None and not (isinstance(chunk_size, int) and chunk_size >= 1):
            raise ValueError(f"chunk_size: expected None or an integer >= 1, got {chunk_size!r}")
        super().__init__(critics)
        self.chunk_size = chunk_size
        self.x_dim = getattr(critics[0], "x_dim", None)
        self.y_dim = getattr(critics[0], "y_dim", None)
        # The template's tensors are never read: keep it on the meta device (no memory for big critics).
        self.__dict__["template"] = self.template.to("meta")

    def member(self, index: int) -> nn.Module:
        state = self.state()
        device = next(iter(state.values())).device if state else torch.device("cpu")
        module = copy.deepcopy(self.template).to_empty(device=device)
        _load(module, state, index)
        return module.requires_grad_(True)

    def _call(self, method: str, x: Tensor, y: Tensor, members_dim: bool) -> Tensor:
        if members_dim and (x.shape[0] != self.num_members or y.shape[0] != self.num_members):
            raise ValueError(
                f"x and y: expected a leading member dimension of {self.num_members}, got x "
                f"{tuple(x.shape)} and y {tuple(y.shape)}"
            )
        paired = method == "cross" or x.shape[int(members_dim)] == y.shape[int(members_dim)]
        chunk = self.chunk_size
        if chunk is None and x.device.type == "cpu":
            chunk = getattr(self.template, "cpu_chunk_size", None)
        if self.num_members > 1 and paired and (chunk is None or chunk >= self.num_members):
            explicit = self.template.stacked(method, self.state(), x, y, members_dim)  # type: ignore[operator]
            if explicit is not None:  # the explicit batched layer: one batched GEMM per layer for every member
                return explicit
        dims = (0, 0) if members_dim else (None, None)
        return self.vmap(lambda critic, a, b: getattr(critic, method)(a, b), x, y, in_dims=dims, chunk_size=chunk)

    def forward(self, x: Tensor, y: Tensor, members_dim: bool = False) -> Tensor:
        """``[K, n, n]`` in-batch score matrices."""
        return self._call("forward", x, y, members_dim)

    def pointwise(self, x: Tensor, y: Tensor, members_dim: bool = False) -> Tensor:
        """``[K, n]`` scores of the given pairs."""
        return self._call("pointwise", x, y, members_dim)

    def cross(self, x: Tensor, y: Tensor, members_dim: bool = False) -> Tensor:
        """``[K, n, m]`` scores of every ``x_i`` against every ``y_j``."""
        return self._call("cross", x, y, members_dim)


def member_state_dict(template: nn.Module, state: Mapping[str, Tensor], prefix: str, index: int) -> dict[str, Tensor]:
    """Member ``index``'s ``state_dict`` for ``template`` (an instance of the stacked architecture), read off the
    tensors a :class:`Stack` saved under ``prefix`` (``critics.0.``) in a checkpoint's ``state_dict``: the flat
    parameters split by the template's parameter order, the buffers by name. A ``ValueError`` names what does not
    fit."""
    out: dict[str, Tensor] = {}
    for kind, trained in (("flat", True), ("frozen", False)):
        entries = [(n, p.shape) for n, p in template.named_parameters() if p.requires_grad == trained]
        if not entries:
            continue
        key = f"{prefix}{kind}"
        if key not in state:
            raise ValueError(f"checkpoint: no {key!r} for the {type(template).__name__}'s parameters")
        row = state[key][index]
        sizes = [math.prod(shape) for _, shape in entries]
        if sum(sizes) != row.numel():
            raise ValueError(
                f"checkpoint: {key!r} holds {row.numel()} values per member, a {type(template).__name__} of this "
                f"architecture has {sum(sizes)}: another architecture was trained"
            )
        out.update({n: part.view(shape).clone() for (n, shape), part in zip(entries, row.split(sizes))})
    for name, _ in template.named_buffers():
        key = f"{prefix}buffer__{name.replace('.', '__')}"
        if key in state:
            out[name] = state[key][index].clone()
    return out
