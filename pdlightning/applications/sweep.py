"""What the application runners (self-consistency, SLB / CLB tables) share on top of the runner layer
(:mod:`pdlightning.runner`): a bound spec as a CLI override, the held-out estimate of a run's
metrics, and the plan -> records loop of a sweep. Every point of a sweep is a ``pdlightning fit``
command a user can rerun by hand (it is in each ``run.json`` and in the CSVs)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from pdlightning.runner import Run, RunRecord, execute_in_process, function_cli, in_process, run_all
from pdlightning.runner.plan import command_line

__all__ = ["run_config", "bound_override", "held_out_mi_estimate", "command_line", "function_cli", "sweep"]


def bound_override(spec: Mapping[str, Any], key: str = "model.init_args.bound") -> str:
    """``--model.init_args.bound=<json>`` for a bound given as ``{class_path, init_args}``."""
    if "class_path" not in spec:
        raise ValueError(f"bound spec: expected a dict with 'class_path' (and optional 'init_args'), got {spec!r}")
    return f"--{key}={json.dumps(dict(spec))}"


def held_out_mi_estimate(metrics: Mapping[str, float]) -> Optional[float]:
    """The held-out MI estimate: ``test/mi_estimate`` or, when batches carry the true MI, the value
    logged at that level (``test/mi_estimate@<level>``)."""
    if "test/mi_estimate" in metrics:
        return metrics["test/mi_estimate"]
    levels = [v for k, v in metrics.items() if k.startswith("test/mi_estimate@")]
    return levels[0] if len(levels) == 1 else None


def run_config(configs: Sequence[str], overrides: Sequence[str] = (), test: bool = True) -> dict[str, float]:
    """``pdlightning fit`` then (with ``test``) ``pdlightning test`` on the final weights, in-process;
    the final metrics after fit and the test metrics (``test/...``)."""
    with tempfile.TemporaryDirectory(prefix="pdlightning-run-") as directory:
        record = execute_in_process(Run("run", tuple(configs), tuple(overrides), test=test), Path(directory))
    if record.status != "ok":
        raise FloatingPointError(record.error)
    return record.metrics


def sweep(
    runs: Sequence[Run], output_dir: str, max_runs: Optional[int], retry_failed: bool, name: str
) -> dict[str, RunRecord]:
    """Run (or resume) ``runs`` under ``output_dir/runs``, one line per run prefixed ``[name]``."""

    def log(line: str) -> None:
        print(f"[{name}] {line}", flush=True)

    return run_all(runs, Path(output_dir), in_process, max_runs=max_runs, retry_failed=retry_failed, log=log)
