"""A sweep's live progress: one line per finished run (done / failed / retried counts and an ETA, so
a batch job's log file shows them too) and, on a terminal, a ``tqdm`` bar over the whole sweep."""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

from tqdm import tqdm

from .plan import Run
from .record import RunRecord

__all__ = ["Progress"]


class Progress:
    """Counts the runs of one sweep as they finish and says so through ``log``.

    Args:
        total: runs in the plan.
        finished_before: runs of the plan already finished on disk (counted as done).
        log: where the lines go (``print`` by default).
        bar: draw a ``tqdm`` bar on stderr; ``None``: only when stderr is a terminal.
    """

    def __init__(
        self, total: int, finished_before: int = 0, log: Callable[[str], None] = print, bar: Optional[bool] = None
    ) -> None:
        self.total, self.done, self.log = total, finished_before, log
        self.failed = self.retried = self.new = 0
        self.start = time.perf_counter()
        self.bar = tqdm(
            total=total,
            initial=finished_before,
            unit="run",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=(not sys.stderr.isatty()) if bar is None else not bar,
        )

    def _say(self, line: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            self.log(line)

    def _counts(self) -> str:
        text = f"{self.done}/{self.total} runs done"
        if self.failed:
            text += f", {self.failed} failed"
        if self.retried:
            text += f", {self.retried} retried"
        remaining = self.total - self.done
        if remaining and self.new:  # the wall-clock rate of this sweep so far, parallel runs included
            eta = (time.perf_counter() - self.start) / self.new * remaining
            text += f", eta {tqdm.format_interval(eta)}"
        return text

    def _advance(self, failed: bool, retried: bool) -> None:
        self.done, self.new = self.done + 1, self.new + 1
        self.failed += failed
        self.retried += retried
        self.bar.update(1)
        self.bar.set_postfix_str(f"failed {self.failed}, retried {self.retried}")

    def say(self, line: str) -> None:
        """A line that is not a finished run (start, skip, stop)."""
        self._say(line)

    def finished(self, index: int, run: Run, record: RunRecord, attempt: int = 1, where: str = "") -> None:
        """``run`` (``index``-th of the plan) finished with ``record``; ``attempt`` > 1: after its worker
        died; ``where``: the node / host that ran it."""
        self._advance(record.status != "ok", attempt > 1)
        rate = record.steps / record.seconds if record.seconds else float("nan")
        extra = f" on {where}" if where else ""
        extra += f", attempt {attempt} (its worker died before)" if attempt > 1 else ""
        note = f"; {record.error.splitlines()[0][:160]}" if record.error else ""
        self._say(
            f"[{index}/{self.total}] {run.run_id}: {record.status} in {record.seconds:.0f}s ({rate:.0f} steps/s)"
            f"{extra}; {self._counts()}{note}"
        )

    def crashed(self, index: int, run: Run, error: str, log_path: Optional[str], attempts: int) -> None:
        """``run`` did not finish: it raised, or its worker died on each of its ``attempts``."""
        self._advance(True, attempts > 1)
        where = f"; log: {log_path}" if log_path else ""
        tries = f" after {attempts} attempt{'s' if attempts > 1 else ''}" if attempts else ""
        self._say(
            f"[{index}/{self.total}] {run.run_id}: did not finish{tries} "
            f"({error.splitlines()[0][:200] if error else 'no error'}){where}; {self._counts()}"
        )

    def close(self) -> None:
        self.bar.close()
