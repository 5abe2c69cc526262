"""``run.json``: the record every run of every sweep leaves in its directory."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from pdlightning.results import package_versions

__all__ = ["RunRecord", "DamagedRunFile", "read_record", "read_records", "write_record", "package_versions"]


class DamagedRunFile(ValueError):
    """A file of a finished run (``run.json``, its per-step stream, its ``results.json``) is truncated or does not
    parse: the message starts with the file's path and says what is wrong and what to do."""

    def __init__(self, path: os.PathLike | str, problem: str) -> None:
        self.path = str(path)
        super().__init__(
            f"{path}: {problem}; this run's numbers cannot be read: restore the file, or move the run's folder away "
            "(a sweep started again then runs it again)"
        )


@dataclass
class RunRecord:
    """What ran, under which budget, how it ended, and with what.

    Attributes:
        spec: what identifies the run within its sweep (e.g. task, critic, estimator).
        budget: what makes runs of one sweep comparable (steps, levels, batch size, seed, base configs);
            a finished run is reused only under the same budget.
        status: ``"ok"`` or ``"failed"`` (the estimator diverged; ``error`` says how). A run that did not
            finish (it raised on Ray, or its worker died on every attempt) is returned by the scheduler as
            ``"crashed"`` and never written: a sweep started again retries it.
        seconds: wall-clock seconds of the fit (and test).
        steps: training steps made.
        label: the reporting bound's label with its parameters, e.g. ``SMILE(τ=5)``.
        ceiling: the largest value the reporting bound can give on the run's batches (``log K`` for
            InfoNCE), ``None`` when it has none.
        candidates: pairs per row the estimates saw (joint + marginal: ``K``).
        metrics: the final scalar metrics of the fit (and of the test, ``test/...``).
        command: the equivalent ``pdlightning fit`` command.
        versions: versions of Python, pdlightning, torch and lightning that ran it.
        error: the first line(s) of the error of a failed run.
        extra: anything else a sweep wants to keep.
        provenance: what produced the run (:mod:`pdlightning.runner.provenance`: the resolved config and its
            hash, the config folder, package version and git revision, the members and seeds); ``{}`` in a
            ``run.json`` written before it was stored (unknown provenance).
    """

    spec: dict
    budget: dict
    status: str
    seconds: float
    steps: int
    label: Optional[str] = None
    ceiling: Optional[float] = None
    candidates: Optional[int] = None
    metrics: dict = field(default_factory=dict)
    command: Optional[str] = None
    versions: dict = field(default_factory=dict)
    error: Optional[str] = None
    extra: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        """Read a record, keeping fields this version does not know in ``extra`` (older and newer
        ``run.json`` files both load)."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {**data.get("extra", {}), **{k: v for k, v in data.items() if k not in known}}
        return cls(**{k: v for k, v in data.items() if k in known and k != "extra"}, extra=extra)


def read_record(run_dir: Path) -> Optional[RunRecord]:
    """The run's ``run.json``; ``None`` when the run has not finished (or never started). A file that is
    truncated or not a record raises :class:`DamagedRunFile` naming it."""
    path = Path(run_dir) / "run.json"
    if not path.exists():
        return None
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        size = path.stat().st_size
        raise DamagedRunFile(path, f"truncated or not JSON ({size} bytes; {error})") from None
    if not isinstance(data, dict):
        raise DamagedRunFile(path, f"not a run record (a JSON {type(data).__name__})")
    try:
        return RunRecord.from_dict(data)
    except TypeError as error:  # a required field missing
        raise DamagedRunFile(path, f"not a complete run record ({error})") from None


def read_records(out: Path) -> dict[str, RunRecord]:
    """Every finished run under ``out/runs``, by run id (directory name), in sorted order."""
    runs = Path(out) / "runs"
    if not runs.is_dir():
        return {}
    records = {}
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        record = read_record(run_dir)
        if record is not None:
            records[run_dir.name] = record
    return records


def write_record(run_dir: Path, record: RunRecord) -> None:
    """Write ``run.json`` atomically: a killed sweep never leaves a half record."""
    run_dir = Path(run_dir)
    tmp = run_dir / "run.json.tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(record), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / "run.json")


def as_json(value: Any) -> Any:
    """``value`` through a JSON round trip (tuples become lists), as ``run.json`` stores it."""
    return json.loads(json.dumps(value))
