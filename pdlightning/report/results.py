"""Per-level statistics of every finished run of a sweep: the rows behind the table and the grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from pdlightning.callbacks import EstimateStream, level_statistics
from pdlightning.runner import RunRecord, read_records, write_csv

from .estimators import label_of
from .sweep import Budget, RunSpec, record_spec

__all__ = ["ResultRow", "RunResult", "finished_runs", "load_results", "write_results_csv", "lookup"]


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
    steps_per_level: Optional[int] = None


@dataclass
class RunResult:
    spec: RunSpec
    record: RunRecord
    steps: np.ndarray
    true_mi: np.ndarray
    estimates: np.ndarray

    @property
    def label(self) -> str:
        return label_of(self.spec.estimator, self.record.label)

    @property
    def budget(self) -> Budget:
        return Budget.from_json(self.record.budget)

    def rows(self, burn_in: float = 0.0) -> list[ResultRow]:
        stats = level_statistics(self.estimates, self.true_mi, burn_in)
        return [ResultRow(self.spec.task, self.spec.critic, self.spec.estimator, s.true_mi, s.steps, s.mean,
                          s.bias, s.variance, s.mse, self.record.status, self.budget.steps_per_level) for s in stats]


def finished_runs(out: Path) -> dict[str, tuple[RunSpec, RunRecord]]:
    """Every finished report run on disk under ``out/runs``, by directory name (records of other
    sweeps are left out; old estimator keys are read as the current ones)."""
    found = {}
    for name, record in read_records(out).items():
        spec = record_spec(record)
        if spec is not None:
            found[name] = (spec, record)
    return found


def load_results(out: Path, runs: dict[str, tuple[RunSpec, RunRecord]]) -> list[RunResult]:
    """The stream of every finished run (runs without a stream are left out)."""
    results = []
    for name, (spec, record) in runs.items():
        path = Path(out) / "runs" / name / "estimates.csv"
        if not path.exists():
            continue
        steps, true_mi, estimates = EstimateStream.from_csv(str(path)).arrays()
        results.append(RunResult(spec, record, steps, true_mi, estimates))
    return results


def write_results_csv(results: Iterable[RunResult], path: Path, burn_in: float = 0.0) -> list[ResultRow]:
    rows = [row for result in results for row in result.rows(burn_in)]
    write_csv(rows, path, list(ResultRow.__dataclass_fields__))
    return rows


def lookup(rows: Iterable[ResultRow], task: str, critic: str, estimator: str, level: float) -> Optional[ResultRow]:
    for row in rows:
        if (row.task, row.critic, row.estimator) == (task, critic, estimator) and abs(row.true_mi - level) < 1e-6:
            return row
    return None
