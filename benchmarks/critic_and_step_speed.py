"""Speed benchmark of the core (issue 2): all ratios are measured side by side in one run.

1. Joint critic: per-step (forward + backward) time of ``JointCritic`` (first layer computed once
   per sample and broadcast) vs a naive critic that tiles the ``n^2`` pairs ``[x_i; y_j]`` through
   the same layers (same weights, same output).
2. Training step: a Lightning ``Trainer.fit`` step of ``MIEstimationModule`` vs a bare PyTorch loop
   with the same math (same data stream, critic, bound, Adam), with and without per-step
   TensorBoard logging.
3. Achieved critic matmul rate: useful FLOPs of the joint critic's forward + backward per second,
   as a fraction of ``torch.mm``'s rate on the critic's dominant GEMM shape on this machine.

Usage: ``python benchmarks/critic_and_step_speed.py [--batch-sizes 64 128 256] [--steps 200]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Callable

import lightning as L
import torch
from torch import nn

from pdlightning.bounds import SMILE, PairScores
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import MIEstimationModule

DIM, HIDDEN = 20, [256, 256]


def median_time(fn: Callable[[], None], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_scores(critic: JointCritic, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    pairs = torch.cat([x.unsqueeze(1).expand(n, n, -1), y.unsqueeze(0).expand(n, n, -1)], dim=-1)
    return nn.Sequential(critic.first, critic.first_activation, *critic.rest)(pairs).squeeze(-1)


def critic_flops(n: int, dim: int) -> float:
    """Useful FLOPs of forward + backward (backward = 2x forward) of the broadcast joint critic."""
    h1, h2 = HIDDEN
    forward = 2 * n * (2 * dim) * h1 + 2 * n * n * h1 * h2 + 2 * n * n * h2
    return 3.0 * forward


def bench_critic(n: int, dim: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    critic = JointCritic(dim, dim, HIDDEN)
    x, y = torch.randn(n, dim), torch.randn(n, dim)

    def ours() -> None:
        critic.zero_grad(set_to_none=True)
        critic(x, y).sum().backward()

    def naive() -> None:
        critic.zero_grad(set_to_none=True)
        naive_scores(critic, x, y).sum().backward()

    a = torch.randn(n * n, HIDDEN[0])
    b = torch.randn(HIDDEN[0], HIDDEN[1])
    t_ours, t_naive = median_time(ours, repeats), median_time(naive, repeats)
    t_mm = median_time(lambda: torch.mm(a, b), repeats)
    mm_rate = 2.0 * n * n * HIDDEN[0] * HIDDEN[1] / t_mm
    ours_rate = critic_flops(n, dim) / t_ours
    return {
        "ours_ms": 1e3 * t_ours,
        "naive_ms": 1e3 * t_naive,
        "speedup": t_naive / t_ours,
        "ours_gflops": ours_rate / 1e9,
        "mm_gflops": mm_rate / 1e9,
        "fraction_of_mm": ours_rate / mm_rate,
    }


def bare_loop(steps: int, n: int) -> float:
    torch.manual_seed(0)
    critic, bound = JointCritic(DIM, DIM, HIDDEN), SMILE(tau=5.0)
    optimizer = torch.optim.Adam(list(critic.parameters()) + list(bound.parameters()), lr=5e-4)
    stream = CorrelatedGaussianDataModule(DIM, [2.0], steps, batch_size=n, seed=0).train_stream
    start = time.perf_counter()
    for batch in stream:
        optimizer.zero_grad(set_to_none=True)
        output = bound(PairScores.from_matrix(critic(batch["x"], batch["y"])))
        output.loss.backward()
        optimizer.step()
        _ = output.mi.item()  # the loop reads its estimate too, as a user's would
    return (time.perf_counter() - start) / steps


class StepTimer(L.Callback):
    def on_train_batch_start(self, *args) -> None:
        if getattr(self, "start", None) is None:
            self.start, self.steps = time.perf_counter(), 0

    def on_train_batch_end(self, *args) -> None:
        self.steps += 1
        self.end = time.perf_counter()


def lightning_loop(steps: int, n: int, log_dir: str | None) -> float:
    torch.manual_seed(0)
    module = MIEstimationModule(
        JointCritic(DIM, DIM, HIDDEN), SMILE(tau=5.0), optimizer=lambda p: torch.optim.Adam(p, lr=5e-4)
    )
    data = CorrelatedGaussianDataModule(DIM, [2.0], steps + 1, n)
    timer = StepTimer()
    logger = L.pytorch.loggers.TensorBoardLogger(log_dir) if log_dir else False
    trainer = L.Trainer(
        max_steps=steps + 1,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, datamodule=data)
    # timed from the start of the first batch to the end of the last: steps intervals
    return (timer.end - timer.start) / timer.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument(
        "--dims",
        type=int,
        nargs="+",
        default=[20, 784],
        help="input size of x and y: 20 (the Gaussian task), 784 (MNIST-sized views)",
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternate bare/Lightning runs this often; best of each")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, joint critic {DIM}+{DIM} -> {HIDDEN} -> 1\n")

    print("1+3. joint critic, forward+backward per step (median of repeats)")
    print(
        f"{'d':>4} {'batch':>6} {'ours ms':>9} {'naive ms':>9} {'speed-up':>9} {'ours GF/s':>10} {'mm GF/s':>9} {'of mm':>7}"
    )
    for dim in args.dims:
        for n in args.batch_sizes:
            if dim * n * n > 784 * 128 * 128:  # the naive critic's tiled input would need > 100 MB
                continue
            r = bench_critic(n, dim, args.repeats)
            print(
                f"{dim:4d} {n:6d} {r['ours_ms']:9.2f} {r['naive_ms']:9.2f} {r['speedup']:8.2f}x "
                f"{r['ours_gflops']:10.1f} {r['mm_gflops']:9.1f} {r['fraction_of_mm']:6.0%}"
            )

    print(
        f"\n2. training step, batch 64, SMILE + joint critic, {args.steps} steps, best of {args.rounds} alternating rounds"
    )
    bare, quiet, logged = [], [], []
    with tempfile.TemporaryDirectory() as log_dir:
        for _ in range(args.rounds):
            bare.append(bare_loop(args.steps, 64))
            quiet.append(lightning_loop(args.steps, 64, None))
            logged.append(lightning_loop(args.steps, 64, log_dir))
    b, q, g = min(bare), min(quiet), min(logged)
    print(f"{'bare PyTorch loop':>36}: {1e3 * b:7.2f} ms/step")
    print(f"{'Lightning, no logger':>36}: {1e3 * q:7.2f} ms/step  ({q / b:.2f}x bare)")
    print(f"{'Lightning, TensorBoard every step':>36}: {1e3 * g:7.2f} ms/step  ({g / b:.2f}x bare)")


if __name__ == "__main__":
    main()
