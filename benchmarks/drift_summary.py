"""Summarise one-hot drift runs (ReMINE Figs. 1-5) from their TensorBoard event files.

For each run directory given (a TensorBoard log dir written with the DriftMonitor callback), prints
per step window the mean of the bound's first term, second term, MI estimate and the critic's mean
output on joint pairs and on marginal pairs outside the joint support. Each estimator's fragment
stacked on ``configs/drift/onehot.yaml`` logs to its own ``drift/<estimator>/version_N``, and that is
the row's label (``dv/version_0``, ``nwj/version_1``, ...):

    python benchmarks/drift_summary.py lightning_logs/drift/*/version_*
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Sequence

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pdlightning.runner import markdown_table

TAGS = {
    "first": "drift/first_term",
    "second": "drift/second_term",
    "mi": "drift/mi_estimate",
    "T joint": "drift/T_joint_mean",
    "T off-support": "drift/T_marginal_off_support_mean",
}


def load(run_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    events = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    events.Reload()
    available = set(events.Tags()["scalars"])
    series = {}
    for name, tag in TAGS.items():
        if tag in available:
            points = events.Scalars(tag)
            series[name] = (np.array([p.step for p in points]), np.array([p.value for p in points]))
    return series


def run_label(run_dir: str) -> str:
    """``<run name>/<version>`` of a log directory (``lightning_logs/drift/nwj/version_0`` -> ``nwj/version_0``)."""
    parts = os.path.normpath(run_dir).split(os.sep)
    return "/".join(parts[-2:])


def summarise(run_dirs: Sequence[str], windows: Sequence[tuple[int, int]]) -> str:
    header = ["run", "steps"] + [f"{name} @{a}-{b}" for name in TAGS for a, b in windows]
    rows = []
    for run_dir in run_dirs:
        series = load(run_dir)
        steps = len(series["mi"][0]) if "mi" in series else 0
        cells = []
        for name in TAGS:
            for a, b in windows:
                if name not in series:
                    cells.append("–")
                    continue
                step, value = series[name]
                chosen = value[(step >= a) & (step < b)]
                cells.append(f"{chosen.mean():.2f}" if chosen.size and np.isfinite(chosen).all() else "–")
        rows.append([run_label(run_dir), steps] + cells)
    return markdown_table(header, rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument(
        "--windows",
        nargs="+",
        default=["0:500", "1000:1500", "2500:3000"],
        help="step windows a:b (default 0:500 1000:1500 2500:3000)",
    )
    args = parser.parse_args(argv)
    windows = [tuple(int(v) for v in w.split(":")) for w in args.windows]
    print(f"true MI = log 16 = {math.log(16):.3f}\n")
    print(summarise(args.run_dirs, windows))


if __name__ == "__main__":
    main()
