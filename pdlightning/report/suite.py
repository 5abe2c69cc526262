"""The task-suite report: ``pdlightning-report --suite bmi-v1 --seeds N --out DIR``.

For every task of the suite (Czyż et al., "Beyond Normal: On the Evaluation of Mutual Information Estimators",
NeurIPS 2023; :mod:`pdlightning.tasks`) and seed ``s`` one run, resumable under ``DIR/runs`` through
:func:`pdlightning.runner.run_all`:

- one fit of many members (:class:`~pdlightning.modules.MIEstimationModule`, ``data: shared``) holding every
  requested estimator (the fragments ``mi/bounds/<key>.yaml``) on the shared batches of the suite's finite-sample
  protocol (:class:`~pdlightning.data.TaskDataModule` of ``suite/cpu.yaml``: N = 5,000 pairs of seed ``s``, half
  held out), each member's critic initialised from seed ``s``; so all estimators of a cell see the same training
  batches and the same held-out pairs;
- the held-out MI estimate of each member (``pdlightning test``: ``results.json`` of the run);
- the pointwise accuracy of each member's PMI on the held-out joint pairs against the exact PMI (centred RMSE,
  Spearman, RMSE, MAE: the module's own pointwise records of the test, the metrics of
  :class:`~pdlightning.callbacks.PointwiseAccuracy`);
- the baselines on the same held-out pairs: KSG (k = 5, Kraskov et al. 2004) and CCA (exact for Gaussians), with
  their per-pair values scored the same way.

:func:`render_suite` writes ``DIR/suite.md`` (the suite's layout: rows tasks, columns estimators and baselines,
mean ± std over seeds, the true MI, the estimate closest to the truth per task in bold, the number of tasks each
column gets within 0.1 nats; the pointwise tables), ``DIR/suite.csv`` (every number, one row per task, seed and
column) and ``DIR/suite_heatmap.png`` (mean estimate - true MI).
"""

from __future__ import annotations

import csv
import difflib
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import lightning as L
import yaml

from pdlightning.cli.configs import packaged_configs_dir
from pdlightning.runner import Run, RunRecord, execute_in_process, in_process, read_records, run_all

from .ensemble import ensemble_members
from .estimators import estimators as available_estimators
from .estimators import label_of, resolve

if TYPE_CHECKING:
    from pdlightning.runner import RaySettings

__all__ = [
    "DEFAULT_SUITE_ESTIMATORS",
    "BASELINES",
    "SuiteBudget",
    "SuiteSpec",
    "resolve_suite",
    "resolve_suite_tasks",
    "plan_suite",
    "to_suite_run",
    "run_suite_cell",
    "run_suite",
    "suite_rows",
    "render_suite",
]

#: The suite's default columns: SMILE τ=5, InfoNCE, NWJ and the PD paper's two plug-in estimators.
DEFAULT_SUITE_ESTIMATORS = (
    "smile_tau5",
    "infonce",
    "nwj",
    "pd_classifier",
    "pd_classifier_log_ratio",
    "pd_ratio_fitting",
)
#: The classical baselines every run adds on its held-out pairs, by column key.
BASELINES = {"ksg": "KSG (k=5)", "cca": "CCA"}
#: A task counts as solved by a column when its mean estimate is within this many nats of the true MI.
TOLERANCE = 0.1
#: Reference pairs for the PMI of normalising bounds (DV / SMILE / InfoNCE), as MIEstimationModule's default.
PMI_REFERENCE_SIZE = 1024
KSG_NEIGHBOURS = 5


def _close(value: str, known: Sequence[str]) -> str:
    matches = difflib.get_close_matches(value, list(known), n=5, cutoff=0.5)
    return f"close matches: {', '.join(matches)}" if matches else f"known: {', '.join(known)}"


def resolve_suite(suite: str) -> tuple[str, ...]:
    """The task ids of ``suite`` in its published order; an unknown suite lists the close matches."""
    from pdlightning.tasks import SUITES

    if suite not in SUITES:
        raise ValueError(f"suite: unknown suite {suite!r}; {_close(suite, sorted(SUITES))}")
    return SUITES[suite]


def resolve_suite_tasks(suite: str, tasks: Optional[Sequence[str]]) -> list[str]:
    """``tasks`` (default: all) checked against ``suite``, in the suite's order; unknown ids list close matches."""
    ids = resolve_suite(suite)
    if not tasks:
        return list(ids)
    unknown = [t for t in tasks if t not in ids]
    if unknown:
        hints = "; ".join(f"{t!r}: {_close(t, ids)}" for t in unknown)
        raise ValueError(f"tasks: not in suite {suite!r}: {hints}")
    return [t for t in ids if t in set(tasks)]


@dataclass(frozen=True)
class SuiteBudget:
    """What makes suite runs comparable: the suite, the base config and the training budget.

    ``steps`` / ``batch_size`` of ``None`` keep the base config's values (``suite/cpu.yaml``: 2,000 steps,
    batch 256)."""

    suite: str = "bmi-v1"
    config: str = "suite/cpu.yaml"
    steps: Optional[int] = None
    batch_size: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            least = 1 if name == "steps" else 2
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, base: dict[str, Any]) -> str:
        data = base.get("data", {}).get("init_args", {})
        critic = base.get("model", {}).get("init_args", {}).get("critic", {})
        optimizer = base.get("model", {}).get("init_args", {}).get("optimizer", {})
        steps = self.steps if self.steps is not None else data.get("steps")
        batch = self.batch_size if self.batch_size is not None else data.get("batch_size")
        hidden = critic.get("init_args", {}).get("hidden_dims")
        return (
            f"suite {self.suite}, config {self.config}: N = {data.get('n_samples')} pairs per task and seed, "
            f"test_fraction {data.get('test_fraction')}, {steps} steps at batch {batch}, "
            f"{critic.get('class_path', '?').rsplit('.', 1)[-1]} {hidden}, "
            f"{optimizer.get('class_path', '?').rsplit('.', 1)[-1]} lr {optimizer.get('init_args', {}).get('lr')}"
        )


@dataclass(frozen=True)
class SuiteSpec:
    """One run of the suite report: a task and a seed, with every estimator as an ensemble member."""

    task: str
    seed: int
    estimators: tuple[str, ...]

    @property
    def run_id(self) -> str:
        """Names the estimators, so that another set of estimators in the same ``--out`` adds runs."""
        return f"{self.task}-seed{self.seed}-" + "+".join(self.estimators)

    def as_json(self) -> dict[str, Any]:
        return {"task": self.task, "seed": self.seed, "estimators": list(self.estimators), "mode": "suite"}


def plan_suite(
    suite: str,
    tasks: Optional[Sequence[str]],
    seeds: int,
    names: Sequence[str],
    configs: Optional[Path] = None,
    base_seed: int = 0,
) -> list[SuiteSpec]:
    """One spec per task x seed (seeds ``base_seed .. base_seed + seeds - 1``)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds: expected an integer >= 1, got {seeds!r}")
    keys = tuple(resolve(names, list(available_estimators(configs))))
    if len(set(keys)) != len(keys):
        raise ValueError(f"estimators: each at most once, got {list(keys)}")
    ids = resolve_suite_tasks(suite, tasks)
    return [SuiteSpec(task, base_seed + s, keys) for task in ids for s in range(seeds)]


def _base_config(configs: Path, budget: SuiteBudget) -> dict[str, Any]:
    path = Path(configs) / budget.config
    if not path.is_file():
        raise FileNotFoundError(
            f"configs: {Path(configs)} has no {budget.config}; pass --configs <folder of the configs>"
        )
    return yaml.safe_load(path.read_text()) or {}


def to_suite_run(spec: SuiteSpec, budget: SuiteBudget, configs: Path) -> Run:
    """The ``pdlightning fit`` (and ``test``) command of one task x seed: the base config with its model's members
    set to the estimators (the base config's critic and optimiser; every member's critic from ``seed``), given to
    the CLI's parser as a Python dict."""
    _base_config(configs, budget)  # the configs folder must hold the suite's base config
    settings = {
        "model": {
            "init_args": {
                "bound": None,
                "estimator": None,
                "members": ensemble_members(spec.estimators, configs, 1, spec.seed),
                "data": "shared",
                "summary": False,
            }
        }
    }
    overrides = [
        f"--seed_everything={spec.seed}",
        f"--data.init_args.task={spec.task}",
        f"--data.init_args.seed={spec.seed}",
    ]
    if budget.steps is not None:
        overrides += [f"--data.init_args.steps={budget.steps}", f"--trainer.max_steps={budget.steps}"]
    if budget.batch_size is not None:
        overrides.append(f"--data.init_args.batch_size={budget.batch_size}")
    overrides += [
        "--trainer.logger.init_args.save_dir={run_dir}",
        "--trainer.logger.init_args.name=",
        "--trainer.logger.init_args.version=tb",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.limit_val_batches=0",
    ]
    return Run(
        spec.run_id,
        (str(Path(configs) / budget.config),),
        tuple(overrides),
        spec=spec.as_json(),
        budget=budget.as_json(),
        test=True,
        settings=settings,
        configs_dir=str(configs),
    )


def suite_evaluation() -> L.Callback:
    """After ``test``: each member's pointwise PMI accuracy on the held-out pairs (from the module's own pointwise
    records), and the baselines on the same pairs (:attr:`SuiteEvaluation.results`)."""
    from pdlightning.callbacks import PointwiseAccuracy

    class SuiteEvaluation(PointwiseAccuracy):
        """``results`` maps a column key (estimator or baseline) to its numbers: ``estimate`` (baselines only; the
        members' held-out estimates are the test's own) and ``pmi_joint_{centred_rmse,spearman,rmse,mae}``."""

        def __init__(self) -> None:
            super().__init__(histograms=False, figure=False)
            self.results: dict[str, dict[str, float]] = {}
            self._batches: list[dict[str, Any]] = []

        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
            if isinstance(batch, dict) and "pmi" in batch:
                self._batches.append({k: batch[k] for k in ("x", "y", "pmi")})

        def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
            if stage == "test" and self._runs:
                keys = {m.name: m.id.key for m in getattr(pl_module, "member_table", [])}
                for name, value in self.compute().items():
                    metric, _, member = name.partition("/")
                    if metric.startswith("pmi_joint_"):
                        column = keys.get(member, member) if member else next(iter(keys.values()), member)
                        self.results.setdefault(column, {})[metric] = value
                if self._batches:
                    self.results.update(baseline_results(self._batches))
            super()._finish(trainer, pl_module, stage)

    return SuiteEvaluation()


def baseline_results(batches: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """KSG (k = 5) and CCA on the pairs of ``batches`` (concatenated), with their per-pair values scored against the
    exact PMI like the estimators' (:func:`~pdlightning.metrics.pointwise_pmi_metrics`)."""
    import torch

    from pdlightning.baselines import CCA, KSG
    from pdlightning.metrics import pointwise_pmi_metrics

    x = torch.cat([b["x"] for b in batches]).cpu()
    y = torch.cat([b["y"] for b in batches]).cpu()
    exact = torch.cat([b["pmi"] for b in batches]).cpu().double()
    results = {}
    for key, baseline in (("ksg", KSG(k=KSG_NEIGHBOURS)), ("cca", CCA())):
        estimate = baseline.estimate(x, y)
        metrics = pointwise_pmi_metrics()
        metrics.update(estimate.pmi.double(), exact)
        results[key] = {"estimate": float(estimate.mi)}
        results[key].update({f"pmi_joint_{k}": float(v) for k, v in metrics.compute().items()})
    return results


def run_suite_cell(run: Run, run_dir: Path) -> RunRecord:
    """Fit and test one task x seed in this process (the executor of :func:`run_suite`); the members' held-out
    estimates, their pointwise accuracy and the baselines go to ``run.json`` (``extra["suite"]``)."""

    def execute(run: Run, directory: Path) -> RunRecord:
        evaluation = suite_evaluation()
        record = execute_in_process(run, directory, [evaluation])
        columns = evaluation.results  # type: ignore[attr-defined]
        single = len(run.spec["estimators"]) == 1
        for estimator in run.spec["estimators"]:
            prefix = "test/mi_estimate@" if single else f"test/mi_estimate/{estimator}@"
            estimate = next((v for k, v in record.metrics.items() if k.startswith(prefix)), math.nan)
            columns.setdefault(estimator, {})["estimate"] = estimate
        record.extra["suite"] = columns
        return record

    return in_process(run, Path(run_dir), execute)


def run_suite(
    specs: Sequence[SuiteSpec],
    budget: SuiteBudget,
    out: Path,
    configs: Optional[Path] = None,
    max_runs: Optional[int] = None,
    retry_failed: bool = False,
    log: Callable[[str], None] = print,
    parallel: Optional["RaySettings"] = None,
) -> dict[str, RunRecord]:
    """Run every task x seed not finished under ``budget`` in ``out/runs`` (:func:`~pdlightning.runner.run_all`)."""
    configs = Path(configs) if configs is not None else packaged_configs_dir()
    base = _base_config(configs, budget)
    runs = [to_suite_run(spec, budget, configs) for spec in specs]
    log(f"budget: {budget.describe(base)}; {len(runs)} runs (tasks x seeds), one ensemble fit each")
    return run_all(
        runs, Path(out), run_suite_cell, max_runs=max_runs, retry_failed=retry_failed, log=log, parallel=parallel
    )


# ----------------------------------------------------------------------------------------- the report
#: the per-run numbers of one column, as ``suite.csv`` has them
CSV_FIELDS = [
    "task",
    "seed",
    "column",
    "label",
    "true_mi",
    "estimate",
    "error",
    "pmi_joint_centred_rmse",
    "pmi_joint_spearman",
    "pmi_joint_rmse",
    "pmi_joint_mae",
    "status",
]


def suite_rows(out: Path) -> list[dict[str, Any]]:
    """Every number of the finished suite runs under ``out``: one row per task, seed and column (estimators,
    then the baselines), with the true MI. A failed run (a member diverged) gives its columns status ``failed``
    and no numbers."""
    from pdlightning.tasks import get_task

    from .provenance import recorded_config, suite_column_fit

    rows = []
    for name, record in read_records(out).items():
        spec = record.spec
        if not (isinstance(spec, dict) and spec.get("mode") == "suite"):
            continue
        true_mi = get_task(spec["task"]).mi
        columns = record.extra.get("suite", {}) if record.status == "ok" else {}
        for column in [*spec["estimators"], *BASELINES]:
            values = columns.get(column, {})
            estimate = values.get("estimate", math.nan)
            rows.append(
                {
                    "task": spec["task"],
                    "seed": spec["seed"],
                    "column": column,
                    "label": BASELINES.get(column) or label_of(column),
                    "true_mi": true_mi,
                    "estimate": estimate,
                    "error": estimate - true_mi,
                    **{f: values.get(f, math.nan) for f in CSV_FIELDS if f.startswith("pmi_")},
                    "status": record.status,
                    "budget": record.budget,
                    # where the number came from: the run, the fit (counted once across runs), the record
                    "run": name,
                    "fit": suite_column_fit(record, column, column),
                    "config": recorded_config(record),
                    "record": record,
                }
            )
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    return statistics.fmean(finite), (statistics.stdev(finite) if len(finite) > 1 else math.nan), len(finite)


@dataclass
class SuiteTable:
    """The rows of ``suite.csv`` summarised per task and column (mean over the seeds that finished)."""

    tasks: list[str]
    columns: list[str]
    labels: dict[str, str]
    true_mi: dict[str, float]
    cells: dict[tuple[str, str], list[dict[str, Any]]]

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]], suite: str = "bmi-v1") -> "SuiteTable":
        order = {t: i for i, t in enumerate(resolve_suite(suite))}
        tasks = sorted({r["task"] for r in rows}, key=lambda t: (order.get(t, len(order)), t))
        estimators = list(dict.fromkeys(r["column"] for r in rows if r["column"] not in BASELINES))  # as requested
        columns = estimators + [b for b in BASELINES if any(r["column"] == b for r in rows)]
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            cells.setdefault((r["task"], r["column"]), []).append(r)
        return cls(
            tasks,
            columns,
            {r["column"]: r["label"] for r in rows},
            {r["task"]: r["true_mi"] for r in rows},
            cells,
        )

    def stat(self, task: str, column: str, field: str) -> tuple[float, float, int]:
        return _mean_std([r[field] for r in self.cells.get((task, column), [])])

    def seeds(self, task: str) -> int:
        return max((len(v) for (t, _), v in self.cells.items() if t == task), default=0)

    def best(self, task: str) -> Optional[str]:
        """The column whose mean estimate is closest to the true MI."""
        errors = {c: abs(self.stat(task, c, "estimate")[0] - self.true_mi[task]) for c in self.columns}
        errors = {c: e for c, e in errors.items() if math.isfinite(e)}
        return min(errors, key=errors.__getitem__) if errors else None

    def within(self, column: str, tolerance: float = TOLERANCE) -> int:
        return sum(abs(self.stat(t, column, "estimate")[0] - self.true_mi[t]) <= tolerance for t in self.tasks)


def _cell(mean: float, std: float, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def suite_markdown(table: SuiteTable, header: str = "") -> str:
    """``suite.md``: the MI table, the count within 0.1 nats, and the pointwise tables."""
    head = ["task", "true MI", *[table.labels[c] for c in table.columns]]
    lines = [header] if header else []
    lines += [
        "## Held-out MI estimate (nats), mean ± std over seeds",
        "",
        f"Bold: the column whose mean (unrounded) is closest to the true MI on the task. Tasks: {len(table.tasks)}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    for task in table.tasks:
        best = table.best(task)
        cells = []
        for column in table.columns:
            text = _cell(*table.stat(task, column, "estimate")[:2])
            cells.append(f"**{text}**" if column == best else text)
        lines.append(f"| {task} | {table.true_mi[task]:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"## Tasks within {TOLERANCE:g} nats of the true MI (mean over seeds), of {len(table.tasks)}",
        "",
        "| " + " | ".join(table.labels[c] for c in table.columns) + " |",
        "|" + "|".join(["---:"] * len(table.columns)) + "|",
        "| " + " | ".join(str(table.within(c)) for c in table.columns) + " |",
        "",
    ]
    for field, title, note in (
        (
            "pmi_joint_centred_rmse",
            "PMI centred RMSE on held-out joint pairs (nats; lower is better), mean over seeds",
            "sqrt(Var(PMI_hat - PMI)): the error of the estimated log-ratio after the best constant shift.",
        ),
        (
            "pmi_joint_spearman",
            "PMI Spearman rank correlation on held-out joint pairs (higher is better), mean over seeds",
            "How well each pair's estimated PMI orders the pairs by their exact PMI.",
        ),
    ):
        lines += [f"## {title}", "", note + " KSG: its local (per-pair) estimates; CCA: the fitted Gaussian's PMI.", ""]
        lines += ["| " + " | ".join(["task", *[table.labels[c] for c in table.columns]]) + " |"]
        lines += ["|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|"]
        for task in table.tasks:
            values = [table.stat(task, c, field)[0] for c in table.columns]
            lines.append(f"| {task} | " + " | ".join(f"{v:.2f}" if math.isfinite(v) else "—" for v in values) + " |")
        lines.append("")
    return "\n".join(lines)


def heatmap(table: SuiteTable, path: Path) -> Path:
    """``suite_heatmap.png``: mean estimate - true MI per task (rows) and column, diverging around 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    errors = np.array(
        [[table.stat(t, c, "estimate")[0] - table.true_mi[t] for c in table.columns] for t in table.tasks]
    )
    limit = max(0.25, float(np.nanmax(np.abs(errors))) if np.isfinite(errors).any() else 0.25)
    limit = min(limit, 1.0)
    figure, axes = plt.subplots(figsize=(1.1 * len(table.columns) + 4.5, 0.27 * len(table.tasks) + 1.6))
    image = axes.imshow(errors, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_xticks(range(len(table.columns)), [table.labels[c] for c in table.columns], rotation=30, ha="right")
    axes.set_yticks(range(len(table.tasks)), table.tasks, fontsize=7)
    for i in range(errors.shape[0]):
        for j in range(errors.shape[1]):
            if math.isfinite(errors[i, j]):
                colour = "white" if abs(errors[i, j]) > 0.6 * limit else "black"
                axes.text(j, i, f"{errors[i, j]:+.2f}", ha="center", va="center", fontsize=6, color=colour)
    figure.colorbar(image, ax=axes, label=f"estimate − true MI (nats; colours clipped at ±{limit:.2f})")
    axes.set_title("Held-out MI estimate − true MI, mean over seeds")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_suite_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r["task"], r["seed"], r["column"])):
            writer.writerow(row)
    return Path(path)


def _provenance(
    rows: list[dict[str, Any]], budget: SuiteBudget, out: Path
) -> tuple[list[dict[str, Any]], list[str], str]:
    """The rows with each fit counted once, the lines saying which, and the budget line the runs recorded
    (:mod:`.provenance`; ``configs`` on disk are never read for it)."""
    from .provenance import count_once, provenance_cells, recorded_budget_line

    rows, counted_once = count_once(
        rows,
        unit=lambda r: (r["task"], r["seed"], r["column"]),
        run=lambda r: r["run"],
        fit=lambda r: r["fit"],
        config=lambda r: r["config"],
        describe=lambda key: f"{key[2]} on {key[0]} seed {key[1]}",
    )
    records = list({id(r["record"]): r["record"] for r in rows}.values())
    text = recorded_budget_line(records, budget.describe, out)
    if not text:
        steps = budget.steps if budget.steps is not None else "the config's"
        batch = budget.batch_size if budget.batch_size is not None else "the config's"
        text = (
            f"suite {budget.suite}, config {budget.config}, {steps} steps at batch {batch} (the rest of the "
            "configuration was not recorded with these runs: unknown provenance)"
        )
    else:
        folders = sorted({str(r.provenance.get("configs_dir")) for r in records})
        sources = sorted({provenance_cells(r)[1] for r in records})
        text += f" (config folder {', '.join(folders)}; pdlightning {', '.join(sources)})"
    return rows, counted_once, text


def render_suite(out: Path, suite: str = "bmi-v1", configs: Optional[Path] = None) -> str:
    """Write ``suite.md``, ``suite.csv`` and ``suite_heatmap.png`` of the finished suite runs under ``out``;
    return the markdown. Raises if ``out`` holds suite runs of more than one budget or protocol. The budget line is
    the runs' recorded configuration (``configs`` is no longer read: kept for callers)."""
    import json

    out = Path(out)
    rows = [r for r in suite_rows(out) if r["budget"].get("suite") == suite]
    budgets = {json.dumps(r["budget"], sort_keys=True) for r in rows}
    if len(budgets) > 1:
        raise ValueError(
            f"out: {out} holds suite runs of {len(budgets)} budgets ({sorted(budgets)}); use one --out each"
        )
    if not rows:
        markdown = f"# Task suite {suite}\n\nNo finished suite runs under {out} yet.\n"
        (out / "suite.md").write_text(markdown)
        return markdown
    budget = SuiteBudget(**rows[0]["budget"])
    rows, counted_once, budget_text = _provenance(rows, budget, out)
    table = SuiteTable.from_rows(rows, suite)
    seeds = sorted({r["seed"] for r in rows})
    failed = sorted({(r["task"], r["seed"]) for r in rows if r["status"] != "ok"})
    header = "\n".join(
        [
            f"# Task suite {suite}: held-out MI and pointwise accuracy",
            "",
            f"Budget: {budget_text}. Seeds: {', '.join(map(str, seeds))}. "
            f"Estimators trained as one vectorised ensemble per task and seed on shared batches; KSG (k=5) and CCA "
            f"on the same held-out pairs.",
            *(
                ["", f"Failed runs (a member diverged; no numbers): {', '.join(f'{t} seed {s}' for t, s in failed)}."]
                if failed
                else []
            ),
            *(["", "Counted once:", *[f"- {line}" for line in counted_once]] if counted_once else []),
            "",
            "![estimate − true MI](suite_heatmap.png)",
            "",
        ]
    )
    markdown = suite_markdown(table, header)
    (out / "suite.md").write_text(markdown)
    write_suite_csv(rows, out / "suite.csv")
    heatmap(table, out / "suite_heatmap.png")
    return markdown
