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

__all__ = ["execute_in_process", "in_process", "fresh_directory", "worker_info", "RunProbe"]


class RunProbe(L.Callback):
    """Keeps what the run record needs from the training steps' records: the reporting bound's
    label, its value ceiling and the candidates per row of the last step that reported."""

    def __init__(self) -> None:
        self.label: Optional[str] = None
        self.ceiling: Optional[float] = None
        self.candidates: Optional[int] = None

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
    cli.trainer.callbacks += [probe, *callbacks]  # type: ignore[attr-defined]
    start = time.perf_counter()
    status, error = "ok", None
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
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
    return record


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
    """The default executor of :func:`~pdlightning.runner.run_all`: empty the directory, execute, and
    write ``run.json`` (with :func:`worker_info` as ``extra["worker"]``)."""
    fresh_directory(run_dir)
    record = execute(run, Path(run_dir))
    record.extra["worker"] = worker_info()
    write_record(Path(run_dir), record)
    return record
