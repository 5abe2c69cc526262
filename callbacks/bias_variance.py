"""Bias / variance / MSE of the per-step MI estimates, per true-MI level.

The protocol of Song & Ermon (ICLR 2020, Table 2) and the ReMINE notebook: group the raw training
estimates ``I_hat_t`` by the true MI ``I`` of their batch (the staircase levels), and per level report
``bias = mean_t(I_hat_t) - I``, ``variance = mean_t (I_hat_t - mean)^2`` (population variance of the
estimates) and ``MSE = mean_t (I_hat_t - I)^2 = bias^2 + variance``.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from pdlightning.bounds import step_records

from .output import run_directory
from .stream import EstimateStream, MemberStreams

__all__ = ["LevelStatistics", "level_statistics", "markdown_table", "write_csv", "BiasVarianceMSE"]


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

    ``burn_in`` drops that fraction of each level's first steps (0 as in the papers). A level whose
    estimates are not all finite reports NaN/inf, not an error.
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


class BiasVarianceMSE(L.Callback):
    """Collects every training step's reported estimate and the batch's true ``mi``; at fit end logs
    ``bias_variance/{mean,bias,variance,mse}@<level>`` (``bias_variance/<member>/...`` for each
    member of an ensemble) to every logger and writes ``bias_variance.csv`` and ``bias_variance.md``
    (and, with ``save_stream``, the raw ``estimates.csv``: step, true_mi, estimate) to
    ``output_dir``, and prints the table(s). Ensembles get one table per member and a ``member``
    column in the CSV files.

    Works with any datamodule whose batches carry ``mi`` (steps without it are ignored). Recording
    keeps the values on the device (no per-step sync); the streams are checkpointed with the callback
    state, so a resumed fit reports over all its steps. Steps skipped for non-finite values are
    counted and reported under the table.

    Args:
        burn_in: fraction of each level's first steps to skip (0, as the papers).
        output_dir: where to write the files; None = the logger's ``log_dir`` (or the trainer root).
        save_stream: also write the per-step stream ``estimates.csv``.
        verbose: print the table at fit end.
    """

    def __init__(
        self, burn_in: float = 0.0, output_dir: Optional[str] = None, save_stream: bool = False, verbose: bool = True
    ) -> None:
        if not 0.0 <= burn_in < 1.0:
            raise ValueError(f"burn_in: expected a fraction in [0, 1), got {burn_in}")
        self.burn_in = burn_in
        self.output_dir = output_dir
        self.save_stream = save_stream
        self.verbose = verbose
        self.streams = MemberStreams()
        #: training steps without any record (all members skipped, non-finite loss).
        self.skipped_steps = 0

    def _single(self) -> EstimateStream:
        members = self.streams.recorded_members() or [None]
        return self.streams[members[0]]

    @property
    def stream(self) -> EstimateStream:
        """The stream of a single module (or of the first member)."""
        return self._single()

    @property
    def estimates(self) -> list[float]:
        return self._single().arrays()[2].tolist()

    @property
    def true_mis(self) -> list[float]:
        return self._single().arrays()[1].tolist()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        records = step_records(outputs)
        if not records:
            self.skipped_steps += 1
        for record in records:
            self.streams.record_step(trainer, record)

    def statistics(self, member: Optional[str] = None) -> list[LevelStatistics]:
        stream = self._single() if member is None and None not in self.streams.streams else self.streams[member]
        _, true_mi, estimates = stream.arrays()
        return level_statistics(estimates, true_mi, self.burn_in)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        members = self.streams.recorded_members()
        if not members or not trainer.is_global_zero:
            return
        ensemble = self.streams.is_ensemble
        directory = run_directory(trainer, self.output_dir)
        os.makedirs(directory, exist_ok=True)
        metrics, tables, csv_rows, stream_rows = {}, [], [], []
        for member in members:
            rows = self.statistics(member)
            prefix = f"bias_variance/{member}/" if ensemble else "bias_variance/"
            metrics.update(
                {
                    f"{prefix}{name}@{r.true_mi:g}": getattr(r, name)
                    for r in rows
                    for name in ("mean", "bias", "variance", "mse")
                }
            )
            tables.append(markdown_table(rows, self.streams.title(member)) + self._skip_note(member, len(rows)))
            csv_rows += [
                ((member,) if ensemble else ()) + (r.true_mi, r.steps, r.mean, r.bias, r.variance, r.mse) for r in rows
            ]
            if self.save_stream:
                steps, true_mi, estimates = self.streams[member].arrays()
                stream_rows += [
                    ((member,) if ensemble else ()) + row
                    for row in zip(steps.tolist(), true_mi.tolist(), estimates.tolist())
                ]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        member_column = ["member"] if ensemble else []
        _write_rows(
            os.path.join(directory, "bias_variance.csv"),
            member_column + ["true_mi", "steps", "mean", "bias", "variance", "mse"],
            csv_rows,
        )
        if self.save_stream:
            _write_rows(
                os.path.join(directory, "estimates.csv"), member_column + ["step", "true_mi", "estimate"], stream_rows
            )
        text = "\n".join(tables)
        with open(os.path.join(directory, "bias_variance.md"), "w") as f:
            f.write(text)
        if self.verbose:
            rank_zero_info("\n" + text + f"(written to {directory})")

    def _skip_note(self, member: Optional[str], levels: int) -> str:
        skipped = self.streams.skipped.get(member, 0) + self.skipped_steps
        if not skipped:
            return ""
        total = skipped + len(self.streams[member])
        return (
            f"\n{skipped} of {total} training steps ({skipped / total:.1%}) gave no finite estimate (skipped or "
            "dropped under non_finite='skip') and are not in these statistics.\n"
        )

    def state_dict(self) -> dict[str, Any]:
        return {**self.streams.state_dict(), "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.streams.load_state_dict(state_dict)
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))


def _write_rows(path: str, header: list[str], rows: Iterable[tuple]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
