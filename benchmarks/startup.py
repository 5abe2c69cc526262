"""Start-up cost of the ``pdlightning`` command against importing torch and Lightning.

Runs, side by side (round-robin within each repetition, so a drift of the machine's load hits all alike):

- ``python -c "import torch, lightning"``: the baseline, what any Lightning program pays;
- ``pdlightning --help`` and ``pdlightning --print-configs-dir`` (answered without importing torch);
- ``pdlightning fit --help`` (the full parser: every class signature);
- ``pdlightning fit -c configs/mi/demo.yaml --trainer.max_steps 1`` (a whole fit of one step, logs in a
  temporary directory).

Each command runs as a child process with ``OMP_NUM_THREADS=1``; its CPU time is the user + system time
of the child (``resource.getrusage(RUSAGE_CHILDREN)`` before and after), its wall time the elapsed time.
CPU time is what the targets are stated in: on a shared machine it varies far less than wall time.
Targets (issue 19): ``fit`` at most 1.5x the baseline's CPU time, ``--help`` and ``--print-configs-dir``
at most 1.2x.

Usage: ``python benchmarks/startup.py [--repeats 5] [--warmup 1]``. Prints the CPU model, the load
average before and after, one row per command (median CPU and wall seconds, CPU ratio to the baseline,
target) and exits 1 if a target is missed (``--no-check``: always 0).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: command name -> CPU-time limit as a multiple of the baseline's (None: reported, no target).
TARGETS = {
    'python -c "import torch, lightning"': None,
    "pdlightning --help": 1.2,
    "pdlightning --print-configs-dir": 1.2,
    "pdlightning fit --help": None,
    "pdlightning fit -c configs/mi/demo.yaml --trainer.max_steps 1": 1.5,
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def pdlightning_script() -> str:
    """The ``pdlightning`` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "pdlightning"
    found = str(beside) if beside.is_file() else shutil.which("pdlightning")
    if not found:
        raise SystemExit("pdlightning is not installed in this environment (pip install -e .)")
    return found


def commands(log_dir: str) -> dict[str, list[str]]:
    script = pdlightning_script()
    return {
        'python -c "import torch, lightning"': [sys.executable, "-c", "import torch, lightning"],
        "pdlightning --help": [script, "--help"],
        "pdlightning --print-configs-dir": [script, "--print-configs-dir"],
        "pdlightning fit --help": [script, "fit", "--help"],
        "pdlightning fit -c configs/mi/demo.yaml --trainer.max_steps 1": [
            script,
            "fit",
            "-c",
            str(REPO / "configs" / "mi" / "demo.yaml"),
            "--trainer.max_steps",
            "1",
            "--trainer.logger.init_args.save_dir",
            log_dir,
        ],
    }


def measure(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(CPU seconds of the child, wall seconds) of one run of ``argv``; a failed run stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {result.returncode}:\n{result.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured repetitions of each command")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first (file caches)")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even if a target is missed")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(
        f"Python {platform.python_version()}, PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')}"
    )
    print(f"load average before: {load_average()}")
    cpu: dict[str, list[float]] = {name: [] for name in TARGETS}
    wall: dict[str, list[float]] = {name: [] for name in TARGETS}
    with tempfile.TemporaryDirectory(prefix="pdlightning-startup-") as work:
        for round_ in range(args.warmup + args.repeats):
            log_dir = os.path.join(work, f"logs{round_}")
            for name, command in commands(log_dir).items():
                c, w = measure(command, env, work)
                if round_ >= args.warmup:
                    cpu[name].append(c)
                    wall[name].append(w)
    print(f"load average after:  {load_average()}")
    print(f"medians of {args.repeats} runs (OMP_NUM_THREADS=1)\n")
    baseline = statistics.median(cpu['python -c "import torch, lightning"'])
    print("| command | CPU s | wall s | CPU / baseline | target |")
    print("|---|---|---|---|---|")
    missed = []
    for name, limit in TARGETS.items():
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        ratio = c / baseline
        verdict = "" if limit is None else (f"<= {limit}x " + ("ok" if ratio <= limit else "MISSED"))
        if limit is not None and ratio > limit:
            missed.append(name)
        print(f"| `{name}` | {c:.2f} | {w:.2f} | {ratio:.2f}x | {verdict} |")
    if missed:
        print(f"\ntargets missed: {', '.join(missed)}")
    return 1 if missed and not args.no_check else 0


if __name__ == "__main__":
    raise SystemExit(main())
