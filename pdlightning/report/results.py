"""Per-level statistics of every finished run of a sweep: the rows behind the table and the grid."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from pdlightning.runner import RunRecord, read_records, write_csv
from pdlightning.runner.provenance import member_fit
from pdlightning.streams import level_statistics

from .ensemble import EnsembleSpec, member_identity, recorded_members
from .estimators import label_of
from .provenance import count_once, read_results_checked, read_stream_checked, recorded_config
from .sweep import Budget, RunSpec, record_spec

__all__ = [
    "ResultRow",
    "RunResult",
    "finished_runs",
    "load_results",
    "count_each_fit_once",
    "write_results_csv",
    "lookup",
    "cell_rows",
]


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
    seed: int = 0


@dataclass
class RunResult:
    """One estimator's per-step stream of one run (a single fit, or one member of an ensemble fit)."""

    spec: RunSpec
    record: RunRecord
    steps: np.ndarray
    true_mi: np.ndarray
    estimates: np.ndarray
    seed: int = 0
    member: Optional[str] = None
    run: str = ""

    @property
    def fit(self) -> Optional[str]:
        """The hash of this estimator's own configuration in the run (``None``: unknown provenance)."""
        return member_fit(self.record.provenance or {}, self.member)

    @property
    def label(self) -> str:
        recorded = (
            self.record.label if self.member is None else (self.record.extra or {}).get("labels", {}).get(self.member)
        )
        return label_of(self.spec.estimator, recorded)

    @property
    def ceiling(self) -> Optional[float]:
        if self.member is None:
            return self.record.ceiling
        return (self.record.extra or {}).get("ceilings", {}).get(self.member)

    @property
    def budget(self) -> Budget:
        return Budget.from_json(self.record.budget)

    @property
    def status(self) -> str:
        """The run's status, per member for an ensemble: a fit stopped by one member's divergence is
        ``failed`` for that member (the error names it) and ``stopped`` for the others, whose streams are
        valid but end early (their last level is partial)."""
        status = self.record.status
        if self.member is not None and self.member in (self.record.extra or {}).get("retired", {}):
            return "failed"  # retired alone (on_member_divergence="retire"); the fit went on
        if status == "ok" or self.member is None:
            return status
        culprit = re.search(r"member '([^']+)'", self.record.error or "")
        if culprit is None or culprit.group(1) == self.member:
            return status
        return "stopped"

    def rows(self, burn_in: float = 0.0) -> list[ResultRow]:
        stats = level_statistics(self.estimates, self.true_mi, burn_in)
        return [
            ResultRow(
                self.spec.task,
                self.spec.critic,
                self.spec.estimator,
                s.true_mi,
                s.steps,
                s.mean,
                s.bias,
                s.variance,
                s.mse,
                self.status,
                self.budget.steps_per_level,
                self.seed,
            )
            for s in stats
        ]


def finished_runs(out: Path) -> dict[str, tuple[Any, RunRecord]]:
    """Every finished report run on disk under ``out/runs``, by directory name: single fits with their
    :class:`RunSpec`, ensemble fits with their :class:`~.ensemble.EnsembleSpec` (records of other
    sweeps are left out; old estimator keys are read as the current ones)."""
    found: dict[str, tuple[Any, RunRecord]] = {}
    for name, record in read_records(out).items():
        spec = record_spec(record) or ensemble_spec(record)
        if spec is not None:
            found[name] = (spec, record)
    return found


def ensemble_spec(record: RunRecord) -> Optional[EnsembleSpec]:
    spec = record.spec
    if not (isinstance(spec, dict) and spec.get("mode") == "ensemble"):
        return None
    return EnsembleSpec(spec["task"], spec["critic"], tuple(spec["estimators"]), int(spec.get("seeds", 1)))


def load_results(out: Path, runs: dict[str, tuple[Any, RunRecord]]) -> list[RunResult]:
    """The stream of every finished run, one :class:`RunResult` per estimator (and seed). A stream that is
    missing, cut short or unparsable raises :class:`~pdlightning.runner.DamagedRunFile` naming it
    (:func:`~.provenance.read_stream_checked`): a table never quietly lacks an estimator or a level's steps."""
    results = []
    for name, (spec, record) in runs.items():
        path = Path(out) / "runs" / name / "estimates.csv"
        if isinstance(spec, EnsembleSpec):
            streams = read_stream_checked(path, record, recorded_members(record, spec))
            for member, (steps, true_mi, estimates) in streams.items():
                identity = member_identity(record, member)
                results.append(
                    RunResult(
                        RunSpec(spec.task, spec.critic, identity.key),
                        record,
                        steps,
                        true_mi,
                        estimates,
                        seed=identity.seed,
                        member=identity.name,
                        run=name,
                    )
                )
            continue
        steps, true_mi, estimates = read_stream_checked(path, record)[None]
        seed = int(record.budget.get("seed", 0))
        results.append(RunResult(spec, record, steps, true_mi, estimates, seed=seed, run=name))
    return results


def count_each_fit_once(results: list[RunResult]) -> tuple[list[RunResult], list[str]]:
    """One result per task, critic, estimator and seed (:func:`~.provenance.count_once`): the same fit in two runs
    of one ``--out`` counts once (the first run by name), and the lines that say so."""
    return count_once(
        results,
        unit=lambda r: (r.spec.task, r.spec.critic, r.spec.estimator, r.seed),
        run=lambda r: r.run,
        fit=lambda r: r.fit,
        config=lambda r: recorded_config(r.record),
        describe=_unit_words,
    )


def _unit_words(key: Any) -> str:
    task, critic, estimator, seed = key
    return f"{label_of(estimator)} seed {seed} ({task}, {critic} critic)"


def write_results_csv(results: Iterable[RunResult], path: Path, burn_in: float = 0.0) -> list[ResultRow]:
    rows = [row for result in results for row in result.rows(burn_in)]
    write_csv(rows, path, list(ResultRow.__dataclass_fields__))
    return rows


def lookup(rows: Iterable[ResultRow], task: str, critic: str, estimator: str, level: float) -> Optional[ResultRow]:
    """The first row of a cell (a single seed's)."""
    cell = cell_rows(rows, task, critic, estimator, level)
    return cell[0] if cell else None


def cell_rows(rows: Iterable[ResultRow], task: str, critic: str, estimator: str, level: float) -> list[ResultRow]:
    """Every seed's row of a table cell."""
    return [
        row
        for row in rows
        if (row.task, row.critic, row.estimator) == (task, critic, estimator) and abs(row.true_mi - level) < 1e-6
    ]


def held_out_results(out: Path, runs: dict[str, tuple[Any, RunRecord]]) -> dict[tuple[str, str, str, float], dict]:
    """``(task, critic, estimator, level) -> result`` from every run's ``results.json``: a single fit's
    rows, an ensemble's per-member rows with one seed, its across-seed (group) rows with several (a file that
    does not parse: :class:`~pdlightning.runner.DamagedRunFile` naming it). A level held by several runs (the
    same fit in two ensembles) is read from the first run by name, as the tables count it."""
    found: dict[tuple[str, str, str, float], dict] = {}
    for name, (spec, _record) in sorted(runs.items(), reverse=True):  # the first by name is written last
        files = sorted((Path(out) / "runs" / name).rglob("results.json"))
        if not files:
            continue
        document = read_results_checked(files[0])
        for row in document["results"]:
            if row.get("true_mi") is None:
                continue
            if isinstance(spec, EnsembleSpec):
                if spec.seeds > 1 and row.get("group"):
                    estimator = row["group"]
                elif spec.seeds == 1 and row.get("status", "ok") == "ok":
                    estimator = row.get("key") or member_identity(_record, row.get("member")).key
                else:
                    continue
            else:
                estimator = spec.estimator
            found[(spec.task, spec.critic, estimator, float(row["true_mi"]))] = row
    return found
