"""What ``validate`` / ``test`` of the MI module prints, logs and writes: one row per member and level with the
estimate, its standard error and 95% interval, an across-seed row per estimator trained from several seeds, and
a row for every member retired for divergence (never silently dropped)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import lightning as L
import torch

from ..results import EstimateResult
from ..uncertainty import Interval, mean_interval
from .held_out import HeldOutEstimates, Key

__all__ = ["Bracket", "brackets", "gather_intervals", "log_interval", "results_table", "seed_rows", "level_order"]


def level_order(level: Optional[float]) -> float:
    return -1.0 if level is None else level


def gather_intervals(module: L.LightningModule, held_out: HeldOutEstimates) -> dict[Key, Interval]:
    """The intervals of every process's held-out units together (under DDP each process evaluated its share of
    the batches; gathered on the host, once)."""
    trainer = module._trainer
    local = held_out.per_member()
    if trainer is None or trainer.world_size <= 1 or not torch.distributed.is_initialized():
        return held_out.intervals(local)
    gathered: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(gathered, local)
    merged: dict[Key, tuple[torch.Tensor, Any]] = {}
    for part in gathered:
        for key, (values, unit) in part.items():
            previous = merged.get(key)
            merged[key] = (values if previous is None else torch.cat([previous[0], values]), unit)
    return held_out.intervals(merged)


def log_interval(
    module: L.LightningModule,
    stage: str,
    interval: Interval,
    level: Optional[float],
    member: Optional[str] = None,
    group: bool = False,
) -> None:
    """``<stage>/mi_estimate[/<member>]@<level>`` and its ``mi_bias``, ``mi_stderr``, ``mi_ci_low``,
    ``mi_ci_high`` (the interval's only where there are two or more units); ``group``: an across-seed row,
    ``<stage>/mi_estimate/seeds/<key>@<level>``."""
    name = "" if member is None else f"/{'seeds/' if group else ''}{member}"
    suffix = f"{name}@{level:g}" if level is not None else name
    values = {"mi_estimate": interval.estimate}
    if level is not None:
        values["mi_bias"] = interval.estimate - level
    if interval.n > 1:
        values.update(mi_stderr=interval.stderr, mi_ci_low=interval.low, mi_ci_high=interval.high)
    for key, value in values.items():
        module.log(f"{stage}/{key}{suffix}", float(value), rank_zero_only=True)


def seed_rows(results: Sequence[EstimateResult]) -> list[EstimateResult]:
    """Across-seed rows: per estimator key trained from two or more seeds and per level, the members'
    estimates as units (Student's t over seeds)."""
    groups: dict[tuple[str, Optional[float]], list[EstimateResult]] = defaultdict(list)
    for result in results:
        if result.key is not None and result.interval is not None and result.group is None:
            groups[(result.key, result.true_mi)].append(result)
    rows = []
    for (key, level), members in sorted(groups.items(), key=lambda item: (item[0][0], level_order(item[0][1]))):
        if len({m.seed for m in members}) < 2:
            continue
        interval = mean_interval([m.interval.estimate for m in members if m.interval is not None], "seed")
        rows.append(
            EstimateResult(interval, members[0].label, group=key, key=key, true_mi=level, weights="across seeds")
        )
    return rows


def results_table(results: Sequence[EstimateResult], title: str, notes: Sequence[str] = ()) -> str:
    """The printed table: true MI, estimate, standard error, 95% interval, units, bias, and for each row whose it
    is and which weights produced it; retired members say when and why; ``notes`` follow the table."""
    members = any(r.member is not None or r.group is not None for r in results)
    width = max([18, *(len(r.member or f"{r.group} (seeds)") for r in results)]) if members else 0
    header = (f"{'member':>{width}} " if members else "") + (
        f"{'true MI':>8} {'estimate':>9} {'std.err':>8} {'95% interval':>19} {'n':>10} {'bias':>8}   weights"
        + ("; reported by" if members else "")
    )
    lines = [f"\n{title}:", header]
    for r in results:
        who = f"{(r.member or f'{r.group} (seeds)'):>{width}} " if members else ""
        true = f"{r.true_mi:8.2f}" if r.true_mi is not None else f"{'-':>8}"
        iv = r.interval
        if iv is None:
            lines.append(f"{who}{true} {'retired':>9}   {r.extra.get('note', '')}")
            continue
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
    lines += list(notes)
    return "\n".join(lines)


@dataclass(frozen=True)
class Bracket:
    """The tightest two-sided statement a fit of lower- and upper-bound members makes at one level: the largest
    lower-bound estimate and the smallest upper-bound estimate (each with its interval). ``crossed``: the lower
    exceeds the upper, which the true MI cannot satisfy: a misspecified ``q(y|x)`` (CLUB, L1Out) or an under-trained
    critic, not a result."""

    true_mi: Optional[float]
    lower: EstimateResult
    upper: EstimateResult

    @property
    def crossed(self) -> bool:
        assert self.lower.interval is not None and self.upper.interval is not None
        return self.lower.interval.estimate > self.upper.interval.estimate

    def as_dict(self) -> dict[str, Any]:
        def side(r: EstimateResult) -> dict[str, Any]:
            assert r.interval is not None
            return {"member": r.member, "label": r.label, **r.interval.as_dict()}

        return {"true_mi": self.true_mi, "lower": side(self.lower), "upper": side(self.upper), "crossed": self.crossed}

    def describe(self) -> str:
        def value(r: EstimateResult) -> str:
            assert r.interval is not None
            iv = r.interval
            spread = f" [{iv.low:.3f}, {iv.high:.3f}]" if iv.n > 1 else ""
            return f"{iv.estimate:.3f}{spread} ({r.member or r.label})"

        level = f" at true MI {self.true_mi:.2f}" if self.true_mi is not None else ""
        line = f"bracket{level}: {value(self.lower)} <= MI <= {value(self.upper)}"
        if self.crossed:
            line += (
                "; CROSSED: the largest lower bound exceeds the smallest upper bound, which no MI satisfies: a "
                "misspecified q(y|x) or an under-trained critic (not a result)"
            )
        elif self.true_mi is not None:
            assert self.lower.interval is not None and self.upper.interval is not None
            inside = self.lower.interval.estimate <= self.true_mi <= self.upper.interval.estimate
            line += "; holds the true MI" if inside else "; misses the true MI"
        return line


def brackets(results: Sequence[EstimateResult], side: Callable[[EstimateResult], Optional[str]]) -> list[Bracket]:
    """Per level, the :class:`Bracket` of the member rows (``side(row)``: ``"lower"``, ``"upper"`` or ``None``, the
    row's reporting bound's side); none at a level missing either side."""
    by_level: dict[Optional[float], dict[str, list[EstimateResult]]] = {}
    for r in results:
        if r.interval is None or r.group is not None:
            continue
        kind = side(r)
        if kind is not None:
            by_level.setdefault(r.true_mi, {}).setdefault(kind, []).append(r)
    out = []
    for level, sides in by_level.items():
        if "lower" in sides and "upper" in sides:
            lower = max(sides["lower"], key=lambda r: r.interval.estimate if r.interval else -math.inf)
            upper = min(sides["upper"], key=lambda r: r.interval.estimate if r.interval else math.inf)
            out.append(Bracket(level, lower, upper))
    return out
