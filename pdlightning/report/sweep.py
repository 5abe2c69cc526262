"""The benchmark sweep: estimators x tasks x critics on the MI staircase, one run each, resumable.

Every run is the `pdlightning` CLI on the existing configs (``configs/mi/{gaussian,cubic}.yaml``, a
bound fragment from ``configs/mi/bounds/``, optionally ``configs/report/separable_critic.yaml``),
with the budget (steps per level, levels) as overrides. A run's directory holds ``estimates.csv``
(the raw per-step stream) and, once it has finished, ``run.json``; a sweep started again skips every
run that has a ``run.json`` for the same budget.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

__all__ = ["Estimator", "ESTIMATORS", "DEFAULT_ESTIMATORS", "TASKS", "CRITICS", "Budget", "RunSpec",
           "plan", "run_one", "run_sweep", "default_configs_dir"]


@dataclass(frozen=True)
class Estimator:
    """A row of the report: a bound fragment of ``configs/mi/bounds`` plus CLI overrides."""

    label: str
    fragment: str
    overrides: tuple[str, ...] = ()


ESTIMATORS: dict[str, Estimator] = {
    "cpc": Estimator("CPC (InfoNCE)", "infonce.yaml"),
    "nwj": Estimator("NWJ", "nwj.yaml"),
    "js": Estimator("JS", "js.yaml"),
    "dv": Estimator("DV", "dv.yaml"),
    "mine": Estimator("MINE", "mine.yaml"),
    "smile_tau1": Estimator("SMILE τ=1", "smile_tau1.yaml"),
    "smile_tau5": Estimator("SMILE τ=5", "smile.yaml"),
    "smile_tauinf": Estimator("SMILE τ=∞", "smile.yaml", ("--model.init_args.bound.init_args.tau=.inf",)),
    "remine": Estimator("ReMINE λ=1", "remine.yaml"),
    "pd_variational": Estimator("Variational MI bounds", "pd_variational.yaml"),
    "pc": Estimator("Probabilistic Classifier", "pd_classifier.yaml"),
    "dm1": Estimator("Density Matching I", "pd_matching_1.yaml"),
    "dm2": Estimator("Density Matching II", "pd_matching_2.yaml"),
    "drf": Estimator("Density-Ratio Fitting", "pd_ratio_fitting.yaml"),
}
#: Song & Ermon's Table 2 rows, ReMINE, and the PD paper's two plug-in estimators with the lowest variance.
DEFAULT_ESTIMATORS = ("cpc", "nwj", "smile_tau1", "smile_tau5", "smile_tauinf", "remine", "pc", "drf")
TASKS = {"gaussian": "mi/gaussian.yaml", "cubic": "mi/cubic.yaml"}
CRITICS = {"joint": None, "separable": "report/separable_critic.yaml"}


def default_configs_dir() -> Path:
    """``configs/`` of the source checkout this package runs from, else ``./configs``."""
    checkout = Path(__file__).resolve().parents[2] / "configs"
    return checkout if (checkout / "mi" / "gaussian.yaml").exists() else Path.cwd() / "configs"


@dataclass(frozen=True)
class Budget:
    """What makes runs comparable: a finished run is reused only under the same budget."""

    steps_per_level: int = 4000
    levels: tuple[float, ...] = (2.0, 4.0, 6.0, 8.0, 10.0)
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.steps_per_level, int) and self.steps_per_level > 0):
            raise ValueError(f"steps_per_level: expected a positive integer, got {self.steps_per_level!r}")
        if not self.levels or not all(math.isfinite(v) and v > 0 for v in self.levels):
            raise ValueError(f"levels: expected MI levels > 0 nats, got {self.levels!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            raise ValueError(f"batch_size: expected an integer >= 2, got {self.batch_size!r}")

    def as_json(self) -> dict:
        """The budget as ``run.json`` stores it (lists, not tuples)."""
        return json.loads(json.dumps(asdict(self)))

    @property
    def total_steps(self) -> int:
        return self.steps_per_level * len(self.levels)


@dataclass(frozen=True)
class RunSpec:
    task: str
    critic: str
    estimator: str

    @property
    def run_id(self) -> str:
        return f"{self.task}-{self.critic}-{self.estimator}"


@dataclass
class RunRecord:
    """``run.json``: what ran, under which budget, and how it ended."""

    spec: dict
    budget: dict
    status: str  # "ok" or "failed"
    seconds: float
    steps: int
    candidates: Optional[int] = None
    error: Optional[str] = None
    extra: dict = field(default_factory=dict)


def plan(estimators: Sequence[str], tasks: Sequence[str], critics: Sequence[str]) -> list[RunSpec]:
    """All runs in report order (task, critic, estimator), with names checked."""
    for name, given, known in (("estimators", estimators, ESTIMATORS), ("tasks", tasks, TASKS),
                               ("critics", critics, CRITICS)):
        unknown = [g for g in given if g not in known]
        if unknown:
            raise ValueError(f"{name}: unknown {unknown}; choose from {sorted(known)}")
    return [RunSpec(t, c, e) for t in tasks for c in critics for e in estimators]


def cli_args(spec: RunSpec, budget: Budget, configs: Path, run_dir: Path) -> list[str]:
    """The `pdlightning` arguments of one run (without the subcommand)."""
    estimator = ESTIMATORS[spec.estimator]
    args = ["-c", str(configs / TASKS[spec.task]), "-c", str(configs / "mi" / "bounds" / estimator.fragment)]
    if CRITICS[spec.critic] is not None:
        args += ["-c", str(configs / CRITICS[spec.critic])]
    levels = "[" + ", ".join(f"{v:g}" for v in budget.levels) + "]"
    return args + list(estimator.overrides) + [
        f"--seed_everything={budget.seed}",
        f"--data.init_args.seed={budget.seed}",
        f"--data.init_args.mi_schedule={levels}",
        f"--data.init_args.steps_per_level={budget.steps_per_level}",
        f"--data.init_args.batch_size={budget.batch_size}",
        f"--trainer.max_steps={budget.total_steps}",
        f"--trainer.logger.init_args.save_dir={run_dir}",
        "--trainer.logger.init_args.name=",
        "--trainer.logger.init_args.version=tb",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.limit_val_batches=0",
    ]


def read_record(run_dir: Path) -> Optional[RunRecord]:
    path = run_dir / "run.json"
    if not path.exists():
        return None
    with open(path) as f:
        return RunRecord(**json.load(f))


def _write_record(run_dir: Path, record: RunRecord) -> None:
    tmp = run_dir / "run.json.tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(record), f, indent=1)
    os.replace(tmp, run_dir / "run.json")  # atomic: a killed sweep never leaves a half record


def _owner(run_dir: Path) -> Optional[int]:
    """The pid of another live process running this run (its ``owner.pid``), else None."""
    try:
        pid = int((run_dir / "owner.pid").read_text())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a killed sweep's stale claim
    except PermissionError:
        pass
    return pid


def run_one(spec: RunSpec, budget: Budget, configs: Path, run_dir: Path) -> RunRecord:
    """Fit one run from scratch in this process; its stream goes to ``run_dir/estimates.csv``.

    A run that stops on a non-finite bound is recorded as ``failed`` with the steps it made (its
    partial stream is kept), and the sweep goes on.
    """
    from pdlightning.callbacks import BiasVarianceMSE, StaircaseFigure
    from pdlightning.cli.main import build_cli

    if run_dir.exists():
        shutil.rmtree(run_dir)  # a half-finished run restarts clean
    run_dir.mkdir(parents=True)
    (run_dir / "owner.pid").write_text(str(os.getpid()))  # parallel sweeps leave this run alone
    with warnings.catch_warnings():  # the report's own argv is not the run's: LightningCLI need not say so
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = build_cli(cli_args(spec, budget, configs, run_dir), run=False)
    recorder = BiasVarianceMSE(output_dir=str(run_dir), save_stream=True, verbose=False)
    cli.trainer.callbacks += [recorder, StaircaseFigure(output_dir=str(run_dir), title=ESTIMATORS[spec.estimator].label)]
    start = time.perf_counter()
    status, error = "ok", None
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    except FloatingPointError as exc:  # NonFiniteBoundError: the estimator diverged
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        recorder.stream.to_csv(str(run_dir / "estimates.csv"))
    record = RunRecord(spec=asdict(spec), budget=budget.as_json(), status=status,
                       seconds=round(time.perf_counter() - start, 2), steps=len(recorder.stream),
                       candidates=recorder.stream.candidates, error=error)
    _write_record(run_dir, record)
    (run_dir / "owner.pid").unlink(missing_ok=True)
    return record


def run_sweep(
    specs: Iterable[RunSpec],
    budget: Budget,
    out: Path,
    configs: Optional[Path] = None,
    max_runs: Optional[int] = None,
    retry_failed: bool = False,
    log: Callable[[str], None] = print,
) -> dict[RunSpec, RunRecord]:
    """Run every spec not finished under ``budget`` in ``out/runs``; at most ``max_runs`` new runs.

    Raises if ``out`` holds runs of another budget (mixing them would corrupt the tables). Runs
    that another live sweep process has claimed (``owner.pid``) or finished are skipped, so sweeps
    over overlapping plans can share ``out``.
    """
    specs = list(specs)
    configs = Path(configs) if configs is not None else default_configs_dir()
    if not (configs / TASKS["gaussian"]).exists():
        raise FileNotFoundError(f"configs: {configs} has no mi/gaussian.yaml; pass --configs <repo>/configs")
    records: dict[RunSpec, RunRecord] = {}
    for spec in specs:
        record = read_record(out / "runs" / spec.run_id)
        if record is None:
            continue
        if record.budget != budget.as_json():
            raise ValueError(
                f"out: {out} holds run {spec.run_id} with budget {record.budget}, not {budget.as_json()}; "
                "use another --out for another budget")
        if record.status == "ok" or not retry_failed:
            records[spec] = record
    total, started = len(specs), 0
    log(f"sweep: {total} runs, {len(records)} finished earlier, {budget.total_steps} steps each "
        f"({budget.steps_per_level} per level) -> {out}")
    for index, spec in enumerate(specs, 1):
        if spec in records:
            log(f"[{index}/{total}] {spec.run_id}: finished earlier ({records[spec].status}), skipped")
            continue
        finished = read_record(out / "runs" / spec.run_id)  # another sweep process may have run it
        if finished is not None and finished.status == "ok" and finished.budget == budget.as_json():
            records[spec] = finished
            log(f"[{index}/{total}] {spec.run_id}: finished meanwhile by another process, skipped")
            continue
        owner = _owner(out / "runs" / spec.run_id)
        if owner is not None:
            log(f"[{index}/{total}] {spec.run_id}: running in another process (pid {owner}), skipped")
            continue
        if max_runs is not None and started >= max_runs:
            log(f"stopping after {started} new runs (--max-runs); run again to continue")
            break
        log(f"[{index}/{total}] {spec.run_id}: running ({budget.total_steps} steps) ...")
        record = run_one(spec, budget, configs, out / "runs" / spec.run_id)
        started += 1
        records[spec] = record
        rate = record.steps / record.seconds if record.seconds else float("nan")
        note = f", {record.error.splitlines()[0][:160]}" if record.error else ""
        log(f"[{index}/{total}] {spec.run_id}: {record.status} in {record.seconds:.0f}s ({rate:.0f} steps/s); "
            f"{len(records)}/{total} runs done{note}")
    return records
