"""Torch intra-op threads: 1 vs 2 (or more) for the MI and drift configs, on a quiet machine and under load.

Each measurement is one ``trainer.fit`` of a shortened shipped config, built by the CLI with
``--threads N`` (wall time of the fit, no logger, no checkpoints). Thread counts alternate within each
repetition, so slow drifts of the machine's load hit both alike. Each config runs on the machine as
found (its 1-minute load average is printed: a shared machine is never quiet) and with a busy process
pinned to one core (a pure-Python spin loop), as another job on a shared machine would add.

Usage: ``python benchmarks/threads.py [--threads 1 2] [--repeats 3] [--steps 300]``
Prints one row per (config, load) with the median seconds per thread count and their ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Iterator

from pdlightning.cli.main import build_cli

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    # the demo (SMILE, joint critic 2 x 256 on d = 20, batch 64), levels shortened
    "mi demo": (
        ["-c", str(REPO / "configs/mi/demo.yaml")],
        lambda steps: [
            f"--data.init_args.steps_per_level={steps // 5}",
            f"--trainer.max_steps={steps}",
            "--trainer.callbacks=[]",
        ],
    ),
    # one-hot drift task (DV, SGD, batch 100, 16 classes), shortened
    "drift (DV)": (
        ["-c", str(REPO / "configs/drift/onehot_dv.yaml")],
        lambda steps: [f"--data.init_args.steps={steps}", f"--trainer.max_steps={steps}", "--trainer.callbacks=[]"],
    ),
}
QUIET_RUN = [
    "--trainer.logger=false",
    "--trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def _spin(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    while True:
        pass


@contextlib.contextmanager
def load(busy: bool) -> Iterator[None]:
    """A busy process on core 0 while the block runs (nothing when ``busy`` is false)."""
    if not busy:
        yield
        return
    process = multiprocessing.get_context("spawn").Process(target=_spin, args=(0,), daemon=True)
    process.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        process.terminate()
        process.join()


def fit_seconds(config_args: list[str], threads: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = build_cli([*config_args, *QUIET_RUN, f"--threads={threads}"], run=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, cli.datamodule)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.WARNING)
    print(
        f"{os.cpu_count()} CPUs; {args.steps} steps per fit; median of {args.repeats}; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} (--threads overrides it)"
    )
    header = " | ".join(f"{t} thr s" for t in args.threads)
    ratios = " | ".join(f"{t}/{args.threads[0]} thr" for t in args.threads[1:])
    print(f"| config | load | {header} | {ratios} | machine load avg |")
    print("|---" * (2 + 2 * len(args.threads)) + "|")
    for name, (base, shorten) in CONFIGS.items():
        config_args = ["--seed_everything=0", *base, *shorten(args.steps)]
        for busy in (False, True):
            times: dict[int, list[float]] = {t: [] for t in args.threads}
            with load(busy):
                fit_seconds(config_args, args.threads[0])  # warm-up (imports, first allocations)
                for _ in range(args.repeats):
                    for threads in args.threads:
                        times[threads].append(fit_seconds(config_args, threads))
            medians = {t: statistics.median(v) for t, v in times.items()}
            first = medians[args.threads[0]]
            cells = " | ".join(f"{medians[t]:.2f}" for t in args.threads)
            ratio_cells = " | ".join(f"{medians[t] / first:.2f}x" for t in args.threads[1:])
            busy_text = "+ one busy core" if busy else "as found"
            print(f"| {name} | {busy_text} | {cells} | {ratio_cells} | {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
