"""The resumable scheduler shared by every sweep: which runs of a plan still have to run, and running
them (in this process, or as Ray tasks with :class:`~pdlightning.runner.ray_executor.RaySettings`)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

from pdlightning.cli.run_lock import DirectoryBusy, acquire, release

from .execute import in_process
from .plan import Run
from .progress import Progress
from .provenance import UNKNOWN, check_same_protocol, planned_provenance
from .record import RunRecord, read_record, read_records

if TYPE_CHECKING:
    from .ray_executor import RaySettings

__all__ = ["Executor", "BudgetMismatch", "SweepBusy", "run_all", "sweep_lock"]

#: runs one :class:`Run` in its directory and returns its record (having written ``run.json``).
Executor = Callable[[Run, Path], RunRecord]


class BudgetMismatch(ValueError):
    """The output directory holds finished runs of another budget."""


class SweepBusy(DirectoryBusy):
    """Another live sweep process is running in the same output directory."""


def _sweep_busy(out: Path, pid: str, doing: str) -> str:
    return (
        f"out: another sweep (pid {pid}) is running in {out}; wait for it to finish, or "
        "run the sweep once with more workers (--workers N, or a Ray cluster: --address)"
    )


@contextlib.contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.sweep.lock`` while a sweep runs there: a second sweep over the same ``out`` would
    restart runs under the first one's feet (each run starts from an empty directory). The lock is the
    kernel's (:mod:`pdlightning.cli.run_lock`): it goes with its process, a ``kill -9`` included."""
    try:
        handle = acquire(out, "sweep", name=".sweep.lock", busy=_sweep_busy)
    except DirectoryBusy as busy:
        raise SweepBusy(str(busy)) from None
    try:
        yield
    finally:
        release(handle)


def _budget_text(budget: dict) -> str:
    return json.dumps(budget, sort_keys=True)


def run_all(
    runs: Sequence[Run],
    out: Path,
    execute: Executor = in_process,
    max_runs: Optional[int] = None,
    retry_failed: bool = False,
    log: Callable[[str], None] = print,
    parallel: Optional["RaySettings"] = None,
) -> dict[str, RunRecord]:
    """Run every run not finished under its budget in ``out/runs/<run_id>``; at most ``max_runs`` new
    runs. Returns the records of the plan's runs that finished (on disk), and of those that did not
    (status ``crashed``, not written: a sweep started again retries them), by run id.

    A finished run (its ``run.json``) is never redone, unless it diverged and ``retry_failed``. Runs
    go one after another in this process, or, with ``parallel``, as Ray tasks
    (:func:`~pdlightning.runner.ray_executor.run_on_ray`: ``execute`` must then pickle). Raises
    :class:`BudgetMismatch` if ``out`` holds a finished run of another budget (mixing them would
    corrupt the tables), :class:`~pdlightning.runner.provenance.ProtocolMismatch` if a finished run of
    the plan was fitted with another resolved config than it would be now (its ``run.json``'s
    provenance), :class:`SweepBusy` if another sweep is running in ``out``.
    """
    runs = list(runs)
    out = Path(out)
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"runs: run ids must be unique, got {sorted(i for i in set(ids) if ids.count(i) > 1)}")
    budgets = {_budget_text(r.budget) for r in runs}
    for done_id, record in read_records(out).items():
        if _budget_text(record.budget) not in budgets:
            planned = next(iter(budgets)) if len(budgets) == 1 else sorted(budgets)
            raise BudgetMismatch(
                f"out: {out} holds run {done_id} with budget {record.budget}, not {planned}; "
                "use another --out for another budget"
            )
    with sweep_lock(out):
        records: dict[str, RunRecord] = {}
        for run in runs:
            run_dir = out / "runs" / run.run_id
            earlier = read_record(run_dir)
            if earlier is not None and earlier.provenance.get("config_hash"):
                check_same_protocol(earlier.provenance, planned_provenance(run, run_dir), run_dir)
            if earlier is not None and (earlier.status == "ok" or not retry_failed):
                records[run.run_id] = earlier
        progress = Progress(len(runs), len(records), log)
        progress.say(f"sweep: {len(runs)} runs, {len(records)} finished earlier -> {out}")
        todo = []
        for index, run in enumerate(runs, 1):
            if run.run_id in records:
                unknown = "" if records[run.run_id].provenance else f"; {UNKNOWN}: its config was not recorded"
                progress.say(
                    f"[{index}/{len(runs)}] {run.run_id}: finished earlier ({records[run.run_id].status}{unknown}), "
                    "skipped"
                )
            else:
                todo.append((index, run))
        try:
            if parallel is not None and todo:
                from .ray_executor import run_on_ray

                if max_runs is not None and len(todo) > max_runs:
                    progress.say(f"running {max_runs} of the {len(todo)} runs left (--max-runs); run again to continue")
                    todo = todo[:max_runs]
                records.update(run_on_ray(todo, out, execute, parallel, progress))
            else:
                records.update(_run_here(todo, out, execute, max_runs, progress))
        finally:
            progress.close()
    return records


def _run_here(
    todo: Sequence[tuple[int, Run]], out: Path, execute: Executor, max_runs: Optional[int], progress: Progress
) -> dict[str, RunRecord]:
    """The runs one after another in this process (an exception of a run stops the sweep)."""
    records: dict[str, RunRecord] = {}
    for index, run in todo:
        if max_runs is not None and len(records) >= max_runs:
            progress.say(f"stopping after {len(records)} new runs (--max-runs); run again to continue")
            break
        progress.say(f"[{index}/{progress.total}] {run.run_id}: running ...")
        record = execute(run, out / "runs" / run.run_id)
        records[run.run_id] = record
        progress.finished(index, run, record)
    return records
