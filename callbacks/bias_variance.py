"""Bias / variance / MSE of the per-step MI estimates, per true-MI level.

The protocol of Song & Ermon (ICLR 2020, Table 2) and the ReMINE notebook: group the raw training
estimates by the true MI of their batch (the staircase levels), and per level report
``bias = mean - I``, ``variance`` (population variance of the estimates) and ``MSE = bias^2 + var``.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import lightning as L
import torch

__all__ = ["LevelStatistics", "level_statistics", "BiasVarianceMSE"]


@dataclass(frozen=True)
class LevelStatistics:
    true_mi: float
    steps: int
    mean: float
    bias: float
    variance: float
    mse: float


def level_statistics(
    estimates: Sequence[float], true_mis: Sequence[float], burn_in: float = 0.0
) -> list[LevelStatistics]:
    """Per-level statistics of an estimate stream; ``burn_in`` drops that fraction of each level's
    first steps (0 as in the papers)."""
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
        values = values[int(math.floor(burn_in * len(values))):]
        t = torch.tensor(values, dtype=torch.float64)
        mean = float(t.mean())
        variance = float(t.var(unbiased=False))
        bias = mean - level
        rows.append(LevelStatistics(level, len(values), mean, bias, variance, bias**2 + variance))
    return rows


def markdown_table(rows: Iterable[LevelStatistics], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += ["| true MI | steps | mean | bias | variance | MSE |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.true_mi:g} | {r.steps} | {r.mean:.3f} | {r.bias:+.3f} | {r.variance:.3f} | {r.mse:.3f} |")
    return "\n".join(lines) + "\n"


class BiasVarianceMSE(L.Callback):
    """Collects every training step's ``mi/estimate`` and the batch's true ``mi``; at fit end logs
    ``bias_variance/{bias,variance,mse,mean}@<level>`` and writes ``bias_variance.csv`` and
    ``bias_variance.md`` to ``output_dir`` (default: the logger's run directory), and prints the table.

    Works with any datamodule whose batches carry ``mi`` (steps without it are ignored).

    Args:
        burn_in: fraction of each level's first steps to skip (0, as the papers).
        output_dir: where to write the files; None = the logger's ``log_dir`` (or the trainer root).
    """

    def __init__(self, burn_in: float = 0.0, output_dir: Optional[str] = None) -> None:
        if not 0.0 <= burn_in < 1.0:
            raise ValueError(f"burn_in: expected a fraction in [0, 1), got {burn_in}")
        self.burn_in = burn_in
        self.output_dir = output_dir
        self.estimates: list[float] = []
        self.true_mis: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        step = getattr(pl_module, "last_step", None) or {}
        estimate = step.get("estimate")
        if estimate is None or not isinstance(batch, dict) or "mi" not in batch:
            return
        self.estimates.append(float(estimate.mi))
        self.true_mis.append(float(torch.as_tensor(batch["mi"]).float().mean()))

    def statistics(self) -> list[LevelStatistics]:
        return level_statistics(self.estimates, self.true_mis, self.burn_in)

    def _directory(self, trainer: L.Trainer) -> str:
        if self.output_dir is not None:
            return self.output_dir
        logger = trainer.logger
        log_dir = getattr(logger, "log_dir", None) if logger is not None else None
        return log_dir or trainer.default_root_dir

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.estimates or not trainer.is_global_zero:
            return
        rows = self.statistics()
        if trainer.logger is not None:
            metrics = {}
            for r in rows:
                for name in ("mean", "bias", "variance", "mse"):
                    metrics[f"bias_variance/{name}@{r.true_mi:g}"] = getattr(r, name)
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        directory = self._directory(trainer)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "bias_variance.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["true_mi", "steps", "mean", "bias", "variance", "mse"])
            for r in rows:
                writer.writerow([r.true_mi, r.steps, r.mean, r.bias, r.variance, r.mse])
        table = markdown_table(rows, type(getattr(pl_module, "reporting_bound", pl_module)).__name__)
        with open(os.path.join(directory, "bias_variance.md"), "w") as f:
            f.write(table)
        print("\n" + table + f"(written to {directory})")
