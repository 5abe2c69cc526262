"""Coverage of the held-out 95% intervals (issue 11): over many seeds, how often does a trained
estimator's interval (from the standard held-out set) contain its own long-run mean (the same
critic evaluated on a held-out set 50x larger), and the true MI?

One vectorised ensemble per task trains ``--seeds`` replicates of each estimator, each on its own
stream (``data="replicas"``), then every member is tested twice: on ``--eval-batches`` held-out
batches (the interval under test) and on 50x as many (the long-run mean). Coverage of the true MI is
only expected where the estimator is unbiased at that budget; it is reported, not tuned to.

Usage: ``python benchmarks/interval_coverage.py --out docs/results/coverage.md [--seeds 20]``
(``OMP_NUM_THREADS=1``; a few minutes on 2 CPU cores with the defaults).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch

from pdlightning.bounds import SMILE, InfoNCE, ProbabilisticClassifier
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import Member, MIEstimationModule
from pdlightning.results import read_results

ESTIMATORS: dict[str, Callable[[], Any]] = {
    "smile_tau5": lambda: SMILE(tau=5.0),
    "infonce": InfoNCE,
    "pd_classifier": ProbabilisticClassifier,
}


def gaussian_task(eval_batches: int, seed: int, replicas: int, steps: int) -> L.LightningDataModule:
    return CorrelatedGaussianDataModule(
        dim=5,
        mi_schedule=[1.0],
        steps_per_level=steps,
        batch_size=64,
        seed=seed,
        eval_batches_per_level=eval_batches,
        replicas=replicas,
    )


TASKS: dict[str, Callable[[int, int, int, int], L.LightningDataModule]] = {"gaussian-5d-1nat": gaussian_task}


def suite_task(name: str) -> Callable[[int, int, int, int], L.LightningDataModule]:
    def make(eval_batches: int, seed: int, replicas: int, steps: int) -> L.LightningDataModule:
        from pdlightning.data import TaskDataModule  # the task suite's datamodule

        # stream mode: fresh training pairs every step; the held-out set is test_fraction x n_samples pairs,
        # so n_samples sets its size (eval_batches batches of 64). No standardisation: its statistics come
        # from the training sample, whose size would then differ between the short and the long evaluation.
        return TaskDataModule(
            task=name,
            stream=True,
            batch_size=64,
            eval_batch_size=64,
            seed=seed,
            steps=steps,
            replicas=replicas,
            n_samples=2 * 64 * eval_batches,
            test_fraction=0.5,
            standardize=False,
        )

    return make


def evaluate(module: MIEstimationModule, data: L.LightningDataModule, directory: Path) -> dict[str, dict]:
    trainer = L.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(directory),
    )
    trainer.test(module, data, verbose=False)
    return {row["member"]: row for row in read_results(directory)["results"] if row["member"] is not None}


def run_task(
    task: str, make: Callable, estimator: str, seeds: int, steps: int, eval_batches: int, directory: Path
) -> dict[str, Any]:
    members = [Member(ESTIMATORS[estimator](), name=f"{estimator}_{s}", seed=s, key=estimator) for s in range(seeds)]
    torch.manual_seed(0)
    probe = make(eval_batches, 0, seeds, steps)
    module = MIEstimationModule(
        critic=JointCritic(probe.x_dim, probe.y_dim, [64, 64]),
        members=members,
        data="replicas",
        summary=False,
        level_snapshots=False,
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
    )
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        default_root_dir=str(directory),
    )
    start = time.perf_counter()
    trainer.fit(module, make(eval_batches, 0, seeds, steps))
    short = evaluate(module, make(eval_batches, 0, seeds, steps), directory / "short")
    long = evaluate(module, make(50 * eval_batches, 0, seeds, steps), directory / "long")
    true_mi = float(torch.as_tensor(probe.batch_at(0)["mi"]).float().mean())
    own = sum(short[m]["low"] <= long[m]["estimate"] <= short[m]["high"] for m in short)
    truth = sum(short[m]["low"] <= true_mi <= short[m]["high"] for m in short)
    bias = sum(long[m]["estimate"] for m in long) / len(long) - true_mi
    return {
        "task": task,
        "estimator": estimator,
        "seeds": seeds,
        "steps": steps,
        "unit": short[f"{estimator}_0"]["unit"],
        "n": short[f"{estimator}_0"]["n"],
        "own": own / len(short),
        "truth": truth / len(short),
        "long_run_bias": bias,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/results/coverage.md"))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument("--suite-tasks", nargs="*", default=["1v1-additive-0.1", "multinormal-sparse-5-5-2-2.0"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    tasks = dict(TASKS)
    for name in args.suite_tasks:
        tasks[name] = suite_task(name)
    rows = []
    work = args.out.parent / "coverage_runs"
    for task, make in tasks.items():
        for estimator in args.estimators:
            row = run_task(task, make, estimator, args.seeds, args.steps, args.eval_batches, work / task / estimator)
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = [
        "# Coverage of the held-out 95% intervals",
        "",
        f"{args.seeds} seeds per estimator and task (each its own critic seed and data stream, one vectorised "
        f"ensemble), {args.steps} training steps, batch 64, joint critic 2 x 64; the interval under test comes "
        f"from {args.eval_batches} held-out batches of 64 (`pdlightning test`'s default), the long-run mean from "
        f"{50 * args.eval_batches} batches. Command: `python benchmarks/interval_coverage.py --seeds {args.seeds} "
        f"--steps {args.steps}`.",
        "",
        "| task | estimator | unit (n) | covers own long-run mean | covers true MI | long-run bias (nats) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['estimator']} | {r['unit']} ({r['n']}) | {r['own']:.0%} | {r['truth']:.0%} | "
            f"{r['long_run_bias']:+.3f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
