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
from .stream import EstimateStream

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
    estimates: Sequence[float], true_mis: Sequence[float], burn_in: float = 0.0
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
        values = groups[level]
        values = np.asarray(values[int(math.floor(burn_in * len(values))):], dtype=np.float64)
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
    ``bias_variance/{mean,bias,variance,mse}@<level>`` to every logger and writes
    ``bias_variance.csv`` and ``bias_variance.md`` (and, with ``save_stream``, the raw
    ``estimates.csv``: step, true_mi, estimate) to ``output_dir``, and prints the table.

    Works with any datamodule whose batches carry ``mi`` (steps without it are ignored). Recording
    keeps the values on the device (no per-step sync); the stream is checkpointed with the callback
    state, so a resumed fit reports over all its steps.

    Args:
        burn_in: fraction of each level's first steps to skip (0, as the papers).
        output_dir: where to write the files; None = the logger's ``log_dir`` (or the trainer root).
        save_stream: also write the per-step stream ``estimates.csv``.
        verbose: print the table at fit end.
    """

    def __init__(self, burn_in: float = 0.0, output_dir: Optional[str] = None, save_stream: bool = False,
                 verbose: bool = True) -> None:
        if not 0.0 <= burn_in < 1.0:
            raise ValueError(f"burn_in: expected a fraction in [0, 1), got {burn_in}")
        self.burn_in = burn_in
        self.output_dir = output_dir
        self.save_stream = save_stream
        self.verbose = verbose
        self.stream = EstimateStream()
        self._label = "estimate"
        #: training steps that produced no estimate (skipped under ``non_finite="skip"``).
        self.skipped_steps = 0

    @property
    def estimates(self) -> list[float]:
        return self.stream.arrays()[2].tolist()

    @property
    def true_mis(self) -> list[float]:
        return self.stream.arrays()[1].tolist()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        records = step_records(outputs)
        if not records or all(r.skipped for r in records):
            self.skipped_steps += 1
        for record in records:
            self.stream.record_step(trainer, record)
            self._label = record.reporting_bound.label if record.reporting_bound is not None else self._label

    def statistics(self) -> list[LevelStatistics]:
        _, true_mi, estimates = self.stream.arrays()
        return level_statistics(estimates, true_mi, self.burn_in)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not len(self.stream) or not trainer.is_global_zero:
            return
        rows = self.statistics()
        metrics = {f"bias_variance/{name}@{r.true_mi:g}": getattr(r, name)
                   for r in rows for name in ("mean", "bias", "variance", "mse")}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        directory = run_directory(trainer, self.output_dir)
        os.makedirs(directory, exist_ok=True)
        write_csv(rows, os.path.join(directory, "bias_variance.csv"))
        if self.save_stream:
            self.stream.to_csv(os.path.join(directory, "estimates.csv"))
        table = markdown_table(rows, self._label)
        with open(os.path.join(directory, "bias_variance.md"), "w") as f:
            f.write(table)
        if self.skipped_steps:
            total = self.skipped_steps + len(set(self.stream.steps))
            table += (f"\n{self.skipped_steps} of {total} training steps ({self.skipped_steps / total:.1%}) were skipped "
                      "for non-finite values (non_finite='skip') and are not in these statistics.\n")
        if self.verbose:
            rank_zero_info("\n" + table + f"(written to {directory})")

    def state_dict(self) -> dict[str, Any]:
        return {**self.stream.state_dict(), "label": self._label, "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stream.load_state_dict(state_dict)
        self._label = state_dict.get("label", self._label)
        self.skipped_steps = int(state_dict.get("skipped_steps", 0))
