"""The batch contract of every MI datamodule, ours or a user's.

A batch is a dict with
  - ``x``: ``[n, ...]`` and ``y``: ``[n, ...]``, the joint pairs ``(x_i, y_i) ~ p(x, y)``;
  - optionally ``mi``: the true MI in nats (a number or 0-d tensor), for diagnostics;
  - optionally ``x_marginal``, ``y_marginal``: ``[n, ...]`` explicit product-of-marginals pairs
    (one per row). Without them the bound uses all ``n(n-1)`` off-diagonal pairs of the batch;
  - optionally ``in_joint_support``: ``[n]`` bool, which explicit marginal pairs fall in the joint
    support (the one-hot drift task sets it).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

__all__ = ["check_batch_sizes", "check_mi_batch"]


def check_mi_batch(batch: Any) -> Mapping[str, Any]:
    """Raise a ``ValueError`` naming the offending key if ``batch`` breaks the contract."""
    if not isinstance(batch, Mapping):
        raise ValueError(f"batch: expected a dict with keys 'x', 'y' (and optionally 'mi'), got {type(batch).__name__}")
    for key in ("x", "y"):
        if key not in batch:
            raise ValueError(f"batch: missing key {key!r}; found keys {sorted(batch)}")
        if not isinstance(batch[key], Tensor) or batch[key].dim() < 1:
            raise ValueError(f"batch[{key!r}]: expected a tensor of shape [n, ...]")
    n_x, n_y = batch["x"].shape[0], batch["y"].shape[0]
    if n_x != n_y:
        raise ValueError(f"batch['x'] and batch['y']: batch sizes differ ({n_x} vs {n_y})")
    explicit = [k for k in ("x_marginal", "y_marginal") if k in batch]
    if len(explicit) == 1:
        raise ValueError("batch: 'x_marginal' and 'y_marginal' must be given together")
    if explicit:
        for key, joint_key in (("x_marginal", "x"), ("y_marginal", "y")):
            value, joint = batch[key], batch[joint_key]
            if not isinstance(value, Tensor):
                raise ValueError(f"batch[{key!r}]: expected a tensor of shape [n, ...], got {type(value).__name__}")
            expected = (n_x, *joint.shape[1:])
            if tuple(value.shape) != expected:
                raise ValueError(
                    f"batch[{key!r}]: expected one marginal pair per row shaped like batch[{joint_key!r}], "
                    f"i.e. {expected}, got {tuple(value.shape)}"
                )
        support = batch.get("in_joint_support")
        if support is not None and (not isinstance(support, Tensor) or tuple(support.shape) != (n_x,)):
            shape = tuple(support.shape) if isinstance(support, Tensor) else type(support).__name__
            raise ValueError(f"batch['in_joint_support']: expected a [n={n_x}] bool tensor, got {shape}")
    elif n_x < 2:
        raise ValueError(
            f"batch: need at least 2 samples for in-batch negative pairs, got {n_x} (raise the batch "
            "size, or pass explicit 'x_marginal' / 'y_marginal' pairs)"
        )
    if "mi" in batch:
        mi = batch["mi"]
        if not isinstance(mi, (int, float, Tensor)) or isinstance(mi, bool):
            raise ValueError(f"batch['mi']: expected the true MI as a number or tensor, got {type(mi).__name__}")
        if not bool(torch.isfinite(torch.as_tensor(mi, dtype=torch.float32)).all()):
            raise ValueError(f"batch['mi']: the true MI must be finite, got {mi!r}")
    return batch


def check_batch_sizes(batch_size: Any, eval_batch_size: Any = None) -> tuple[int, int]:
    """Validate a datamodule's ``batch_size`` and ``eval_batch_size`` (default: ``batch_size``):
    both need at least 2 pairs, since the other pairs of a batch are its negatives."""
    if not (isinstance(batch_size, int) and batch_size >= 2):
        raise ValueError(f"batch_size: need at least 2 pairs per batch for negatives, got {batch_size!r}")
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    if not (isinstance(eval_batch_size, int) and eval_batch_size >= 2):
        raise ValueError(f"eval_batch_size: need at least 2 pairs per batch, got {eval_batch_size!r}")
    return batch_size, eval_batch_size
