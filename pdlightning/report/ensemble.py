"""The report's runs as one fit of many members: one fit per (task, critic) holds every requested estimator and
seed (:class:`~pdlightning.modules.MIEstimationModule` with ``members``).

Member ``<key>_s<seed>`` (``<key>`` with one seed) carries the estimator's fragment (``mi/bounds/<key>.yaml`` of the
sweep's configs folder: its bound, estimator and, where it sets one, critic) and trains from the critic of seed
``budget.seed + s``: with one seed on the shared batch stream of ``budget.seed``, exactly the run the single-fit path
makes (up to float32 rounding); with ``--seeds N`` on replica stream ``s`` (``data.init_args.replicas = N``), which
every estimator of that seed shares. The model is handed to the CLI's parser as a Python dict
(:class:`~pdlightning.runner.Run` ``settings``). The run writes the members' per-step streams (``estimates.csv``
with a ``member`` column, written by the module), one staircase figure, and ``results.json`` of the held-out test;
``run.json`` records every member's identity (key, seed, name).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from pdlightning.records import MemberId
from pdlightning.runner import Run, RunRecord, execute_in_process, in_process

__all__ = ["EnsembleSpec", "member_id", "member_identity", "ensemble_members", "to_ensemble_run", "run_ensemble"]


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


def member_id(estimator: str, seed: int, seeds: int) -> MemberId:
    """The member of ``estimator`` trained from ``seed`` in a fit of ``seeds`` replicate seeds."""
    return MemberId.replicate(estimator, seed) if seeds > 1 else MemberId(estimator, seed)


def member_identity(record: RunRecord, name: Optional[str]) -> MemberId:
    """Who member ``name`` of a run is: from the identities its ``run.json`` stores, else (runs written before they
    were stored) from the name ``<key>-seed<s>`` of the report's naming then; ``None`` is a run of one member."""
    stored = {m["name"]: MemberId.from_json(m) for m in (record.extra or {}).get("members", [])}
    base = int(record.budget.get("seed", 0))
    if name is None:
        if len(stored) == 1:
            return next(iter(stored.values()))
        raise ValueError("member: a run of several members names each of them")
    if name in stored:
        return stored[name]
    return MemberId.from_legacy_name(name, base)


def recorded_members(record: RunRecord, spec: "EnsembleSpec") -> Optional[list[str]]:
    """The member names a run's ``run.json`` records (else the report's legacy ``<key>-seed<s>`` names of
    ``spec``); ``None`` for a fit of one member, whose stream has no ``member`` column."""
    extra = record.extra or {}
    if extra.get("members"):
        names = [str(m["name"]) for m in extra["members"]]
    elif isinstance(extra.get("labels"), dict) and extra["labels"]:
        names = list(extra["labels"])
    else:
        names = [f"{e}-seed{s}" for s in range(spec.seeds) for e in spec.estimators]
    return names if len(names) > 1 else None


def _fragment_model(configs: Path, estimator: str) -> dict[str, Any]:
    path = Path(configs) / "mi" / "bounds" / f"{estimator}.yaml"
    content = yaml.safe_load(path.read_text()) or {}
    init = (content.get("model") or {}).get("init_args") or {}
    if "bound" not in init:
        raise ValueError(f"estimators: {path} sets no model.init_args.bound")
    module_settings = sorted(set(init) - {"bound", "estimator", "critic"})
    if module_settings:
        raise ValueError(
            f"estimators: {path} also sets {module_settings}, settings of the whole module that a member of an "
            "ensemble fit cannot carry; run it with --single-fits"
        )
    return {key: init[key] for key in ("bound", "estimator", "critic") if init.get(key) is not None}


def ensemble_members(estimators: Sequence[str], configs: Path, seeds: int, base_seed: int) -> list[dict[str, Any]]:
    """The members (plain dicts, as the CLI's parser takes them) of every estimator x seed, each fragment read from
    ``configs`` (the sweep's folder, which may not be the packaged one) and named by its key."""
    members = []
    for s in range(seeds):
        for estimator in estimators:
            identity = member_id(estimator, base_seed + s, seeds)
            member = {
                "name": identity.name,
                "key": estimator,
                **_fragment_model(configs, estimator),
                "seed": identity.seed,
            }
            if seeds > 1:
                member["replica"] = s
            members.append(member)
    return members


def to_ensemble_run(spec: EnsembleSpec, budget: Any, configs: Path, single_run: Run) -> Run:
    """The ``pdlightning fit`` (and ``test``) of one ensemble run: the single-fit command of the same task and critic
    (``single_run``, built for the first estimator) with the model's members given as settings (its critic and
    optimiser carry over from the task's config)."""
    members = ensemble_members(spec.estimators, configs, spec.seeds, budget.seed)
    settings = {
        "model": {
            "init_args": {
                "bound": None,
                "estimator": None,
                "members": members,
                "data": "replicas" if spec.seeds > 1 else "shared",
                "summary": False,
                # a member that diverges is retired alone (and marked in the tables); the others finish
                "on_member_divergence": "retire",
                "stream_path": "{run_dir}/estimates.csv",
            }
        }
    }
    bound_fragment = str(Path(configs) / "mi" / "bounds")
    files = tuple(c for c in single_run.configs if not c.startswith(bound_fragment))
    overrides = list(single_run.overrides)
    if spec.seeds > 1:
        overrides.append(f"--data.init_args.replicas={spec.seeds}")
    return Run(
        spec.run_id,
        files,
        tuple(overrides),
        spec=spec.as_json(),
        budget=single_run.budget,
        test=True,
        settings=settings,
        configs_dir=single_run.configs_dir,
    )


def run_ensemble(run: Run, run_dir: Path) -> RunRecord:
    """Fit (and test) one ensemble run in this process; the module writes the streams to ``run_dir/estimates.csv``."""
    from pdlightning.callbacks import StaircaseFigure

    def execute(run: Run, directory: Path) -> RunRecord:
        figure = StaircaseFigure(output_dir=str(directory))
        record = execute_in_process(run, directory, [figure])
        return record

    return in_process(run, Path(run_dir), execute)
