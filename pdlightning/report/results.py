"""Per-level statistics of every finished run of a sweep: the rows behind the table and the grid."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from pdlightning.callbacks import EstimateStream, level_statistics

from .sweep import ESTIMATORS, RunRecord, RunSpec

__all__ = ["ResultRow", "RunResult", "load_results", "write_results_csv"]


@dataclass(frozen=True)
class ResultRow:
    task: str
    critic: str
    estimator: str
    true_mi: float
    steps: int
    mean: float
    bias: float
    variance: float
    mse: float
    status: str


@dataclass
class RunResult:
    spec: RunSpec
    record: RunRecord
    steps: np.ndarray
    true_mi: np.ndarray
    estimates: np.ndarray

    @property
    def label(self) -> str:
        return ESTIMATORS[self.spec.estimator].label

    def rows(self, burn_in: float = 0.0) -> list[ResultRow]:
        stats = level_statistics(self.estimates, self.true_mi, burn_in)
        return [ResultRow(self.spec.task, self.spec.critic, self.spec.estimator, s.true_mi, s.steps, s.mean,
                          s.bias, s.variance, s.mse, self.record.status) for s in stats]


def load_results(out: Path, records: dict[RunSpec, RunRecord]) -> list[RunResult]:
    """The stream of every recorded run (runs without a stream are left out)."""
    results = []
    for spec, record in records.items():
        path = out / "runs" / spec.run_id / "estimates.csv"
        if not path.exists():
            continue
        steps, true_mi, estimates = EstimateStream.from_csv(str(path)).arrays()
        results.append(RunResult(spec, record, steps, true_mi, estimates))
    return results


def write_results_csv(results: Iterable[RunResult], path: Path, burn_in: float = 0.0) -> list[ResultRow]:
    rows = [row for result in results for row in result.rows(burn_in)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(ResultRow.__dataclass_fields__))
        for row in rows:
            writer.writerow([getattr(row, name) for name in ResultRow.__dataclass_fields__])
    return rows


def lookup(rows: Iterable[ResultRow], task: str, critic: str, estimator: str, level: float) -> Optional[ResultRow]:
    for row in rows:
        if (row.task, row.critic, row.estimator) == (task, critic, estimator) and abs(row.true_mi - level) < 1e-6:
            return row
    return None
