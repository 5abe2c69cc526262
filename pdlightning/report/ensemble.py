"""The report's runs as vectorised ensembles: one fit per (task, critic) holds every requested
estimator and seed (:class:`~pdlightning.modules.MIEnsembleModule`).

Member ``<estimator>-seed<s>`` carries the estimator's fragment (``mi/bounds/<key>.yaml``: its bound
and estimator), group ``<estimator>``, and trains from the critic of seed ``budget.seed + s``: with one
seed on the shared batch stream of ``budget.seed``, exactly the run the single-fit path makes (up to
float32 rounding); with ``--seeds N`` on replica stream ``s`` (``data.init_args.replicas = N``), which
every estimator of that seed shares. The run writes the members' per-step streams (``estimates.csv``
with a ``member`` column), one staircase figure, and ``results.json`` of the held-out test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from pdlightning.runner import Run, RunRecord, execute_in_process, in_process

__all__ = ["EnsembleSpec", "member_name", "parse_member", "ensemble_members", "to_ensemble_run", "run_ensemble"]


@dataclass(frozen=True)
class EnsembleSpec:
    """One ensemble run of the report: a task, a critic, its estimators and how many seeds."""

    task: str
    critic: str
    estimators: tuple[str, ...]
    seeds: int = 1

    @property
    def run_id(self) -> str:
        """Names the estimators, so that sweeps of other estimators into the same ``--out`` add runs."""
        return (
            f"{self.task}-{self.critic}-"
            + "+".join(self.estimators)
            + (f"-{self.seeds}seeds" if self.seeds > 1 else "")
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["estimators"] = list(self.estimators)
        data["mode"] = "ensemble"
        return data


def member_name(estimator: str, seed: int) -> str:
    return f"{estimator}-seed{seed}"


def parse_member(name: str) -> tuple[str, int]:
    """``(estimator key, seed index)`` of a member name written by :func:`member_name`."""
    estimator, _, seed = name.rpartition("-seed")
    if not estimator or not seed.isdigit():
        raise ValueError(f"member: {name!r} is not an ensemble member of the report (<estimator>-seed<s>)")
    return estimator, int(seed)


def _fragment_model(configs: Path, estimator: str) -> dict[str, Any]:
    path = Path(configs) / "mi" / "bounds" / f"{estimator}.yaml"
    content = yaml.safe_load(path.read_text()) or {}
    init = (content.get("model") or {}).get("init_args") or {}
    if "bound" not in init:
        raise ValueError(f"estimators: {path} sets no model.init_args.bound")
    return {key: init[key] for key in ("bound", "estimator") if key in init}


def ensemble_members(estimators: Sequence[str], configs: Path, seeds: int, base_seed: int) -> list[dict[str, Any]]:
    """The members (plain config dicts, as the CLI parses them) of every estimator x seed."""
    members = []
    for s in range(seeds):
        for estimator in estimators:
            member = {
                "name": member_name(estimator, s),
                **_fragment_model(configs, estimator),
                "seed": base_seed + s,
                "group": estimator,
            }
            if seeds > 1:
                member["replica"] = s
            members.append(member)
    return members


def to_ensemble_run(spec: EnsembleSpec, budget: Any, configs: Path, single_run: Run) -> Run:
    """The `pdlightning fit` command of one ensemble run: the single-fit command of the same task and
    critic (``single_run``, built for the first estimator) with the model swapped for the ensemble
    (its critic and optimiser carry over from the task's config)."""
    members = ensemble_members(spec.estimators, configs, spec.seeds, budget.seed)
    model = {
        "class_path": "pdlightning.modules.MIEnsembleModule",
        "init_args": {
            "members": members,
            "data": "replicas" if spec.seeds > 1 else "shared",
            "summary": False,
            # a member that diverges is retired alone (and marked in the tables); the others finish
            "on_member_divergence": "retire",
        },
    }
    bound_fragment = str(Path(configs) / "mi" / "bounds")
    files = tuple(c for c in single_run.configs if not c.startswith(bound_fragment))
    # YAML flow style, not JSON: a fragment's `.inf` (SMILE's tau) has no JSON spelling the parser accepts
    flow = yaml.safe_dump(model, default_flow_style=True, width=float("inf"), sort_keys=False).strip()
    overrides = list(single_run.overrides) + [f"--model={flow}"]
    if spec.seeds > 1:
        overrides.append(f"--data.init_args.replicas={spec.seeds}")
    return Run(
        spec.run_id,
        files,
        tuple(overrides),
        spec=spec.as_json(),
        budget=single_run.budget,
        test=True,
        configs_dir=single_run.configs_dir,
    )


def run_ensemble(run: Run, run_dir: Path) -> RunRecord:
    """Fit (and test) one ensemble run in this process; the streams go to ``run_dir/estimates.csv``."""
    import lightning as L

    from pdlightning.callbacks import BiasVarianceMSE, StaircaseFigure

    retired: dict[str, Any] = {}

    class RetiredMembers(L.Callback):
        """Keeps the module's retired members (name -> step and error) for the run record."""

        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            retired.update(getattr(pl_module, "retired", {}))

    def execute(run: Run, directory: Path) -> RunRecord:
        recorder = BiasVarianceMSE(output_dir=str(directory), save_stream=True, verbose=False)
        figure = StaircaseFigure(output_dir=str(directory))
        record = execute_in_process(run, directory, [recorder, figure, RetiredMembers()])
        if record.status != "ok":  # the callbacks write at the end of training, which a diverged run never reaches
            _write_streams(recorder, directory)
        members = recorder.streams.recorded_members()
        record.steps = max((len(recorder.streams[m]) for m in members), default=0)
        record.extra = {
            "labels": {m: recorder.streams.labels.get(m) for m in members},
            "ceilings": {m: recorder.streams.ceiling(m) for m in members},
            "retired": retired,
        }
        return record

    return in_process(run, Path(run_dir), execute)


def _write_streams(recorder: Any, directory: Path) -> None:
    import csv

    with open(directory / "estimates.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["member", "step", "true_mi", "estimate"])
        for member in recorder.streams.recorded_members():
            steps, true_mi, estimates = recorder.streams[member].arrays()
            writer.writerows((member, s, t, e) for s, t, e in zip(steps.tolist(), true_mi.tolist(), estimates.tolist()))


def read_member_streams(path: Path) -> dict[str, tuple[Any, Any, Any]]:
    """``{member: (steps, true_mi, estimates)}`` of an ensemble run's ``estimates.csv``."""
    import csv

    import numpy as np

    columns: dict[str, list[tuple[int, float, float]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            columns.setdefault(row["member"], []).append(
                (int(row["step"]), float(row["true_mi"]), float(row["estimate"]))
            )
    return {
        m: (
            np.asarray([r[0] for r in rows], dtype=np.int64),
            np.asarray([r[1] for r in rows]),
            np.asarray([r[2] for r in rows]),
        )
        for m, rows in columns.items()
    }


def held_out_results(run_dir: Path) -> Optional[dict[str, Any]]:
    """The ``results.json`` the run's test wrote (anywhere under its directory), or ``None``."""
    from pdlightning.results import read_results

    found = sorted(Path(run_dir).rglob("results.json"))
    return read_results(found[0]) if found else None
