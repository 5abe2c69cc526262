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
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from .uncertainty import Interval

__all__ = ["EstimateResult", "package_versions", "write_results", "read_results", "RESULTS_FILE"]

RESULTS_FILE = "results.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EstimateResult:
    """One held-out estimate: whose (``member``; ``group`` for an across-seed row), at which level,
    reported by which bound (``label``), with which weights, and its interval."""

    interval: Interval
    label: str
    member: Optional[str] = None
    group: Optional[str] = None
    true_mi: Optional[float] = None
    weights: str = "final weights"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "group": self.group,
            "true_mi": self.true_mi,
            "label": self.label,
            "weights": self.weights,
            **self.interval.as_dict(),
            **self.extra,
        }


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
) -> Path:
    """Write ``results.json`` into ``directory`` (created) and return its path."""
    path = Path(directory) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT_VERSION,
        "stage": stage,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "steps": int(steps),
        "results": [r.as_dict() for r in results],
        "config": config or {},
        "versions": package_versions(),
    }
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, default=str) + "\n")
    temporary.replace(path)
    return path


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
