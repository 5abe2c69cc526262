"""All-gather with gradients: the score matrix over the *global* batch under DDP.

Every process holds ``n_r`` embeddings ``z_r``. :func:`all_gather_with_grad` returns the concatenation
``Z = [z_0; ...; z_{W-1}]`` (``N = sum n_r`` rows, in rank order, identical on all ranks) so that each
process can score all ``N x N`` pairs and any bound sees ``N - 1`` negatives per row, independent of
the number of devices. Backward: every rank computes the same global loss ``L(Z)``; the gradient
that reaches ``z_r`` is the sum over ranks of ``dL_q / dz_r`` (an all-reduce of ``dL/dZ``, then this
rank's slice), i.e. ``W dL/dz_r``, and DDP's gradient averaging (``1/W``) then gives exactly the
single-process gradient of ``L`` on the global batch. Per-rank batch sizes may differ (they are
exchanged first and the chunks padded), which ``torch.distributed.nn.functional.all_gather`` does
not allow; it uses all-reduce (gloo and NCCL) rather than reduce-scatter (NCCL only).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather_with_grad", "release_process_group", "world_size"]


def release_process_group() -> None:
    """Destroy the default process group if one is initialised (what ``Trainer(strategy="ddp")`` leaves
    behind). A gloo group still alive at interpreter exit can abort the process (``terminate called without
    an active exception``, status -6) after a successful fit; releasing it first lets the process exit 0."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size(group: Optional[Any] = None) -> int:
    """Number of processes in ``group`` (1 without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, tensor: Tensor, group: Optional[Any]) -> Tensor:
        size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
        sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size(group))]
        dist.all_gather(sizes, size, group=group)
        counts = [int(s.item()) for s in sizes]
        longest = max(counts)
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        chunks = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(chunks, padded.contiguous(), group=group)
        ctx.group, ctx.counts, ctx.rank = group, counts, dist.get_rank(group)
        return torch.cat([chunk[:count] for chunk, count in zip(chunks, counts)])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]], None


def all_gather_with_grad(tensor: Tensor, group: Optional[Any] = None) -> Tensor:
    """``[n_r, ...]`` on each rank -> ``[sum_r n_r, ...]`` on every rank, differentiable.

    Without a process group (or with one process) returns ``tensor`` unchanged. Every rank must call
    it (and later run backward through it) the same number of times, as with any collective.
    """
    if world_size(group) == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor, group)
