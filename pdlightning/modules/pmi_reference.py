"""A pair's PMI as a function of the pair alone: batch statistics from a fixed reference sample.

Some bounds read ``log r`` off the critic's score minus a statistic of the batch's marginal pairs
(:attr:`~pdlightning.bounds.Bound.pmi_normalizer`): the DV / MINE / SMILE log-partition
``log E_{p(x)p(y)}[e^f]`` (``"global"``) or InfoNCE's per-``x`` normaliser ``log E_{p(y)}[e^{f(x, y)}]``
(``"row"``). Taken from the batch a pair lands in, its PMI changes with the batch (between eval
batch sizes 100 and 2, a quarter of the PMIs changed sign). For ``predict`` and the pointwise
evaluation the statistic is instead estimated once per MI level on a fixed reference sample of
held-out pairs (the first ``size`` pairs of the evaluation loader at that level): ``"global"`` from
the ``size x (size - 1)`` off-diagonal pairs of the reference, ``"row"`` from each ``x_i`` against the
reference's ``y`` (plus the pair itself, as InfoNCE's ``K`` candidates).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import Tensor

from ..bounds import Bound
from .level_snapshots import batch_level

__all__ = ["ReferenceSample", "collect_reference", "reference_from_loaders", "describe_normalizer"]


class ReferenceSample:
    """Reference pairs per MI level (``None`` for batches without ``mi``), and a cache for the statistics the
    module computes on them (keyed by members, level and weights version)."""

    def __init__(self, pairs: dict[Optional[float], tuple[Tensor, Tensor]]) -> None:
        self.pairs = pairs
        self.cache: dict[Any, Tensor] = {}

    def for_level(self, level: Optional[float]) -> tuple[Tensor, Tensor]:
        if level not in self.pairs:
            known = ", ".join("none" if k is None else f"{k:g}" for k in self.pairs)
            raise ValueError(f"pmi reference: no reference pairs at MI level {level} (have: {known})")
        return self.pairs[level]


def collect_reference(
    batches: Iterable[Any], size: int, device: torch.device, max_batches: int = 10_000
) -> ReferenceSample:
    """The first ``size`` pairs of each MI level found in ``batches`` (at least 2 per level)."""
    xs: dict[Optional[float], list[Tensor]] = {}
    ys: dict[Optional[float], list[Tensor]] = {}
    counts: dict[Optional[float], int] = {}
    for index, batch in enumerate(batches):
        if index >= max_batches:
            break
        level = batch_level(batch)
        have = counts.get(level, 0)
        if have >= size:
            continue
        take = min(size - have, batch["x"].shape[0])
        xs.setdefault(level, []).append(batch["x"][:take])
        ys.setdefault(level, []).append(batch["y"][:take])
        counts[level] = have + take
    pairs = {}
    for level in xs:
        x, y = torch.cat(xs[level]).to(device), torch.cat(ys[level]).to(device)
        if x.shape[0] < 2:
            raise ValueError(
                f"pmi_reference_size: the evaluation data hold only {x.shape[0]} pair(s) at level "
                f"{level}; a reference needs at least 2"
            )
        pairs[level] = (x, y)
    return ReferenceSample(pairs)


def reference_from_loaders(
    loaders: Any, size: int, device: torch.device, require_key: Optional[str] = None
) -> Optional[ReferenceSample]:
    """The reference sample of an evaluation run: :func:`collect_reference` over the batches of ``loaders`` (one
    loader or a list, as ``trainer.{val,test,predict}_dataloaders`` hold them). With ``require_key``, ``None`` when
    the first batch lacks that key (e.g. ``"pmi"``: no pointwise evaluation on these data, nothing to collect)."""
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    batches = iter(batch for loader in loaders if loader is not None for batch in loader)
    first = next(batches, None)
    if first is None or (require_key is not None and not (isinstance(first, Mapping) and require_key in first)):
        return None
    with torch.no_grad():
        return collect_reference(itertools.chain([first], batches), size, device)


def describe_normalizer(bound: Bound, reference: Optional[ReferenceSample]) -> Optional[str]:
    """One line for the user about where the PMI's batch statistic came from (None: not needed)."""
    if bound.pmi_normalizer is None:
        return None
    if reference is None:
        return f"{bound.label}'s PMI uses in-batch statistics (it depends on the batch a pair lands in)"
    sizes = sorted({int(x.shape[0]) for x, _ in reference.pairs.values()})
    return (
        f"{bound.label}'s PMI normaliser ({bound.pmi_normalizer}) is estimated on a fixed reference of "
        f"{'/'.join(map(str, sizes))} held-out pairs per level"
    )
