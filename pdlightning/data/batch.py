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

from torch import Tensor

__all__ = ["check_mi_batch"]


def check_mi_batch(batch: Any) -> Mapping[str, Any]:
    """Raise a ``ValueError`` naming the offending key if ``batch`` breaks the contract."""
    if not isinstance(batch, Mapping):
        raise ValueError(
            f"batch: expected a dict with keys 'x', 'y' (and optionally 'mi'), got {type(batch).__name__}"
        )
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
        for key in ("x_marginal", "y_marginal"):
            if batch[key].shape[0] != n_x:
                raise ValueError(
                    f"batch[{key!r}]: expected one marginal pair per row ({n_x}), got shape "
                    f"{tuple(batch[key].shape)}"
                )
    elif n_x < 2:
        raise ValueError(f"batch: need at least 2 samples for in-batch negative pairs, got {n_x}")
    return batch
