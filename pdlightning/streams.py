"""The per-step stream of every member's estimate, and its per-level statistics (bias, variance, MSE).

The protocol of Song & Ermon (ICLR 2020, Table 2) and the ReMINE notebook: group the raw training estimates
``I_hat_t`` by the true MI ``I`` of their batch (the staircase levels), and per level report
``bias = mean_t(I_hat_t) - I``, ``variance = mean_t (I_hat_t - mean)^2`` (population variance of the
estimates) and ``MSE = mean_t (I_hat_t - I)^2 = bias^2 + variance``.

:class:`MemberStreams` records a fit's :class:`~pdlightning.records.StepRecord` s: one ``[K]`` tensor of
estimates and one of ``reported`` flags per step, left on the device (no per-step host transfer, no
per-member operation) until :meth:`MemberStreams.arrays` moves them all at once. The module's own end-of-fit
summary (:class:`~pdlightning.modules.MIEstimationModule`, ``summary``) and the callbacks that draw or tabulate
the stream (:class:`~pdlightning.callbacks.BiasVarianceMSE`, :class:`~pdlightning.callbacks.StaircaseFigure`)
all read it; :func:`write_stream` is the one writer of a run's ``estimates.csv``.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from .records import MemberInfo, StepRecord

__all__ = [
    "LevelStatistics",
    "level_statistics",
    "markdown_table",
    "write_csv",
    "EstimateStream",
    "MemberStreams",
    "write_stream",
    "read_stream",
    "write_summary",
]


@dataclass(frozen=True)
class LevelStatistics:
    """Statistics of the estimates of one true-MI level (``bias`` is signed)."""

    true_mi: float
    steps: int
    mean: float
    bias: float
    variance: float
    mse: float


def level_statistics(
    estimates: Sequence[float] | np.ndarray, true_mis: Sequence[float] | np.ndarray, burn_in: float = 0.0
) -> list[LevelStatistics]:
    """Per-level statistics of an estimate stream, levels in increasing true MI.

    ``burn_in`` drops that fraction of each level's first steps (0 as in the papers). A level whose estimates
    are not all finite reports NaN/inf, not an error.
    """
    if len(estimates) != len(true_mis):
        raise ValueError(f"estimates and true_mis: lengths differ ({len(estimates)} vs {len(true_mis)})")
    if not 0.0 <= burn_in < 1.0:
        raise ValueError(f"burn_in: expected a fraction in [0, 1), got {burn_in}")
    groups: dict[float, list[float]] = defaultdict(list)
    for value, level in zip(estimates, true_mis):
        groups[float(level)].append(float(value))
    rows = []
    for level in sorted(groups):
        stream = groups[level]
        values = np.asarray(stream[int(math.floor(burn_in * len(stream))) :], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            mean = float(values.mean())
            variance = float(values.var())
            mse = float(np.mean((values - level) ** 2))
        rows.append(LevelStatistics(level, len(values), mean, mean - level, variance, mse))
    return rows


def markdown_table(rows: Iterable[LevelStatistics], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += ["| true MI | steps | mean | bias | variance | MSE |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.true_mi:g} | {r.steps} | {r.mean:.3f} | {r.bias:+.3f} | {r.variance:.3f} | {r.mse:.3f} |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Iterable[LevelStatistics], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true_mi", "steps", "mean", "bias", "variance", "mse"])
        for r in rows:
            writer.writerow([r.true_mi, r.steps, r.mean, r.bias, r.variance, r.mse])


class EstimateStream:
    """One member's stream on the host: ``steps``, ``true_mi`` and ``estimates`` (the steps it reported)."""

    def __init__(self, steps: Sequence[int] = (), true_mi: Sequence[float] = (), estimates: Sequence[float] = ()):
        self.steps = np.asarray(steps, dtype=np.int64)
        self.true_mi = np.asarray(true_mi, dtype=np.float64)
        self.estimates = np.asarray(estimates, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.steps)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.steps, self.true_mi, self.estimates

    def statistics(self, burn_in: float = 0.0) -> list[LevelStatistics]:
        return level_statistics(self.estimates, self.true_mi, burn_in)

    @classmethod
    def from_csv(cls, path: str) -> "EstimateStream":
        """A single fit's ``estimates.csv`` (columns ``step``, ``true_mi``, ``estimate``)."""
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return cls(
            [int(r["step"]) for r in rows], [float(r["true_mi"]) for r in rows], [float(r["estimate"]) for r in rows]
        )


class MemberStreams:
    """Every member's per-step estimate of a fit (module docstring).

    Steps whose batch carries no true MI are not recorded. ``candidates`` is the number of candidates per row
    (joint + marginal pairs) of the first recorded step: InfoNCE's ceiling is ``log`` of it.
    """

    def __init__(self) -> None:
        self.members: tuple[MemberInfo, ...] = ()
        self._steps: list[int] = []
        self._true: list[float] = []
        # steps not yet moved to the host (device tensors), and what was moved: [T, K] arrays
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._estimates = np.zeros((0, 0))
        self._reported = np.zeros((0, 0), dtype=bool)
        self.candidates: Optional[int] = None
        self._ceilings: Optional[list[Optional[float]]] = None  # kept over a checkpoint (the bounds are not)

    def __len__(self) -> int:
        return len(self._steps)

    def record(self, step: int, record: StepRecord) -> bool:
        """Keep one step (no host transfer); False when the batch carries no true MI."""
        if record.true_mi is None:
            return False
        if not self.members or self._ceilings is not None:  # the first step, or the first after a resume
            self.members, self._ceilings = record.members, None
            self.candidates = record.negatives_per_row + 1
        self._steps.append(int(step))
        self._true.append(float(record.true_mi))
        self._pending.append((record.estimate.detach(), record.reported.detach()))
        return True

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(estimates [T, K], reported [T, K])`` on the host: what is still on the device moves in one transfer."""
        if self._pending:
            estimates = torch.stack([e.float() for e, _ in self._pending]).cpu().numpy().astype(np.float64)
            reported = torch.stack([r for _, r in self._pending]).cpu().numpy().astype(bool)
            self._pending = []
            if len(self._estimates):
                estimates = np.concatenate([self._estimates, estimates])
                reported = np.concatenate([self._reported, reported])
            self._estimates, self._reported = estimates, reported
        return self._estimates, self._reported

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def __getitem__(self, member: int | str) -> EstimateStream:
        """The stream of a member (its index or name): only the steps it reported."""
        k = member if isinstance(member, int) else self.names.index(member)
        estimates, reported = self._arrays()
        steps, true_mi = np.asarray(self._steps, dtype=np.int64), np.asarray(self._true)
        keep = reported[:, k].astype(bool)
        return EstimateStream(steps[keep], true_mi[keep], estimates[keep, k])

    def skipped(self, member: int | str) -> int:
        """Recorded steps on which the member reported no finite estimate (skipped, non-finite, retired)."""
        k = member if isinstance(member, int) else self.names.index(member)
        return int((~self._arrays()[1][:, k].astype(bool)).sum())

    def ceiling(self, member: int | str) -> Optional[float]:
        """The member's value ceiling at the recorded number of candidates per row (``None``: none)."""
        k = member if isinstance(member, int) else self.names.index(member)
        if self._ceilings is not None:
            return self._ceilings[k]
        return None if self.candidates is None else self.members[k].ceiling(self.candidates - 1)

    def title(self, member: int | str) -> str:
        k = member if isinstance(member, int) else self.names.index(member)
        info = self.members[k]
        return info.label if len(self.members) == 1 else f"{info.name}: {info.label}"

    # ----------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        estimates, reported = self._arrays()
        return {
            "steps": list(self._steps),
            "true_mi": list(self._true),
            "estimates": estimates.tolist(),
            "reported": reported.tolist(),
            "candidates": self.candidates,
            "members": [m.as_json() for m in self.members],
            "ceilings": [self.ceiling(k) for k in range(len(self.members))],
        }

    def load_state_dict(self, state: dict[str, Any], members: Sequence[MemberInfo] = ()) -> None:
        """Restore a :meth:`state_dict`; ``members`` (the live ones, with their bounds' ceilings) replace the
        stored descriptions when given."""
        self.__init__()  # type: ignore[misc]
        self.members = tuple(members) or tuple(MemberInfo.from_json(m) for m in state.get("members", []))
        if not members and state.get("ceilings") is not None:
            self._ceilings = list(state["ceilings"])
        self._steps = [int(s) for s in state.get("steps", [])]
        self._true = [float(v) for v in state.get("true_mi", [])]
        if self._steps:
            count = len(self._steps)
            self._estimates = np.asarray(state["estimates"], dtype=np.float64).reshape(count, -1)
            self._reported = np.asarray(state["reported"], dtype=bool).reshape(count, -1)
        self.candidates = state.get("candidates")


def write_stream(streams: MemberStreams, path: str) -> None:
    """``estimates.csv``: ``step, true_mi, estimate`` of a single member, with a leading ``member`` column when
    there are several (the one writer of a run's per-step stream)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    several = len(streams.members) > 1
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((["member"] if several else []) + ["step", "true_mi", "estimate"])
        for k, name in enumerate(streams.names):
            stream = streams[k]
            for step, true_mi, estimate in zip(*(a.tolist() for a in stream.arrays())):
                writer.writerow(([name] if several else []) + [step, true_mi, estimate])


def read_stream(path: str) -> dict[Optional[str], EstimateStream]:
    """``{member: stream}`` of an ``estimates.csv`` (member ``None`` for a single fit's file)."""
    columns: dict[Optional[str], list[tuple[int, float, float]]] = defaultdict(list)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            columns[row.get("member")].append((int(row["step"]), float(row["true_mi"]), float(row["estimate"])))
    return {m: EstimateStream(*zip(*rows)) if rows else EstimateStream() for m, rows in columns.items()}


def write_summary(
    streams: MemberStreams, directory: str, trainer: Any, burn_in: float = 0.0, verbose: bool = True
) -> None:
    """Write every member's per-level statistics (``bias_variance.md`` and ``.csv`` in ``directory``), log them as
    ``bias_variance/[<member>/]{mean,bias,variance,mse}@<level>`` to the trainer's loggers, and print the tables
    (``verbose``). Steps on which a member gave no finite estimate are counted under its table."""
    os.makedirs(directory, exist_ok=True)
    several = len(streams.members) > 1
    metrics, tables, rows = {}, [], []
    for k, name in enumerate(streams.names):
        statistics = streams[k].statistics(burn_in)
        if not statistics:
            continue
        prefix = f"bias_variance/{name}/" if several else "bias_variance/"
        metrics.update(
            {
                f"{prefix}{field}@{r.true_mi:g}": getattr(r, field)
                for r in statistics
                for field in ("mean", "bias", "variance", "mse")
            }
        )
        skipped = streams.skipped(k)
        note = ""
        if skipped:
            total = skipped + len(streams[k])
            note = (
                f"\n{skipped} of {total} training steps ({skipped / total:.1%}) gave no finite estimate (skipped, "
                "dropped under non_finite='skip', or retired) and are not in these statistics.\n"
            )
        tables.append(markdown_table(statistics, streams.title(k)) + note)
        rows += [
            ((name,) if several else ()) + (r.true_mi, r.steps, r.mean, r.bias, r.variance, r.mse) for r in statistics
        ]
    if not tables:
        return
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
    with open(os.path.join(directory, "bias_variance.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((["member"] if several else []) + ["true_mi", "steps", "mean", "bias", "variance", "mse"])
        writer.writerows(rows)
    text = "\n".join(tables)
    with open(os.path.join(directory, "bias_variance.md"), "w") as handle:
        handle.write(text)
    if verbose:
        rank_zero_info("\n" + text + f"(written to {directory})")
