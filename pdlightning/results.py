"""The machine-readable results of an evaluation: ``results.json`` in the run directory.

``pdlightning test`` writes one per run (single module or ensemble): per member (``null`` for a
single module) and true-MI level (``null`` without one), the held-out estimate with its standard
error and 95% interval (:mod:`pdlightning.uncertainty`), the weights that produced it, and for an
ensemble's replicate groups the across-seed interval; with the training steps, the run's configuration
(the module's recorded hyper-parameters) and the package versions. The report reads these files
instead of re-deriving the numbers.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from .uncertainty import Interval

__all__ = [
    "EstimateResult",
    "package_versions",
    "write_results",
    "write_new_file",
    "read_results",
    "run_directory",
    "RESULTS_FILE",
]

RESULTS_FILE = "results.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EstimateResult:
    """One held-out estimate: whose (``member``, with its estimator ``key`` and ``seed``; ``group`` = the key for
    an across-seed row), at which level, reported by which bound (``label``), with which weights, and its
    interval. A member retired for divergence has ``status = "retired"``, no interval (``None``) and its step
    and error in ``extra``."""

    interval: Optional[Interval]
    label: str
    member: Optional[str] = None
    group: Optional[str] = None
    true_mi: Optional[float] = None
    weights: str = "final weights"
    extra: dict[str, Any] = field(default_factory=dict)
    key: Optional[str] = None
    seed: Optional[int] = None
    status: str = "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "key": self.key,
            "seed": self.seed,
            "group": self.group,
            "status": self.status,
            "true_mi": self.true_mi,
            "label": self.label,
            "weights": self.weights,
            **(self.interval.as_dict() if self.interval is not None else {}),
            **self.extra,
        }


def run_directory(trainer: Any, output_dir: Optional[str] = None) -> str:
    """Where a run's files go: ``output_dir`` if given, else the first logger's ``log_dir``, else the trainer's
    root directory."""
    if output_dir is not None:
        return output_dir
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            return log_dir
    return trainer.default_root_dir


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a number depends on."""
    versions = {"python": platform.python_version()}
    for package in ("pdlightning", "torch", "lightning", "torchmetrics", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_results(
    directory: str | Path,
    results: list[EstimateResult],
    stage: str,
    steps: int,
    config: Optional[dict[str, Any]] = None,
    members: Optional[list[dict[str, Any]]] = None,
    left_out: Optional[list[str]] = None,
    brackets: Optional[list[dict[str, Any]]] = None,
) -> Path:
    """Write the evaluation's results into ``directory`` (created) and return the path: ``results.json``, or
    ``results_2.json``, ``results_3.json``, ... when earlier evaluations wrote there (none is overwritten).
    ``members``: every member's identity (key, seed, name); ``left_out``: members of the checkpoint that this
    evaluation left out (a subset was asked for); ``brackets``: per level, the largest lower and smallest upper
    estimate of a fit holding both kinds (:class:`pdlightning.modules.reporting.Bracket`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT_VERSION,
        "stage": stage,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": int(steps),
        "results": [r.as_dict() for r in results],
        "members": members or [],
        "left_out": left_out or [],
        "brackets": brackets or [],
        "config": config or {},
        "versions": package_versions(),
    }
    text = json.dumps(document, indent=2, default=str) + "\n"
    return write_new_file(directory, RESULTS_FILE, lambda handle: handle.write(text))


def write_new_file(directory: str | Path, name: str, write: Any) -> Path:
    """Write a new file ``name`` into ``directory`` with ``write(handle)`` and return its path: ``name``, or
    ``<stem>_2<suffix>``, ``<stem>_3<suffix>``, ... when earlier evaluations wrote there, so none is ever overwritten
    (the file appears whole, and a name taken meanwhile by another process is never reused)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem, suffix = Path(name).stem, Path(name).suffix
    temporary = directory / f".{name}.{os.getpid()}.tmp"
    with open(temporary, "w", newline="") as handle:
        write(handle)
    try:
        number = 1
        while True:
            path = directory / (name if number == 1 else f"{stem}_{number}{suffix}")
            try:
                os.link(temporary, path)  # atomic, and fails where a file exists
                return path
            except FileExistsError:
                number += 1
    finally:
        temporary.unlink(missing_ok=True)


def read_results(path: str | Path) -> dict[str, Any]:
    """A ``results.json`` (a file or a run directory holding one), checked for its format."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"results: no {RESULTS_FILE} at {path} (run `pdlightning test` on the run first)")
    document = json.loads(path.read_text())
    if document.get("format") != FORMAT_VERSION or "results" not in document:
        raise ValueError(f"results: {path} is not a pdlightning results file (format {FORMAT_VERSION})")
    return document
