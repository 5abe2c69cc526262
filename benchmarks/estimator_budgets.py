"""Steps per level each estimator needs on the MI protocol before its per-level statistics settle.

The protocol (SMILE / PD / ReMINE papers): correlated Gaussian, d = 20, batch 64, joint critic
2 x 256 ReLU, Adam 5e-4, the staircase 2-4-6-8-10 nats; statistics over the raw training estimates of
each whole level (no burn-in), as ``pdlightning-report``. Each (estimator, steps per level, seed) is one
fresh staircase run built from the shipped configs (``configs/mi/gaussian.yaml``'s data,
``configs/mi/protocol/model.yaml``, the estimator's fragment in ``configs/mi/bounds/``).

An estimator has *settled* at a budget ``S`` when, at every level, its level mean (averaged over seeds)
is within ``0.1 nats + 5%`` of the true MI of the level mean it reaches at the reference budget (the
largest one run; 4,000 steps = the papers' protocol). The shortest settled budget is what the README
documents and what ``pdlightning-report`` flags cells against (``pdlightning/report/estimators.py``).

    OMP_NUM_THREADS=1 python benchmarks/estimator_budgets.py --jobs 2 --budgets 250 1000 --levels 2 4
    python benchmarks/estimator_budgets.py --jobs 16 --out reports/budgets     # the full measurement
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional, Sequence

import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ESTIMATORS = (
    "infonce",
    "nwj",
    "smile_tau1",
    "smile_tau5",
    "smile_tauinf",
    "remine",
    "pd_classifier",
    "pd_ratio_fitting",
)
FIELDS = ("estimator", "steps_per_level", "seed", "true_mi", "steps", "mean", "bias", "variance", "mse", "seconds")


def run(
    estimator: str, steps_per_level: int, seed: int, levels: Sequence[float], accelerator: str, configs: str
) -> list[dict]:
    """One staircase run; the per-level statistics of its raw training estimates."""
    import lightning as L
    import torch

    from pdlightning.callbacks import BiasVarianceMSE
    from pdlightning.runner.config import instantiate

    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="budgets-")  # the callback's files of this run; only its statistics are kept
    root = Path(configs)
    model_spec = yaml.safe_load((root / "mi" / "protocol" / "model.yaml").read_text())
    model_spec["init_args"]["bound"] = yaml.safe_load((root / "mi" / "bounds" / f"{estimator}.yaml").read_text())[
        "model"
    ]["init_args"]["bound"]
    data_spec = yaml.safe_load((root / "mi" / "gaussian.yaml").read_text())["data"]
    data_spec["init_args"].update(mi_schedule=list(levels), steps_per_level=steps_per_level, seed=seed)
    L.seed_everything(seed, verbose=False)
    model = instantiate(model_spec, L.LightningModule)
    data = instantiate(data_spec, L.LightningDataModule)
    recorder = BiasVarianceMSE(output_dir=None, verbose=False)
    trainer = L.Trainer(
        max_steps=steps_per_level * len(levels),
        max_epochs=1,
        logger=False,
        default_root_dir=tmp,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator=accelerator,
        devices=1,
        callbacks=[recorder],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
    return [
        dict(
            estimator=estimator,
            steps_per_level=steps_per_level,
            seed=seed,
            true_mi=s.true_mi,
            steps=s.steps,
            mean=s.mean,
            bias=s.bias,
            variance=s.variance,
            mse=s.mse,
            seconds=round(seconds, 1),
        )
        for s in recorder.statistics()
    ]


def tolerance(true_mi: float) -> float:
    return 0.1 + 0.05 * true_mi


def settled_budget(rows: Sequence[dict], estimator: str) -> tuple[Optional[int], int]:
    """``(shortest settled budget, reference budget)`` of one estimator; ``None`` when no budget
    below the reference has settled (it needs the reference budget or more)."""
    mine = [r for r in rows if r["estimator"] == estimator]
    budgets = sorted({int(r["steps_per_level"]) for r in mine})
    reference = budgets[-1]

    def level_means(budget: int) -> dict[float, float]:
        by_level: dict[float, list[float]] = {}
        for r in mine:
            if int(r["steps_per_level"]) == budget:
                by_level.setdefault(float(r["true_mi"]), []).append(float(r["mean"]))
        return {level: sum(v) / len(v) for level, v in by_level.items()}

    target = level_means(reference)
    for budget in budgets[:-1]:
        means = level_means(budget)
        if all(
            level in means and math.isfinite(means[level]) and abs(means[level] - value) <= tolerance(level)
            for level, value in target.items()
        ):
            return budget, reference
    return None, reference


def summary(rows: Sequence[dict], estimators: Sequence[str]) -> str:
    budgets = sorted({int(r["steps_per_level"]) for r in rows})
    levels = sorted({float(r["true_mi"]) for r in rows})
    lines = [
        "| estimator | settled at (steps/level) | "
        + " | ".join(f"mean @{b}: " + ", ".join(f"{lv:g}" for lv in levels) for b in budgets)
        + " |",
        "|---|---|" + "---|" * len(budgets),
    ]
    for estimator in estimators:
        settled, reference = settled_budget(rows, estimator)
        cells = []
        for budget in budgets:
            means = []
            for level in levels:
                values = [
                    float(r["mean"])
                    for r in rows
                    if r["estimator"] == estimator
                    and int(r["steps_per_level"]) == budget
                    and float(r["true_mi"]) == level
                ]
                means.append(f"{sum(values) / len(values):.2f}" if values else "–")
            cells.append(" / ".join(means))
        shorter = [b for b in budgets if b < reference]
        note = str(settled) if settled is not None else f"> {shorter[-1] if shorter else reference} (not settled)"
        lines.append(f"| {estimator} | {note} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    p.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=[250, 500, 1000, 2000, 4000],
        help="steps per level; the largest is the reference",
    )
    p.add_argument("--levels", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0, 10.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel runs (one CPU thread each)")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--configs", default=str(CONFIGS))
    p.add_argument("--out", type=Path, default=Path("reports/budgets"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(e, b, s) for b in sorted(args.budgets, reverse=True) for e in args.estimators for s in args.seeds]
    rows: list[dict] = []
    path = args.out / "budgets.csv"
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        futures = {
            pool.submit(run, e, b, s, args.levels, args.accelerator, args.configs): (e, b, s) for e, b, s in jobs
        }
        for future in as_completed(futures):
            for row in future.result():
                writer.writerow(row)
                rows.append(row)
            f.flush()
            print(f"done {futures[future]} in {rows[-1]['seconds']}s", flush=True)
    table = summary(rows, args.estimators)
    (args.out / "budgets.md").write_text(
        f"Levels {args.levels}, seeds {args.seeds}; settled = every level mean within 0.1 + 5% of the level of "
        f"its value at {max(args.budgets)} steps per level.\n\n" + table
    )
    print(table)


if __name__ == "__main__":
    main()
