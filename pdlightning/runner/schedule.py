"""The resumable scheduler shared by every sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

from .execute import in_process
from .plan import Run
from .record import RunRecord, read_record, read_records

__all__ = ["Executor", "BudgetMismatch", "run_all", "owner"]

#: runs one :class:`Run` in its directory and returns its record (having written ``run.json``).
Executor = Callable[[Run, Path], RunRecord]


class BudgetMismatch(ValueError):
    """The output directory holds finished runs of another budget."""


def owner(run_dir: Path) -> Optional[int]:
    """The pid of another live process running this run (its ``owner.pid``), else None."""
    try:
        pid = int((Path(run_dir) / "owner.pid").read_text())
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


def _budget_text(budget: dict) -> str:
    return json.dumps(budget, sort_keys=True)


def run_all(runs: Sequence[Run], out: Path, execute: Executor = in_process, max_runs: Optional[int] = None,
            retry_failed: bool = False, log: Callable[[str], None] = print) -> dict[str, RunRecord]:
    """Run every run not finished under its budget in ``out/runs/<run_id>``; at most ``max_runs`` new
    runs. Returns the records of the finished runs of the plan, by run id.

    Raises if ``out`` holds a finished run of another budget (mixing them would corrupt the tables).
    Runs that another live process has claimed (``owner.pid``) or finished are skipped, so sweeps
    over overlapping plans can share ``out``.
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
            raise BudgetMismatch(f"out: {out} holds run {done_id} with budget {record.budget}, not {planned}; "
                             "use another --out for another budget")
    records: dict[str, RunRecord] = {}
    for run in runs:
        earlier = read_record(out / "runs" / run.run_id)
        if earlier is not None and (earlier.status == "ok" or not retry_failed):
            records[run.run_id] = earlier
    total, started = len(runs), 0
    log(f"sweep: {total} runs, {len(records)} finished earlier -> {out}")
    for index, run in enumerate(runs, 1):
        run_dir = out / "runs" / run.run_id
        if run.run_id in records:
            log(f"[{index}/{total}] {run.run_id}: finished earlier ({records[run.run_id].status}), skipped")
            continue
        finished = read_record(run_dir)  # another sweep process may have run it meanwhile
        if finished is not None and finished.status == "ok" and finished.budget == run.budget:
            records[run.run_id] = finished
            log(f"[{index}/{total}] {run.run_id}: finished meanwhile by another process, skipped")
            continue
        pid = owner(run_dir)
        if pid is not None:
            log(f"[{index}/{total}] {run.run_id}: running in another process (pid {pid}), skipped")
            continue
        if max_runs is not None and started >= max_runs:
            log(f"stopping after {started} new runs (--max-runs); run again to continue")
            break
        log(f"[{index}/{total}] {run.run_id}: running ...")
        record = execute(run, run_dir)
        started += 1
        records[run.run_id] = record
        rate = record.steps / record.seconds if record.seconds else float("nan")
        note = f", {record.error.splitlines()[0][:160]}" if record.error else ""
        log(f"[{index}/{total}] {run.run_id}: {record.status} in {record.seconds:.0f}s ({rate:.0f} steps/s); "
            f"{len(records)}/{total} runs done{note}")
    return records
