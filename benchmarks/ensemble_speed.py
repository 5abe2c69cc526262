"""Speed of the vectorised ensemble (issue 10); every ratio is measured side by side in one run.

1. Ensemble critic, forward + backward: ``CriticEnsemble`` (functional_call under vmap) vs an explicit
   batched joint critic (``baddbmm`` per layer) vs K separate critics in a loop, and the achieved rate
   as a fraction of one ``torch.bmm`` / ``torch.mm`` at the dominant GEMM shape ``[n^2, 256] x [256, 256]``.
2. Training step in Lightning: one K-member ``MIEnsembleModule`` step vs K single-module steps
   (``MIEstimationModule``), the same work (K bounds, K critics, the same batches).
3. Lightning overhead of the single-module path: ``MIEstimationModule`` in ``Trainer.fit`` vs a bare
   PyTorch loop with the same math (critic, SMILE, Adam, the same stream), with TensorBoard logging.
4. GPU only (skipped without CUDA): steps/s vs K (1, 8, 32, 128) of the protocol's ensemble (joint
   critic 2 x 256, batch 64, the report's default estimators repeated), the wall time of the full
   protocol (20,000 steps) for 80 members (8 estimators x Gaussian/Cubic x 5 seeds = 2 fits of 40),
   against 80 sequential fits timed from a single one; optionally with ``torch.compile`` and TF32.

Usage: ``python benchmarks/ensemble_speed.py [--members 8] [--steps 60] [--gpu-steps 300]``
(``OMP_NUM_THREADS=1`` on a shared CPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pdlightning.bounds import (
    DV,
    NWJ,
    SMILE,
    DensityRatioFitting,
    InfoNCE,
    PairScores,
    ProbabilisticClassifier,
    Regularized,
)
from pdlightning.critics import JointCritic
from pdlightning.critics.ensemble import CriticEnsemble
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import EnsembleMember, MIEnsembleModule, MIEstimationModule

DIM, HIDDEN, BATCH = 20, [256, 256], 64


def default_bounds() -> list[tuple[str, Callable[[], nn.Module]]]:
    """The report's default estimators (Song & Ermon's Table 2 rows, ReMINE, two PD estimators)."""
    return [
        ("cpc", InfoNCE),
        ("nwj", NWJ),
        ("smile_tau1", lambda: SMILE(1.0)),
        ("smile_tau5", lambda: SMILE(5.0)),
        ("smile_tauinf", lambda: SMILE(None)),
        ("remine", lambda: Regularized(DV())),
        ("pc", ProbabilisticClassifier),
        ("drf", DensityRatioFitting),
    ]


def members(k: int) -> list[EnsembleMember]:
    bounds = default_bounds()
    return [EnsembleMember(f"{bounds[i % 8][0]}_{i // 8}", bounds[i % 8][1](), seed=i) for i in range(k)]


def median_time(
    fn: Callable[[], None], repeats: int, warmup: int = 3, sync: Callable[[], None] = lambda: None
) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class ExplicitJointEnsemble(nn.Module):
    """The joint critic for K members written with batched linear layers (``baddbmm``), for comparison."""

    def __init__(self, critics: list[JointCritic]) -> None:
        super().__init__()
        first = torch.stack([c.first.weight for c in critics])  # [K, h, dx + dy]
        self.wx = nn.Parameter(first[:, :, :DIM].transpose(1, 2).contiguous())  # [K, dx, h]
        self.wy = nn.Parameter(first[:, :, DIM:].transpose(1, 2).contiguous())
        self.b1 = nn.Parameter(torch.stack([c.first.bias for c in critics]).unsqueeze(1))  # [K, 1, h]
        self.w2 = nn.Parameter(torch.stack([c.rest[0].weight.T for c in critics]))  # [K, h, h2]
        self.b2 = nn.Parameter(torch.stack([c.rest[0].bias for c in critics]).unsqueeze(1))
        self.w3 = nn.Parameter(torch.stack([c.rest[2].weight.T for c in critics]))  # [K, h2, 1]
        self.b3 = nn.Parameter(torch.stack([c.rest[2].bias for c in critics]).unsqueeze(1))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        k, n = self.wx.shape[0], x.shape[0]
        hx = torch.baddbmm(self.b1, x.expand(k, n, DIM), self.wx)  # [K, n, h]
        hy = torch.bmm(y.expand(k, n, DIM), self.wy)
        hidden = F.relu(hx.unsqueeze(2) + hy.unsqueeze(1)).reshape(k, n * n, -1)
        hidden = F.relu(torch.baddbmm(self.b2, hidden, self.w2))
        return torch.baddbmm(self.b3, hidden, self.w3).reshape(k, n, n)


def critic_flops(n: int) -> float:
    """Useful FLOPs of one member's forward + backward (backward = 2x forward)."""
    h1, h2 = HIDDEN
    return 3.0 * (2 * n * 2 * DIM * h1 + 2 * n * n * h1 * h2 + 2 * n * n * h2)


def bench_critics(k: int, repeats: int, device: str) -> dict[str, float]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    critics = []
    for seed in range(k):
        torch.manual_seed(seed)
        critics.append(JointCritic(DIM, DIM, HIDDEN).to(device))
    vmapped = CriticEnsemble(critics).to(device)
    explicit = ExplicitJointEnsemble(critics).to(device)
    x, y = torch.randn(BATCH, DIM, device=device), torch.randn(BATCH, DIM, device=device)
    torch.testing.assert_close(vmapped(x, y), explicit(x, y), atol=1e-4, rtol=1e-4)

    def step(module: nn.Module) -> Callable[[], None]:
        def run() -> None:
            module.zero_grad(set_to_none=True)
            module(x, y).sum().backward()

        return run

    def loop() -> None:
        for critic in critics:
            critic.zero_grad(set_to_none=True)
            critic(x, y).sum().backward()

    a = torch.randn(k, BATCH * BATCH, HIDDEN[0], device=device)
    b = torch.randn(k, HIDDEN[0], HIDDEN[1], device=device)
    t_bmm = median_time(lambda: torch.bmm(a, b), repeats, sync=sync)
    t_mm = median_time(lambda: torch.mm(a[0], b[0]), repeats, sync=sync)
    t_vmap = median_time(step(vmapped), repeats, sync=sync)
    t_explicit = median_time(step(explicit), repeats, sync=sync)
    t_loop = median_time(loop, repeats, sync=sync)
    gemm = 2.0 * BATCH * BATCH * HIDDEN[0] * HIDDEN[1]
    useful = k * critic_flops(BATCH)
    return {
        "vmap_ms": 1e3 * t_vmap,
        "explicit_ms": 1e3 * t_explicit,
        "loop_ms": 1e3 * t_loop,
        "vmap_of_mm": useful / t_vmap / (gemm / t_mm),
        "vmap_of_bmm": useful / t_vmap / (k * gemm / t_bmm),
        "explicit_of_mm": useful / t_explicit / (gemm / t_mm),
        "mm_gflops": gemm / t_mm / 1e9,
    }


class StepTimer(L.Callback):
    def __init__(self, skip: int = 5) -> None:
        self.skip, self.seen, self.start, self.end, self.steps = skip, 0, None, None, 0

    def on_train_batch_start(self, trainer, *args) -> None:
        self.seen += 1
        if self.seen == self.skip + 1:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.start is not None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.steps += 1
            self.end = time.perf_counter()

    @property
    def seconds_per_step(self) -> float:
        return (self.end - self.start) / self.steps


def fit_time(
    module: L.LightningModule, steps: int, device: str, log_dir: str | None = None, precision: str = "32-true"
) -> float:
    timer = StepTimer()
    logger = L.pytorch.loggers.TensorBoardLogger(log_dir) if log_dir else False
    trainer = L.Trainer(
        max_steps=steps + timer.skip,
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
        accelerator=device,
        devices=1,
        precision=precision,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, CorrelatedGaussianDataModule(DIM, [2.0], steps + timer.skip, BATCH))
    return timer.seconds_per_step


def ensemble(k: int, compile_critic: bool = False) -> MIEnsembleModule:
    torch.manual_seed(0)
    module = MIEnsembleModule(
        members(k),
        critic=JointCritic(DIM, DIM, HIDDEN),
        summary=False,
        level_snapshots=False,
        optimizer=lambda p: torch.optim.Adam(p, lr=5e-4),
    )
    if compile_critic:
        module.critics = torch.compile(module.critics)
    return module


def single(bound: nn.Module, seed: int) -> MIEstimationModule:
    torch.manual_seed(seed)
    return MIEstimationModule(
        JointCritic(DIM, DIM, HIDDEN),
        bound,
        summary=False,
        level_snapshots=False,
        optimizer=lambda p: torch.optim.Adam(p, lr=5e-4),
    )


def bare_loop(steps: int, device: str) -> float:
    torch.manual_seed(0)
    critic, bound = JointCritic(DIM, DIM, HIDDEN).to(device), SMILE(tau=5.0)
    optimizer = torch.optim.Adam(critic.parameters(), lr=5e-4)
    stream = CorrelatedGaussianDataModule(DIM, [2.0], steps + 5, batch_size=BATCH, seed=0).train_stream
    times = []
    for index, batch in enumerate(stream):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        output = bound(PairScores.from_matrix(critic(batch["x"].to(device), batch["y"].to(device))))
        output.loss.backward()
        optimizer.step()
        _ = output.mi.item()  # the loop reads its estimate, as a user's would
        if index >= 5:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--steps", type=int, default=60, help="timed training steps per CPU fit")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best of each")
    parser.add_argument("--gpu-steps", type=int, default=300)
    parser.add_argument("--gpu-members", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    k = args.members
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, joint critic {DIM}+{DIM} -> {HIDDEN} -> 1, "
        f"batch {BATCH}"
    )
    if not args.skip_cpu:
        print(f"\n1. critic forward + backward, K = {k} members (CPU, median of {args.repeats})")
        r = bench_critics(k, args.repeats, "cpu")
        print(
            f"   vmap ensemble {r['vmap_ms']:.1f} ms, explicit baddbmm {r['explicit_ms']:.1f} ms, "
            f"loop over K critics {r['loop_ms']:.1f} ms: vmap {r['loop_ms'] / r['vmap_ms']:.2f}x the loop, "
            f"explicit {r['loop_ms'] / r['explicit_ms']:.2f}x"
        )
        print(
            f"   achieved rate: vmap {r['vmap_of_mm']:.0%} of torch.mm ({r['mm_gflops']:.1f} GFLOP/s at "
            f"[{BATCH * BATCH}, 256] x [256, 256]), {r['vmap_of_bmm']:.0%} of torch.bmm over K; explicit "
            f"{r['explicit_of_mm']:.0%} of torch.mm"
        )

        print(
            f"\n2. Lightning training step, K = {k}: one ensemble step vs {k} single-module steps "
            f"({args.steps} steps, best of {args.rounds} alternating rounds)"
        )
        together, apart = [], []
        for _ in range(args.rounds):
            together.append(fit_time(ensemble(k), args.steps, "cpu"))
            bounds = [make() for _, make in (default_bounds() * (k // 8 + 1))[:k]]
            apart.append(sum(fit_time(single(b, i), max(args.steps // k, 10), "cpu") for i, b in enumerate(bounds)))
        t, a = min(together), min(apart)
        print(
            f"   ensemble {1e3 * t:.1f} ms/step, {k} single modules {1e3 * a:.1f} ms/step: ensemble {a / t:.2f}x faster"
        )

        print(
            f"\n3. single module vs bare PyTorch loop, TensorBoard every step ({args.steps * 3} steps, "
            f"best of {args.rounds} alternating rounds)"
        )
        bare, ours = [], []
        with tempfile.TemporaryDirectory() as log_dir:
            for _ in range(args.rounds):
                bare.append(bare_loop(args.steps * 3, "cpu"))
                ours.append(fit_time(single(SMILE(5.0), 0), args.steps * 3, "cpu", log_dir))
        b, o = min(bare), min(ours)
        print(f"   bare {1e3 * b:.2f} ms/step, Lightning {1e3 * o:.2f} ms/step: {o / b:.2f}x bare")

    if not torch.cuda.is_available():
        print(
            "\n4. GPU: no CUDA device here; run this script on a GPU machine for the K sweep and the "
            "full-protocol estimate"
        )
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"\n4. GPU ({torch.cuda.get_device_name()}), {args.gpu_steps} timed steps per fit, float32")
    for kk in args.gpu_members:
        r = bench_critics(kk, args.repeats, "cuda")
        print(
            f"   critic K={kk:4d}: vmap {r['vmap_ms']:.2f} ms, explicit {r['explicit_ms']:.2f} ms, loop "
            f"{r['loop_ms']:.2f} ms; vmap {r['vmap_of_bmm']:.0%} of bmm"
        )
    single_step = fit_time(single(SMILE(5.0), 0), args.gpu_steps, "cuda")
    print(f"   single module: {1.0 / single_step:.1f} steps/s")
    rates = {}
    for kk in args.gpu_members:
        rates[kk] = 1.0 / fit_time(ensemble(kk), args.gpu_steps, "cuda")
        print(f"   ensemble K={kk:4d}: {rates[kk]:.1f} steps/s ({kk * rates[kk]:.0f} member-steps/s)")
    forty = 1.0 / fit_time(ensemble(40), args.gpu_steps, "cuda")
    protocol = 2 * 20_000 / forty
    sequential = 80 * 20_000 * single_step
    print(
        f"   full protocol, 80 members as 2 fits of 40 (Gaussian, Cubic): {protocol / 60:.1f} min; "
        f"80 sequential single fits: {sequential / 3600:.1f} h ({sequential / protocol:.0f}x)"
    )
    torch.backends.cuda.matmul.allow_tf32 = True
    tf32 = 1.0 / fit_time(ensemble(40), args.gpu_steps, "cuda")
    print(f"   K=40 with TF32 matmuls: {tf32:.1f} steps/s ({tf32 / forty:.2f}x float32)")
    torch.backends.cuda.matmul.allow_tf32 = False
    bf16 = 1.0 / fit_time(ensemble(40), args.gpu_steps, "cuda", precision="bf16-mixed")
    print(f"   K=40 with bf16 autocast (bounds in float32): {bf16:.1f} steps/s ({bf16 / forty:.2f}x float32)")
    try:
        compiled = 1.0 / fit_time(ensemble(40, compile_critic=True), args.gpu_steps, "cuda")
        print(f"   K=40 with torch.compile of the critic: {compiled:.1f} steps/s ({compiled / forty:.2f}x)")
    except Exception as error:  # noqa: BLE001 - report, do not fail the benchmark
        print(f"   torch.compile failed: {type(error).__name__}: {str(error)[:200]}")


if __name__ == "__main__":
    main()
