"""The in-process executor: one :class:`~pdlightning.runner.Run` -> one :class:`RunRecord`."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import lightning as L

from pdlightning.records import step_records

from .plan import Run
from .record import RunRecord, package_versions, write_record

__all__ = ["execute_in_process", "in_process", "fresh_directory", "worker_info", "RunProbe", "resumable_checkpoint"]

#: a run checkpoints its fit here every ``CHECKPOINT_EVERY`` steps (``last.ckpt``); a sweep started again after a
#: crash or a kill resumes an unfinished run of the same resolved config from it instead of starting it afresh.
CHECKPOINTS = "checkpoints"
CHECKPOINT_EVERY = 500
_CHECKPOINTED_CONFIG = "checkpoints.config_hash"


class RunProbe(L.Callback):
    """Keeps what the run record needs from the training steps' records: the reporting bound's
    label, its value ceiling and the candidates per row of the last step that reported; and the step the fit
    started at."""

    def __init__(self) -> None:
        self.label: Optional[str] = None
        self.ceiling: Optional[float] = None
        self.candidates: Optional[int] = None
        self.start_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_step = int(trainer.global_step)  # > 0 for a resumed fit

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for record in step_records(outputs):
            if self.candidates is None:  # the first member's (a single fit's): static over the fit
                self.label = record.members[0].label
                self.ceiling = record.ceilings()[0]
                self.candidates = record.negatives_per_row + 1


def _scalars(metrics: Any) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


def execute_in_process(run: Run, run_dir: Path, callbacks: Sequence[L.Callback] = ()) -> RunRecord:
    """``pdlightning fit`` (then ``test`` with ``run.test``) of ``run`` in this process, with
    ``callbacks`` added to the trainer's; the record's provenance is the config this process parsed
    (:mod:`pdlightning.runner.provenance`). A run whose bound goes non-finite (``FloatingPointError``:
    the estimator diverged) is a ``failed`` record, not an exception; anything else propagates."""
    from pdlightning.cli.main import build_cli

    with warnings.catch_warnings():  # the sweep's own argv is not the run's: LightningCLI need not say so
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = build_cli(run.args(Path(run_dir)), run=False, settings=run.settings_in(Path(run_dir)) or None)
    probe = RunProbe()
    from .provenance import config_hash, resolved_config

    fitted = config_hash(resolved_config(cli.config, Path(run_dir)))
    resume = _checkpoint_of(Path(run_dir), fitted)
    cli.trainer.callbacks += [probe, *callbacks, _checkpoint_every(Path(run_dir), fitted)]  # type: ignore[attr-defined]
    start = time.perf_counter()
    status, error = "ok", None
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=str(resume) if resume else None)
    except FloatingPointError as exc:  # NonFiniteBoundError
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        write = getattr(cli.model, "write_stream_to", None)
        if callable(write):  # the fit stopped before on_fit_end: keep the stream it made
            write()
    metrics = _scalars(cli.trainer.callback_metrics)
    if run.test and status == "ok":
        for result in cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False):
            metrics.update(_scalars(result))
    reporting = getattr(cli.model, "reporting_bound", None)  # a single fit's
    from .provenance import provenance_of

    record = RunRecord(
        spec=run.spec,
        budget=run.budget,
        status=status,
        seconds=round(time.perf_counter() - start, 2),
        steps=int(cli.trainer.global_step),
        label=probe.label or getattr(reporting, "label", None),
        ceiling=probe.ceiling,
        candidates=probe.candidates,
        metrics=metrics,
        command=run.command_in(run_dir),
        versions=package_versions(),
        error=error,
        provenance=provenance_of(cli.config, run, Path(run_dir)),
    )
    record.extra.update(member_extras(cli.model))
    if resume is not None:
        record.extra["resumed_from_step"] = probe.start_step
    return record


def _checkpoint_every(run_dir: Path, fitted: str) -> L.Callback:
    """The run's own ``last.ckpt`` every :data:`CHECKPOINT_EVERY` steps in ``run_dir/checkpoints`` (the executor's,
    not the run config's: a run's resolved config, and so its provenance, is the same with it), with the hash of
    the resolved config it belongs to (``fitted``) beside it."""
    from pdlightning.cli.main import ResumeCheckpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / _CHECKPOINTED_CONFIG).write_text(fitted)
    directory = str(run_dir / CHECKPOINTS)
    return ResumeCheckpoint(dirpath=directory, save_last=True, save_top_k=0, every_n_train_steps=CHECKPOINT_EVERY)


def _checkpoint_of(run_dir: Path, fitted: str) -> Optional[Path]:
    """``run_dir``'s ``last.ckpt`` if it holds an unfinished fit (no ``run.json``) of the config hashed ``fitted``."""
    checkpoint, stored = run_dir / CHECKPOINTS / "last.ckpt", run_dir / _CHECKPOINTED_CONFIG
    if (run_dir / "run.json").exists() or not (checkpoint.is_file() and stored.is_file()):
        return None
    return checkpoint if stored.read_text().strip() == fitted else None


def resumable_checkpoint(run: Run, run_dir: Path) -> Optional[Path]:
    """``run_dir/checkpoints/last.ckpt`` when ``run_dir`` holds an unfinished fit (no ``run.json``) of ``run``'s
    resolved config as it parses now (:func:`~pdlightning.runner.provenance.planned_provenance`); else ``None``."""
    if not (Path(run_dir) / CHECKPOINTS / "last.ckpt").is_file():
        return None
    from .provenance import planned_provenance

    return _checkpoint_of(Path(run_dir), planned_provenance(run, Path(run_dir))["config_hash"])


def member_extras(model: Any) -> dict:
    """What ``run.json`` keeps of a fit's members: their identities, reporting labels, value ceilings (at the
    recorded candidates per row) and the retired ones (name -> step and error)."""
    table = getattr(model, "member_table", None)
    if not table:
        return {}
    streams = getattr(model, "streams", None)
    ceilings = {m.name: streams.ceiling(k) for k, m in enumerate(table)} if streams is not None and len(streams) else {}
    return {
        "members": [m.id.as_json() for m in table],
        "labels": {info.name: info.label for info in model.members},
        "ceilings": ceilings,
        "retired": dict(getattr(model, "retired", {})),
    }


def fresh_directory(run_dir: Path) -> None:
    """Start ``run_dir`` afresh: a run killed half-way (its worker or the whole sweep) restarts clean."""
    run_dir = Path(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


def worker_info() -> dict:
    """Where this run ran: the host, the process and, inside a Ray task, the Ray node's id."""
    info: dict = {"host": socket.gethostname(), "pid": os.getpid()}
    ray = sys.modules.get("ray")  # only when something here runs on Ray; never imported for this
    if ray is not None and ray.is_initialized():
        info["ray_node"] = ray.get_runtime_context().get_node_id()
    return info


def in_process(run: Run, run_dir: Path, execute: Callable[[Run, Path], RunRecord] = execute_in_process) -> RunRecord:
    """The default executor of :func:`~pdlightning.runner.run_all`: empty the directory (unless it holds an
    unfinished fit of this run to resume: :func:`resumable_checkpoint`), execute, and write ``run.json`` (with
    :func:`worker_info` as ``extra["worker"]``)."""
    if resumable_checkpoint(run, Path(run_dir)) is None:
        fresh_directory(run_dir)
    record = execute(run, Path(run_dir))
    record.extra["worker"] = worker_info()
    write_record(Path(run_dir), record)
    return record
