"""Why does the probabilistic classifier under-read on some suite tasks? (issue 15, "a known discrepancy")

Trains each estimator on a task under the suite's finite-sample protocol (:class:`pdlightning.data.TaskDataModule`:
N pairs, half held out) and reports, per run, the held-out MI estimate, the estimate on the training sample itself
(in-sample), and the pointwise accuracy of the PMI on held-out joint and product pairs
(:class:`pdlightning.callbacks.PointwiseAccuracy`). One CSV row per run; a summary table on stdout.

    OMP_NUM_THREADS=1 python benchmarks/pc_discrepancy.py --tasks 1v1-additive-0.1 \\
        --estimators smile infonce nwj pc pc_balanced --steps 2000 --batch-size 128 --hidden 64 64 --out pc.csv

Estimators: ``smile`` (SMILE τ=5), ``infonce``, ``nwj``, ``pc`` (ProbabilisticClassifier, pooled BCE: prior ratio
``k = batch - 1``, the critic's score is the logit), ``pc_balanced`` (ProbabilisticClassifier(balanced=True):
per-class means, prior ratio 1), ``pc_log_ratio`` (pooled BCE, the critic's score is ``log r_hat``: an untrained
critic starts at independence instead of at ``r_hat = k``).

The README's table ("Why the probabilistic classifier under-reads") came from these runs (about 1 to 10 minutes
each on one thread):

    python benchmarks/pc_discrepancy.py --out fixed.csv                   # the fixed 2,500-pair sample
    python benchmarks/pc_discrepancy.py --stream --out stream.csv
    python benchmarks/pc_discrepancy.py --stream --estimators pc pc_balanced --steps 8000 --out budget.csv
    python benchmarks/pc_discrepancy.py --stream --estimators pc pc_balanced --batch-size 32 --out batch.csv
    python benchmarks/pc_discrepancy.py --stream --estimators pc pc_balanced --batch-size 64 --out batch.csv
    python benchmarks/pc_discrepancy.py --estimators smile pc --batch-size 256 --hidden 16 8 --lr 1e-2 --out cfg.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from typing import Any

import lightning as L
import torch

from pdlightning.bounds import NWJ, SMILE, Bound, InfoNCE, ProbabilisticClassifier
from pdlightning.callbacks import PointwiseAccuracy
from pdlightning.critics import JointCritic
from pdlightning.data import TaskDataModule
from pdlightning.modules import MIEstimationModule
from pdlightning.modules.pmi_reference import ReferenceSample

ESTIMATORS = {
    "smile": lambda: SMILE(tau=5.0),
    "infonce": InfoNCE,
    "nwj": NWJ,
    "pc": lambda: ProbabilisticClassifier(balanced=False),
    "pc_balanced": lambda: ProbabilisticClassifier(balanced=True),
    "pc_log_ratio": lambda: ProbabilisticClassifier(parametrization="log_ratio"),
}
#: held-out (and in-sample) estimates are averaged over batches of this many pairs
EVAL_BATCH = 500


def in_sample(module: MIEstimationModule, sample: dict[str, torch.Tensor]) -> dict[str, float]:
    """The estimator on its own training sample: MI estimate (in-batch, as on held-out batches) and plug-in PMI
    mean against the exact mean; a gap to the held-out numbers is overfitting."""
    module.eval()
    estimates, pmi_hat = [], []
    n = sample["x"].shape[0] // EVAL_BATCH * EVAL_BATCH
    module.pmi_reference = None
    if module.reporting_bound.pmi_normalizer is not None:
        module.pmi_reference = ReferenceSample({None: (sample["x"][:1024], sample["y"][:1024])})
    with torch.no_grad():
        for start in range(0, n, EVAL_BATCH):
            chunk = {
                k: v[start : start + EVAL_BATCH] if torch.is_tensor(v) and v.dim() else v for k, v in sample.items()
            }
            estimates.append(float(module.bounds.report(*module.stacked_scores(chunk))[0, 0]))
            pmi_hat.append(module.member_pmi(chunk["x"], chunk["y"], None)[0])
    return {
        "train_mi_estimate": sum(estimates) / len(estimates),
        "train_pmi_plug_in_mi": float(torch.cat(pmi_hat).mean()),
        "train_pmi_exact_mean": float(sample["pmi"][:n].mean()),
    }


def bias_by_pmi(trainer: L.Trainer, module: MIEstimationModule, data: TaskDataModule) -> dict[str, float]:
    """Mean error of the estimated PMI of held-out joint pairs on the 10% with the highest exact PMI, and on the
    rest: where an estimator's plug-in bias comes from (``predict`` gives each pair's PMI, batch-independent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictions = trainer.predict(module, data)
    estimated = torch.cat([p["pmi"] for p in predictions]).double()
    exact = torch.cat([p["pmi_true"] for p in predictions]).double()
    top = exact >= exact.quantile(0.9)
    error = estimated - exact
    return {
        "bias_top10_pmi": float(error[top].mean()),
        "bias_rest": float(error[~top].mean()),
        "exact_top10_pmi": float(exact[top].mean()),
    }


def run(task: str, estimator: str, args: argparse.Namespace, seed: int) -> dict[str, Any]:
    data = TaskDataModule(
        task,
        n_samples=args.n_samples,
        batch_size=args.batch_size,
        steps=args.steps,
        seed=seed,
        stream=args.stream,
        eval_batch_size=EVAL_BATCH,
    )
    L.seed_everything(seed, verbose=False)
    bound: Bound = ESTIMATORS[estimator]()
    module = MIEstimationModule(
        JointCritic(data.x_dim, data.y_dim, args.hidden),
        bound,
        summary=False,
        optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
    )
    trainer = L.Trainer(
        max_steps=args.steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[PointwiseAccuracy(histograms=False, figure=False)],
        accelerator="cpu",
        devices=1,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, data)
        results = trainer.test(module, data, verbose=False)[0]
    level = f"{data.task.mi:g}"
    row = {
        "task": task,
        "estimator": estimator,
        "seed": seed,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "hidden": "x".join(map(str, args.hidden)),
        "lr": args.lr,
        "stream": args.stream,
        "true_mi": data.task.mi,
        "mi_estimate": results[f"test/mi_estimate@{level}"],
    }
    row.update({k.removeprefix("test/"): v for k, v in results.items() if k.startswith("test/pmi_")})
    row.update(in_sample(module, data.training_sample(seed)))
    row.update(bias_by_pmi(trainer, module, data))
    row["seconds"] = time.perf_counter() - start
    return row


SUMMARY = [
    "mi_estimate",
    "train_mi_estimate",
    "pmi_joint_plug_in_bias",
    "bias_top10_pmi",
    "bias_rest",
    "pmi_joint_centred_rmse",
    "pmi_joint_spearman",
    "pmi_product_rmse",
    "pmi_product_log_mean_ratio",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["1v1-additive-0.1", "multinormal-sparse-25-25-2-2.0"])
    parser.add_argument("--estimators", nargs="+", default=sorted(ESTIMATORS), choices=sorted(ESTIMATORS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", nargs="+", type=int, default=[64, 64])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--n-samples", type=int, default=5000)
    parser.add_argument("--stream", action="store_true", help="a fresh batch every step instead of the fixed sample")
    parser.add_argument("--out", default=None, help="CSV file (appended to)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            for estimator in args.estimators:
                row = run(task, estimator, args, seed)
                rows.append(row)
                print(
                    f"{task:32s} {estimator:12s} seed {seed}  "
                    + "  ".join(f"{k}={row.get(k, float('nan')):.3f}" for k in SUMMARY)
                    + f"  ({row['seconds']:.0f}s)",
                    flush=True,
                )
                if args.out:
                    new = not os.path.exists(args.out)
                    with open(args.out, "a", newline="") as handle:
                        writer = csv.DictWriter(handle, fieldnames=list(row))
                        if new:
                            writer.writeheader()
                        writer.writerow(row)
    if not rows:
        sys.exit("no runs")


if __name__ == "__main__":
    main()
