"""Issue 12's figures: wall time of one small report sweep run serially and as Ray tasks on N workers,
side by side in one process, and Ray's start-up overhead.

The sweep is ``pdlightning-report --single-fits`` (one fit per estimator: the unit Ray spreads over
workers) of ``--estimators`` on the Gaussian task with the joint critic at a small budget, each mode
into its own fresh ``--out``. The serial and Ray sweeps alternate over ``--rounds`` so that a change in
the machine's load hits both; the table gives each round and the ratio of the medians. Start-up: the
time of ``ray.init`` plus one trivial task's round trip, and of ``ray.shutdown``.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/ray_sweep_speed.py [--workers 2] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(out: Path, estimators: list[str], steps: int, workers: int) -> float:
    """Seconds of one ``pdlightning-report`` sweep in a subprocess (``workers`` 0: serial)."""
    command = [sys.executable, "-m", "pdlightning.report.main", "--out", str(out), "--single-fits"]
    command += ["--tasks", "gaussian", "--critics", "joint", "--steps-per-level", str(steps), "--levels", "2", "4"]
    command += ["--threads", "1", "--estimators", *estimators]
    if workers:
        command += ["--workers", str(workers)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def ray_start_up(cpus: int) -> tuple[float, float]:
    """(seconds of ``ray.init`` + one trivial task, seconds of ``ray.shutdown``)."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.get(ray.remote(lambda: 1).remote())
    started = time.perf_counter() - start
    start = time.perf_counter()
    ray.shutdown()
    return started, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps-per-level", type=int, default=100)
    parser.add_argument("--estimators", nargs="+", default=["infonce", "nwj", "smile_tau5", "pd_classifier"])
    args = parser.parse_args()
    serial, parallel = [], []
    with tempfile.TemporaryDirectory() as work:
        for round_index in range(args.rounds):
            serial.append(sweep(Path(work) / f"serial{round_index}", args.estimators, args.steps_per_level, 0))
            parallel.append(
                sweep(Path(work) / f"ray{round_index}", args.estimators, args.steps_per_level, args.workers)
            )
            print(
                f"round {round_index}: serial {serial[-1]:.1f} s, Ray x{args.workers} {parallel[-1]:.1f} s", flush=True
            )
    started, stopped = ray_start_up(args.workers)
    ratio = statistics.median(serial) / statistics.median(parallel)
    print(
        f"\n{len(args.estimators)} runs x {2 * args.steps_per_level} steps ({', '.join(args.estimators)}), "
        f"{os.cpu_count()} cores, load average before/after {os.getloadavg()[0]:.1f}"
    )
    print(f"serial: {', '.join(f'{s:.1f}' for s in serial)} s; median {statistics.median(serial):.1f} s")
    print(
        f"Ray x{args.workers}: {', '.join(f'{s:.1f}' for s in parallel)} s; median {statistics.median(parallel):.1f} s"
    )
    print(f"speed-up serial / Ray: {ratio:.2f}x")
    print(f"Ray start-up (init + one task): {started:.2f} s; shutdown {stopped:.2f} s")


if __name__ == "__main__":
    main()
