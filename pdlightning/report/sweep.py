"""The benchmark sweep: estimators x tasks x critics on the MI staircase, one run each, resumable.

Every run is the `pdlightning` CLI on the shipped configs (``mi/{gaussian,cubic}.yaml``, the
estimator's fragment ``mi/bounds/<key>.yaml``, optionally ``report/separable_critic.yaml``) with the
budget (steps per level, levels, batch size, seed) as overrides, run by the shared runner layer
(:mod:`pdlightning.runner`). A run's directory holds ``estimates.csv`` (the raw per-step stream) and,
once it has finished, ``run.json``; a sweep started again skips every run finished under the same
budget.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

from pdlightning.cli.configs import packaged_configs_dir
from pdlightning.runner import Run, RunRecord, execute_in_process, in_process, run_all, write_record
from pdlightning.runner.record import as_json

from .estimators import DEFAULT_ESTIMATORS, estimators, label_of, resolve

if TYPE_CHECKING:
    from pdlightning.runner import RaySettings

__all__ = [
    "DEFAULT_ESTIMATORS",
    "TASKS",
    "CRITICS",
    "Budget",
    "RunSpec",
    "RunRecord",
    "plan",
    "to_run",
    "run_one",
    "run_sweep",
    "default_configs_dir",
]

TASKS = {"gaussian": "mi/gaussian.yaml", "cubic": "mi/cubic.yaml"}
CRITICS = {"joint": None, "separable": "report/separable_critic.yaml"}
PROTOCOL_LEVELS = (2.0, 4.0, 6.0, 8.0, 10.0)


def default_configs_dir() -> Path:
    """The packaged configs (``pdlightning --print-configs-dir``)."""
    return packaged_configs_dir()


@dataclass(frozen=True)
class Budget:
    """What makes runs comparable: a finished run is reused only under the same budget."""

    steps_per_level: int = 4000
    levels: tuple[float, ...] = PROTOCOL_LEVELS
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.steps_per_level, int) and self.steps_per_level > 0):
            raise ValueError(f"steps_per_level: expected a positive integer, got {self.steps_per_level!r}")
        if not self.levels or not all(math.isfinite(v) and v > 0 for v in self.levels):
            raise ValueError(f"levels: expected MI levels > 0 nats, got {self.levels!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            raise ValueError(f"batch_size: expected an integer >= 2, got {self.batch_size!r}")

    @classmethod
    def from_json(cls, data: dict) -> "Budget":
        """The budget a ``run.json`` recorded."""
        return cls(
            int(data["steps_per_level"]),
            tuple(float(v) for v in data["levels"]),
            int(data["batch_size"]),
            int(data["seed"]),
        )

    def as_json(self) -> dict:
        """The budget as ``run.json`` stores it (lists, not tuples)."""
        return as_json(asdict(self))

    @property
    def total_steps(self) -> int:
        return self.steps_per_level * len(self.levels)

    @property
    def is_protocol(self) -> bool:
        """The papers' protocol: 4,000 steps at each of 2-4-6-8-10 nats, batch 64."""
        return self.steps_per_level == 4000 and tuple(self.levels) == PROTOCOL_LEVELS and self.batch_size == 64

    def describe(self) -> str:
        levels = ", ".join(f"{v:g}" for v in self.levels)
        return (
            f"levels {levels} nats, {self.steps_per_level} steps per level, batch {self.batch_size}, seed {self.seed}"
        )


@dataclass(frozen=True)
class RunSpec:
    task: str
    critic: str
    estimator: str

    @property
    def run_id(self) -> str:
        return f"{self.task}-{self.critic}-{self.estimator}"


def plan(
    names: Sequence[str], tasks: Sequence[str], critics: Sequence[str], configs: Optional[Path] = None
) -> list[RunSpec]:
    """One run per (task, critic, estimator); estimator names are fragment keys, ``all``, or old
    report keys (with a warning)."""
    keys = resolve(names, list(estimators(configs)))
    for name, given, known in (("tasks", tasks, TASKS), ("critics", critics, CRITICS)):
        unknown = [v for v in given if v not in known]
        if unknown:
            raise ValueError(f"{name}: unknown {unknown}; known: {', '.join(known)}")
    return [RunSpec(t, c, e) for t in tasks for c in critics for e in keys]


def to_run(spec: RunSpec, budget: Budget, configs: Path, log_every: Optional[int] = None) -> Run:
    """The `pdlightning fit` command of one report run (``log_every``: TensorBoard's cadence, default the config's:
    every step; the per-step stream of the tables is kept whatever it is)."""
    files = [configs / TASKS[spec.task], configs / "mi" / "bounds" / f"{spec.estimator}.yaml"]
    critic = CRITICS[spec.critic]
    if critic is not None:
        files.append(configs / critic)
    levels = "[" + ", ".join(f"{v:g}" for v in budget.levels) + "]"
    return Run(
        spec.run_id,
        tuple(map(str, files)),
        (
            f"--seed_everything={budget.seed}",
            f"--data.init_args.seed={budget.seed}",
            f"--data.init_args.mi_schedule={levels}",
            f"--data.init_args.steps_per_level={budget.steps_per_level}",
            f"--data.init_args.batch_size={budget.batch_size}",
            f"--trainer.max_steps={budget.total_steps}",
            "--trainer.logger.init_args.save_dir={run_dir}",
            "--trainer.logger.init_args.name=",
            "--trainer.logger.init_args.version=tb",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false",
            "--trainer.limit_val_batches=0",
            "--model.init_args.summary=false",
            "--model.init_args.stream_path={run_dir}/estimates.csv",
            *([f"--trainer.log_every_n_steps={log_every}"] if log_every else []),
        ),
        spec=asdict(spec),
        budget=budget.as_json(),
        configs_dir=str(configs),
    )


def run_one(spec: RunSpec, budget: Budget, configs: Path, run_dir: Path) -> RunRecord:
    """Fit one run from scratch in this process; the module writes its stream to ``run_dir/estimates.csv``.

    A run that stops on a non-finite bound is recorded as ``failed`` with the steps it made (its partial stream is
    kept), and the sweep goes on.
    """
    from pdlightning.callbacks import StaircaseFigure

    def execute(run: Run, directory: Path) -> RunRecord:
        figure = StaircaseFigure(output_dir=str(directory), title=label_of(spec.estimator))
        return execute_in_process(run, directory, [figure])

    return in_process(to_run(spec, budget, Path(configs)), Path(run_dir), execute)


def run_sweep(
    specs: Iterable[RunSpec],
    budget: Budget,
    out: Path,
    configs: Optional[Path] = None,
    max_runs: Optional[int] = None,
    retry_failed: bool = False,
    log: Callable[[str], None] = print,
    ensemble: bool = False,
    seeds: int = 1,
    parallel: Optional["RaySettings"] = None,
    log_every: Optional[int] = None,
) -> dict:
    """Run every spec not finished under ``budget`` in ``out/runs``; at most ``max_runs`` new runs;
    with ``parallel``, as Ray tasks (:mod:`pdlightning.runner.ray_executor`).

    With ``ensemble`` the specs of each (task, critic) run as one vectorised ensemble fit holding every
    estimator and ``seeds`` replicate seeds (:mod:`.ensemble`), keyed by the ensemble's run id;
    otherwise one fit per spec (one seed), keyed by the spec.

    Raises if ``out`` holds runs of another budget (mixing them would corrupt the tables), or if
    another sweep is running in ``out``.
    """
    specs = list(specs)
    configs = Path(configs) if configs is not None else default_configs_dir()
    if not (configs / TASKS["gaussian"]).is_file():
        raise FileNotFoundError(f"configs: {configs} has no mi/gaussian.yaml; pass --configs <folder of the configs>")
    if ensemble:
        return _run_ensembles(
            specs, budget, Path(out), configs, seeds, max_runs, retry_failed, log, parallel, log_every
        )
    if seeds != 1:
        raise ValueError("seeds: replicate seeds run as ensembles; drop --single-fits or run one seed per --seed")
    runs = [to_run(spec, budget, configs, log_every) for spec in specs]
    by_id = {run.run_id: spec for run, spec in zip(runs, specs)}
    log(f"budget: {budget.describe()} ({budget.total_steps} steps per run)")
    records = run_all(
        runs,
        Path(out),
        lambda run, run_dir: run_one(by_id[run.run_id], budget, configs, run_dir),
        max_runs=max_runs,
        retry_failed=retry_failed,
        log=log,
        parallel=parallel,
    )
    return {by_id[run_id]: record for run_id, record in records.items()}


def _run_ensembles(
    specs: Sequence[RunSpec],
    budget: Budget,
    out: Path,
    configs: Path,
    seeds: int,
    max_runs: Optional[int],
    retry_failed: bool,
    log: Callable[[str], None],
    parallel: Optional["RaySettings"] = None,
    log_every: Optional[int] = None,
) -> dict:
    """One ensemble fit per (task, critic) holding every estimator x seed (:mod:`.ensemble`)."""
    from .ensemble import EnsembleSpec, run_ensemble, to_ensemble_run

    if not (isinstance(seeds, int) and seeds >= 1):
        raise ValueError(f"seeds: expected an integer >= 1, got {seeds!r}")
    cells: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in specs:
        cells.setdefault((spec.task, spec.critic), []).append(spec)
    runs = []
    for (task, critic), members in cells.items():
        ensemble = EnsembleSpec(task, critic, tuple(m.estimator for m in members), seeds)
        runs.append(to_ensemble_run(ensemble, budget, configs, to_run(members[0], budget, configs, log_every)))
    log(
        f"budget: {budget.describe()} ({budget.total_steps} steps per run); {len(runs)} ensemble fits of "
        f"{len(specs) // max(len(runs), 1)} estimators x {seeds} seeds"
    )
    return run_all(runs, out, run_ensemble, max_runs=max_runs, retry_failed=retry_failed, log=log, parallel=parallel)


def _write_record(run_dir: Path, record: RunRecord) -> None:
    """Kept for callers of the previous release: :func:`pdlightning.runner.write_record`."""
    write_record(run_dir, record)


def record_spec(record: RunRecord) -> Optional[RunSpec]:
    """The report spec a ``run.json`` describes (old estimator keys mapped to the current ones);
    ``None`` for records of other sweeps."""
    from .estimators import ALIASES

    spec = record.spec
    if not (isinstance(spec, dict) and {"task", "critic", "estimator"} <= set(spec)):
        return None
    if not {"steps_per_level", "levels", "batch_size", "seed"} <= set(record.budget):
        return None
    return RunSpec(spec["task"], spec["critic"], ALIASES.get(spec["estimator"], spec["estimator"]))


def budget_key(budget: Budget) -> str:
    return json.dumps(budget.as_json(), sort_keys=True)
