"""Training throughput against the number of members K, on any device (the step-throughput table of a GPU session).

For the joint and the separable critic of the protocol (2 x 256, d = 20, batch 64) and K = 1 (SMILE tau=5), 8 (the
report's 8 default estimators), 32 and 128 (those 8 x 4 and x 16 seeds): ``MIEstimationModule`` in ``Trainer.fit``
for ``--steps`` steps (logging every 50, as the GPU protocol does), the median step time after warm-up, steps/s
and member-steps/s. On a GPU the step's time is synchronised (``torch.cuda.synchronize`` at the step's end).

Usage: ``python benchmarks/throughput.py --device cuda [--steps 300] [--members 1 8 32 128] [--out FILE]``
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any

import lightning as L
import torch

from pdlightning.critics import JointCritic, SeparableCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import Member, MIEstimationModule

DEFAULTS = ("infonce", "nwj", "smile_tau1", "smile_tau5", "smile_tauinf", "remine", "pd_classifier", "pd_ratio_fitting")
DIM, BATCH = 20, 64


def members(k: int) -> list[Any]:
    return ["smile_tau5"] if k == 1 else [Member(key, seed=s) for s in range(k // 8) for key in DEFAULTS]


class StepTimer(L.Callback):
    def __init__(self, device: str, skip: int = 20) -> None:
        self.device, self.skip, self.times, self._start = device, skip, [], 0.0

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._sync()
        if trainer.global_step > self.skip:
            self.times.append(time.perf_counter() - self._start)


def seconds_per_step(kind: str, k: int, steps: int, device: str) -> float:
    torch.manual_seed(0)
    critic = (
        JointCritic(DIM, DIM, [256, 256]) if kind == "joint" else SeparableCritic(DIM, DIM, [256, 256], embed_dim=32)
    )
    module = MIEstimationModule(critic=critic, members=members(k), summary=False, level_snapshots=False)
    data = CorrelatedGaussianDataModule(dim=DIM, mi_schedule=[4.0], steps_per_level=steps, batch_size=BATCH, seed=0)
    timer = StepTimer(device, skip=min(20, steps // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(
            max_steps=steps,
            logger=False,
            log_every_n_steps=50,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            callbacks=[timer],
        ).fit(module, data)
    return statistics.median(timer.times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU, one thread"
    lines = [
        f"Step throughput (`benchmarks/throughput.py`, {name}, torch {torch.__version__}, {args.steps} steps, "
        "logging every 50): critic 2 x 256, d = 20, batch 64.",
        "",
        "| critic | K | ms / step | steps / s | member-steps / s |",
        "|---|---|---|---|---|",
    ]
    for kind in ("joint", "separable"):
        for k in args.members:
            seconds = seconds_per_step(kind, k, args.steps, args.device)
            lines.append(f"| {kind} | {k} | {seconds * 1e3:.2f} | {1 / seconds:.1f} | {k / seconds:.0f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table)


if __name__ == "__main__":
    main()
