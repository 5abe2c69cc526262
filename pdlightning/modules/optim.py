"""Optimisers over stacked members: each member's update, learning rate and step count its own.

The parameters of a fit's members are stacked (``[K, ...]``, :mod:`.stacking`); an element-wise optimiser on
the stacked tensors is ``K`` independent optimisers, except for what is *per member*: whether the member
steps at all (its loss or gradients were non-finite, or it is retired: :mod:`.finite`), its own learning
rate, and Adam's step count (bias correction). :class:`MemberAdam` (Adam and AdamW) and :class:`MemberSGD`
are torch's algorithms with those three as ``[K]`` tensors, decided on the device at every step without a
host synchronisation: a member left out of a step keeps its weights, moments and step count exactly as if
the step had not happened for it (as a standalone run that skipped it). Each stacked tensor costs the same
few element-wise operations whatever ``K`` is.

:func:`member_optimizer` builds the member-aware version of the optimiser a config asks for
(``torch.optim.Adam``, ``AdamW``, ``SGD``); any other optimiser is used as it is, and a member left out of a
step is then put back after it (:class:`RestoreLeftOut`: a copy of the weights and state every step, slower).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor

__all__ = ["MemberAdam", "MemberSGD", "member_optimizer", "RestoreLeftOut", "MemberRows"]

#: for each parameter, the members its rows belong to: ``[rows]`` (stacked along dim 0) or a 0-d index
#: (the whole tensor is one member's).
MemberRows = dict[Tensor, Tensor]


class _MemberOptimizer(torch.optim.Optimizer):
    """What :class:`MemberAdam` and :class:`MemberSGD` share: the member map, the update mask and the
    per-member learning-rate scale (``lr_scale[k]`` multiplies the group's ``lr``, so schedulers work)."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)
        self.member_rows: MemberRows = {}
        self.update_mask: Optional[Tensor] = None  # [K] bool, set before every step
        self.lr_scale: Optional[Tensor] = None  # [K] float

    def set_members(self, rows: MemberRows, lr_scale: Optional[Tensor] = None) -> None:
        self.member_rows = rows
        self.lr_scale = lr_scale

    def _rows(self, p: Tensor, values: Optional[Tensor], default: float | bool) -> Tensor:
        """``values`` of the members ``p``'s rows belong to (shape ``[rows]``, or ``[]`` for a parameter of one
        member); ``default`` where no value is set."""
        rows = self.member_rows.get(p)
        if values is None:
            shape = () if rows is None else rows.shape
            return torch.full(shape, default, device=p.device)
        if rows is None:  # a parameter outside any stack: every member's (a fit of one member)
            return values.reshape(-1)[0]
        return values[rows]


def _broadcast(values: Tensor, p: Tensor) -> Tensor:
    """``[rows]`` per-member values viewed to broadcast over ``p`` ``[rows, ...]``."""
    return values.view(values.shape + (1,) * (p.dim() - values.dim()))


class MemberAdam(_MemberOptimizer):
    """Adam (Kingma & Ba 2015) / AdamW (Loshchilov & Hutter 2019, ``decoupled=True``) with per-member masks,
    learning rates and step counts (module docstring). Same arguments and state names as ``torch.optim.Adam``
    (``state['step']`` holds one count per member row). ``fused``: see :attr:`fused`."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        fused: Optional[bool] = None,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"lr: expected a learning rate >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas: expected values in [0, 1), got {betas}")
        super().__init__(
            params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, decoupled=decoupled)
        )
        #: ``None``: torch's fused kernel on CPU rows (:meth:`_fused_rows`), the masked passes elsewhere; ``False``:
        #: the masked passes everywhere.
        self.fused = fused
        self._row_views: dict[int, tuple[Any, list[list[Tensor]]]] = {}

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, decay = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, lr, beta1, beta2, eps, decay, group["decoupled"])
        return loss

    def _update(
        self, p: Tensor, grad: Tensor, lr: float, beta1: float, beta2: float, eps: float, decay: float, decoupled: bool
    ) -> None:
        """One Adam update of ``p``: the per-member factors on ``[rows]`` vectors first, then in-place passes over the
        whole tensor (as many as torch's own Adam, plus two)."""
        on = self._rows(p, self.update_mask, True)  # [rows] bool
        on_f = on.to(p.dtype)
        state = self.state[p]
        if not state:
            state["step"] = torch.zeros(on.shape, dtype=p.dtype, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        step, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
        step.add_(on_f)
        if p.device.type == "cpu" and self.fused is not False:
            self._fused_rows(p, grad, on, state, lr, beta1, beta2, eps, decay, decoupled)
            return
        count = step.clamp(min=1)  # a member not yet stepped: no 0/0 (its update is 0 anyway)
        rate = lr * self._rows(p, self.lr_scale, 1.0).to(p.dtype) * on_f  # [rows], 0 for a member left out
        if decay != 0:
            if decoupled:
                p.mul_(1 - _broadcast(rate, p) * decay)
            else:
                grad = grad.add(p, alpha=decay)
        # a member left out may have non-finite gradients (0 * nan = nan): its rows of the gradient become 0
        grad.masked_fill_(_broadcast(~on, p), 0.0)
        exp_avg.lerp_(grad, _broadcast((1 - beta1) * on_f, p))  # weight 0: a member left out keeps its moments
        exp_avg_sq.mul_(_broadcast(1 - (1 - beta2) * on_f, p)).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt().div_(_broadcast((1 - beta2**count).sqrt(), p)).add_(eps)
        # p -= step_size * exp_avg / denom, step_size = rate / (1 - beta1^t): 0 for a member left out (denom / 0 =
        # inf, exp_avg / inf = 0)
        p.addcdiv_(exp_avg, denom.div_(_broadcast(rate / (1 - beta1**count), p)), value=-1.0)

    def _fused_rows(
        self,
        p: Tensor,
        grad: Tensor,
        on: Tensor,
        state: dict[str, Tensor],
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        decay: float,
        decoupled: bool,
    ) -> None:
        """On the CPU, where reading the mask costs no device synchronisation: torch's fused Adam kernel (one pass
        over parameter, gradient and moments instead of about ten) on the rows of the members that update, one call
        per distinct learning rate; the others' rows are not touched (their step count was not advanced either)."""
        scale = self._rows(p, self.lr_scale, 1.0)
        mask, scales = (on.reshape(-1).tolist(), scale.reshape(-1).tolist())
        # the rows of the persistent tensors are views made once; the gradient's, every step (a new tensor)
        key = (id(p), id(state["exp_avg"]), id(state["exp_avg_sq"]), id(state["step"]))
        kept = self._row_views.get(id(p))
        if kept is None or kept[0] != key:
            tensors = (p, state["exp_avg"], state["exp_avg_sq"], state["step"])
            kept = self._row_views[id(p)] = (key, [list(t.unbind(0)) if on.dim() else [t] for t in tensors])
        views = [kept[1][0], list(grad.unbind(0)) if on.dim() else [grad], *kept[1][1:]]
        by_rate: dict[float, Optional[list[int]]] = {}
        if all(mask) and len(set(scales)) == 1:  # the usual step: every member, one learning rate
            by_rate[scales[0]] = None
        else:
            for k, go in enumerate(mask):
                if go:
                    by_rate[scales[k]] = [*(by_rate.get(scales[k]) or []), k]
        fused = torch._fused_adamw_ if decoupled else torch._fused_adam_
        for rate, members in by_rate.items():
            params, grads, exp_avgs, exp_avg_sqs, steps = (
                v if members is None else [v[k] for k in members] for v in views
            )
            fused(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=lr * rate,
                beta1=beta1,
                beta2=beta2,
                weight_decay=decay,
                eps=eps,
                maximize=False,
            )


class MemberSGD(_MemberOptimizer):
    """SGD with momentum, dampening, Nesterov and weight decay (as ``torch.optim.SGD``) with per-member masks
    and learning rates (module docstring); the momentum buffer starts at a member's first update."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"lr: expected a learning rate >= 0, got {lr}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov: needs a momentum > 0 and zero dampening")
        super().__init__(
            params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        )

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum, dampening = group["momentum"], group["dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                mask_rows = self._rows(p, self.update_mask, True)
                mask = _broadcast(mask_rows, p)
                on = mask.to(p.dtype)
                scale = _broadcast(self._rows(p, self.lr_scale, 1.0), p).to(p.dtype)
                grad = torch.where(mask, p.grad, 0.0)  # a member left out may have non-finite gradients
                direction = grad if group["weight_decay"] == 0 else grad.add(p, alpha=group["weight_decay"])
                if momentum != 0:
                    state = self.state[p]
                    if not state:
                        state["step"] = torch.zeros(mask_rows.shape, device=p.device)
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buffer, started = state["momentum_buffer"], state["step"]
                    first = _broadcast(started == 0, p)
                    moved = torch.where(first, direction, buffer * momentum + (1 - dampening) * direction)
                    buffer.copy_(torch.where(mask, moved, buffer))
                    started.add_(mask_rows.to(started.dtype))
                    direction = direction + momentum * buffer if group["nesterov"] else buffer
                p.sub_(direction * (group["lr"] * scale * on))
        return loss


def member_optimizer(factory: Any, params: Iterable[Any]) -> torch.optim.Optimizer:
    """The optimiser ``factory`` (an optimiser class, a ``functools.partial`` of one, or jsonargparse's wrapper of
    one, which is what the CLI gives) would build, as its member-aware version when there is one
    (``torch.optim.Adam``, ``AdamW``, ``SGD`` without options they lack), else as ``factory`` builds it."""
    target = getattr(factory, "func", factory)
    options = dict(getattr(factory, "keywords", None) or {})
    wrapped = getattr(factory, "args", ())
    if not isinstance(target, type) and wrapped and isinstance(wrapped[-1], type):
        # the CLI's: jsonargparse's partial(call_without_instantiate_context, instantiator, <class>, **options)
        target = wrapped[-1]
    for name in ("foreach", "fused", "capturable", "differentiable"):  # how torch runs it, not what it computes
        options.pop(name, None)
    if target in (torch.optim.Adam, torch.optim.AdamW) and not options.pop("amsgrad", False):
        decoupled = target is torch.optim.AdamW or bool(options.pop("decoupled_weight_decay", False))
        options.pop("decoupled_weight_decay", None)
        if not options.pop("maximize", False):
            decay_default = 0.01 if target is torch.optim.AdamW else 0.0
            options.setdefault("weight_decay", decay_default)
            return MemberAdam(params, decoupled=decoupled, **options)
    if target is torch.optim.SGD and not options.pop("maximize", False):
        return MemberSGD(params, **options)
    return factory(params)


class RestoreLeftOut:
    """For an optimiser without a member-aware version: before the step, copy every stacked parameter and its
    optimiser state; after it, put back the rows of the members left out (:meth:`before`, :meth:`after`). State the
    step created (the first step) starts at zero in those rows, as a fresh optimiser's does (SGD's momentum buffer,
    which starts at the first gradient, is the exception: member-aware SGD handles it exactly)."""

    def __init__(self, rows: MemberRows) -> None:
        self.rows = rows
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._saved: list[tuple[Tensor, Tensor, Tensor]] = []
        self._keep: dict[Tensor, Tensor] = {}

    def _broadcast_keep(self, p: Tensor, mask: Tensor) -> Tensor:
        rows = self.rows[p]
        keep = mask.index_select(0, rows.reshape(-1)).reshape(rows.shape)
        return keep.view(keep.shape + (1,) * (p.dim() - keep.dim()))

    @torch.no_grad()
    def before(self, optimizer: torch.optim.Optimizer, mask: Tensor) -> None:
        self._optimizer, self._saved, self._keep = optimizer, [], {}
        for p in self.rows:
            keep = self._keep[p] = self._broadcast_keep(p, mask)
            tensors = [p.data] + [
                v for v in optimizer.state.get(p, {}).values() if isinstance(v, Tensor) and v.shape == p.shape
            ]
            self._saved += [(t, t.clone(), keep) for t in tensors]

    @torch.no_grad()
    def after(self) -> None:
        saved = {id(live) for live, _, _ in self._saved}
        for live, copy, keep in self._saved:
            live.copy_(torch.where(keep, live, copy))
        if self._optimizer is not None:
            for p, keep in self._keep.items():
                for value in self._optimizer.state.get(p, {}).values():
                    if isinstance(value, Tensor) and value.shape == p.shape and id(value) not in saved:
                        value.copy_(torch.where(keep, value, torch.zeros_like(value)))
        self._saved, self._keep, self._optimizer = [], {}, None
