"""The one split rule of every datamodule that cuts a source's rows into parts.

A part is *held out* of a pool of rows as follows. A generator ``numpy.random.default_rng(seed)``
draws one permutation of the pool (of each class in turn, in ascending label order, when the split
is stratified); the held-out parts take consecutive blocks of that permutation in the order they are
named (``{"test": 300, "val": 300}``: the first 300 rows are the test part, the next 300 the
validation part) and the remaining rows are ``"train"``. Every part is returned in the source's own
row order (sorted indices). A *subset* of ``k`` rows is the same rule with one held-out part.

Consequences users can rely on: the same ``(seed, sizes)`` always gives the same parts; a test part
does not depend on whether a validation part is also held out (it comes first); and two datamodules
reading one source with one seed hold out the same test rows.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, TypeVar

import numpy as np

__all__ = ["split_rows", "subset"]

Rows = TypeVar("Rows")


def split_rows(
    rows: int | np.ndarray, held_out: Mapping[str, int], seed: int, labels: Optional[np.ndarray] = None
) -> dict[str, np.ndarray]:
    """Indices of each held-out part and of ``"train"`` (the rest), by the rule of this module.

    Args:
        rows: the pool size ``n`` (the rows are ``0 .. n-1``).
        held_out: part name -> rows held out (per class when ``labels`` is given), in hand-out order.
        seed: seed of the permutation.
        labels: ``[n]`` class labels to stratify by; ``None`` permutes the whole pool at once.
    """
    n = int(rows)
    for name, size in held_out.items():
        if isinstance(size, bool) or not (isinstance(size, (int, np.integer)) and size >= 0):
            raise ValueError(f"{name}_size: expected a non-negative number of rows, got {size!r}")
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (*held_out, "train")}
    for group in groups:
        order = group[rng.permutation(len(group))]
        if sum(held_out.values()) > len(group):
            where = "" if labels is None else f" of class {labels[group[0]].item()!r}"
            names = ", ".join(f"{name}_size" for name in held_out)
            raise ValueError(f"{names}: holding out {dict(held_out)} rows needs more than the {len(group)} rows{where}")
        start = 0
        for name, size in held_out.items():
            parts[name].append(order[start : start + size])
            start += size
        parts["train"].append(order[start:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def subset(arrays: Sequence[Rows], size: Optional[int], seed: int) -> tuple[Rows, ...]:
    """The same ``size`` rows of each of ``arrays`` (aligned, ``[n, ...]``), chosen by the split rule;
    the arrays themselves when ``size`` is None or not below ``n``."""
    rows = len(arrays[0])  # type: ignore[arg-type]
    if size is None or size >= rows:
        return tuple(arrays)
    kept = split_rows(rows, {"subset": size}, seed)["subset"]
    return tuple(array[kept] for array in arrays)  # type: ignore[index]
