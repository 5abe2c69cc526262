"""The joint critic's ``n x m`` score grid on a CPU, forward and backward in cache-sized blocks of pairs.

For the ReLU joint critic ``T(x_i, y_j) = w^T relu(W_L ... relu(h^x_i + h^y_j) ...) + c`` (the first layer's halves
``h^x = W_x x + b``, ``h^y = W_y y`` are computed once per sample), autograd's plain path makes each element-wise
step one pass over an ``[n m, h]`` tensor: the broadcast add, every ReLU and its backward, the bias gradients, the
last layer's outer product and the two reductions back to ``h^x`` and ``h^y``. At the protocol's shape (``n = m =
64``, ``h = 256``: 4 MiB per tensor) each pass runs from main memory, and together they cost about as much as the
three ``[n m, h] x [h, h]`` GEMMs that are the arithmetic (``benchmarks/engine_speed.py``).

:class:`JointReluGrid` walks the grid in blocks of rows (about 1 MiB of activations each): a block's element-wise
work runs while it is in the caches, only the post-ReLU activations are kept for backward (``relu(z) > 0`` iff ``z >
0``, so they are also the masks), and the backward accumulates the weight gradients block by block with one GEMM
each (``addmm_``). The result equals autograd's plain path up to float rounding (the blocked sums are added in
another order); it supports first-order gradients only, and :func:`fused_grid_applies` keeps every other case
(no gradient, ``vmap``, autocast, another device or activation) on the plain path.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

__all__ = ["JointReluGrid", "fused_grid_applies"]

#: set to ``False`` to compute every grid on autograd's plain path (what ``benchmarks/engine_speed.py`` compares)
ENABLED = True

#: activations per block: about 1 MiB of float32, which stays in a CPU core's L2 cache
BLOCK_ELEMENTS = 1 << 18

_threshold_backward = torch.ops.aten.threshold_backward


def fused_grid_applies(first_activation: nn.Module, rest: nn.Sequential, hx: Tensor, hy: Tensor) -> bool:
    """Whether :class:`JointReluGrid` may compute this grid: a gradient is needed, on a CPU, float32 or float64
    outside autocast and outside ``torch.func`` transforms, and the MLP is ``Linear`` (with bias) and ``ReLU``
    layers alternating, ending in a ``Linear``."""
    if not (ENABLED and torch.is_grad_enabled() and (hx.requires_grad or hy.requires_grad or _any_grad(rest))):
        return False
    if hx.device.type != "cpu" or hx.dtype not in (torch.float32, torch.float64) or hy.dtype != hx.dtype:
        return False
    if torch.is_autocast_enabled("cpu") or torch._C._functorch.peek_interpreter_stack() is not None:
        return False
    if type(first_activation) is not nn.ReLU or len(rest) % 2 != 1:
        return False
    return all(
        (type(layer) is nn.Linear and layer.bias is not None) if index % 2 == 0 else type(layer) is nn.ReLU
        for index, layer in enumerate(rest)
    )


def _any_grad(rest: nn.Sequential) -> bool:
    return any(p.requires_grad for p in rest.parameters())


def block_rows(m: int, width: int) -> int:
    """Rows of the grid per block: ``rows * m * width`` activations at most :data:`BLOCK_ELEMENTS` (at least one)."""
    return max(1, BLOCK_ELEMENTS // max(1, m * width))


class JointReluGrid(torch.autograd.Function):
    """``scores[i, j] = MLP(relu(hx[i] + hy[j]))`` for every pair, ``[n, m, out]``, in blocks of rows.

    ``apply(hx, hy, weight_1, bias_1, ..., weight_L, bias_L)``: the ``Linear`` layers of the MLP after the first
    ReLU (a ReLU after every one but the last).
    """

    @staticmethod
    def forward(ctx: Any, hx: Tensor, hy: Tensor, *parameters: Tensor) -> Tensor:
        n, m, width = hx.shape[0], hy.shape[0], hx.shape[1]
        layers = list(zip(parameters[0::2], parameters[1::2]))
        activations = [hx.new_empty(n * m, width)] + [hx.new_empty(n * m, w.shape[0]) for w, _ in layers[:-1]]
        out = hx.new_empty(n * m, layers[-1][0].shape[0])
        rows = block_rows(m, max(a.shape[1] for a in activations))
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            pairs = slice(start * m, stop * m)
            block = activations[0][pairs]
            torch.add(hx[start:stop, None, :], hy[None, :, :], out=block.view(stop - start, m, width))
            block.clamp_min_(0)
            for (weight, bias), kept in zip(layers[:-1], activations[1:]):
                block = torch.addmm(bias, block, weight.t(), out=kept[pairs]).clamp_min_(0)
            torch.addmm(layers[-1][1], block, layers[-1][0].t(), out=out[pairs])
        ctx.save_for_backward(*activations, *parameters)
        ctx.depth, ctx.rows, ctx.grid = len(activations), rows, (n, m)
        return out.view(n, m, -1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Optional[Tensor], ...]:
        saved = ctx.saved_tensors
        activations, parameters = saved[: ctx.depth], saved[ctx.depth :]
        layers = list(zip(parameters[0::2], parameters[1::2]))
        (n, m), rows, width = ctx.grid, ctx.rows, activations[0].shape[1]
        grad = grad.reshape(n * m, -1)
        weight_grads = [torch.zeros_like(w) for w, _ in layers]
        bias_grads = [torch.zeros_like(b) for _, b in layers]
        grad_hx, grad_hy = activations[0].new_empty(n, width), activations[0].new_zeros(m, width)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            pairs = slice(start * m, stop * m)
            g = grad[pairs]
            for index in range(len(layers) - 1, -1, -1):
                if index < len(layers) - 1:  # through the ReLU after this layer: its output is its mask
                    g = _threshold_backward(g, activations[index + 1][pairs], 0)
                weight_grads[index].addmm_(g.t(), activations[index][pairs])
                bias_grads[index].add_(g.sum(0))
                g = g @ layers[index][0]
            g = _threshold_backward(g, activations[0][pairs], 0).view(stop - start, m, width)
            torch.sum(g, 1, out=grad_hx[start:stop])
            grad_hy.add_(g.sum(0))
        grads: list[Optional[Tensor]] = [grad_hx, grad_hy]
        for weight_grad, bias_grad in zip(weight_grads, bias_grads):
            grads += [weight_grad, bias_grad]
        return tuple(grads)


def linear_parameters(rest: nn.Sequential) -> list[Tensor]:
    """``weight, bias`` of every ``Linear`` in ``rest``, in order (what :class:`JointReluGrid` takes)."""
    return [t for layer in rest if isinstance(layer, nn.Linear) for t in (layer.weight, layer.bias)]
