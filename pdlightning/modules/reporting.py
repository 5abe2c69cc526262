"""What ``validate`` / ``test`` of the MI modules print, log and write: one row per member and level
with the estimate, its standard error and 95% interval, shared by the single module and the ensemble."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import lightning as L
import torch

from pdlightning.callbacks.output import run_directory

from ..results import EstimateResult
from ..uncertainty import Interval
from .held_out import HeldOutEstimates, Key

__all__ = ["gather_intervals", "log_interval", "results_table", "run_directory"]


def _level_order(level: Optional[float]) -> float:
    return -1.0 if level is None else level


def gather_intervals(module: L.LightningModule, held_out: HeldOutEstimates) -> dict[Key, Interval]:
    """The intervals of every process's held-out units together (under DDP each process evaluated
    its share of the batches; gathered on the host, once)."""
    trainer = module._trainer
    if trainer is None or trainer.world_size <= 1 or not torch.distributed.is_initialized():
        return held_out.intervals()
    local = {key: torch.cat(values).cpu() for key, values in held_out.values.items()}
    gathered: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(gathered, (local, dict(held_out.units)))
    merged = HeldOutEstimates()
    for values, units in gathered:
        for key, tensor in values.items():
            merged.add(key[0], key[1], tensor, units[key])
    return merged.intervals()


def log_interval(
    module: L.LightningModule,
    stage: str,
    interval: Interval,
    level: Optional[float],
    member: Optional[str] = None,
    group: bool = False,
) -> None:
    """``<stage>/mi_estimate[/<member>]@<level>`` and its ``mi_bias``, ``mi_stderr``, ``mi_ci_low``,
    ``mi_ci_high`` (the interval's only where there are two or more units)."""
    name = "" if member is None else f"/{'seeds/' if group else ''}{member}"
    suffix = f"{name}@{level:g}" if level is not None else name
    values = {"mi_estimate": interval.estimate}
    if level is not None:
        values["mi_bias"] = interval.estimate - level
    if interval.n > 1:
        values.update(mi_stderr=interval.stderr, mi_ci_low=interval.low, mi_ci_high=interval.high)
    for key, value in values.items():
        module.log(f"{stage}/{key}{suffix}", float(value), rank_zero_only=True)


def results_table(results: Sequence[EstimateResult], title: str) -> str:
    """The printed table: true MI, estimate, standard error, 95% interval, units, bias, and for each
    row whose it is and which weights produced it."""
    members = any(r.member is not None or r.group is not None for r in results)
    header = (f"{'member':>18} " if members else "") + (
        f"{'true MI':>8} {'estimate':>9} {'std.err':>8} {'95% interval':>19} {'n':>10} {'bias':>8}   weights"
        + ("; reported by" if members else "")
    )
    lines = [f"\n{title}:", header]
    for r in results:
        iv = r.interval
        who = f"{(r.member or f'{r.group} (seeds)'):>18} " if members else ""
        true = f"{r.true_mi:8.2f}" if r.true_mi is not None else f"{'-':>8}"
        bias = f"{iv.estimate - r.true_mi:+8.3f}" if r.true_mi is not None else f"{'-':>8}"
        if iv.n > 1:
            spread = f"{iv.stderr:8.3f} {f'[{iv.low:.3f}, {iv.high:.3f}]':>19}"
        else:
            spread = f"{'-':>8} {'n = 1: none':>19}"
        lines.append(
            f"{who}{true} {iv.estimate:9.3f} {spread} {iv.count:>10} {bias}   "
            f"{r.weights if r.group is None else 'across seeds'}" + (f"; {r.label}" if members else "")
        )
    lines.append(
        "intervals: percentile bootstrap of the mean over held-out pairs (plug-in estimators) or "
        "batches (bounds with in-batch negatives), Student t over seeds; see pdlightning.uncertainty"
    )
    return "\n".join(lines)
