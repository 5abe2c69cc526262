"""Speed of the one estimation engine on a CPU; every ratio is measured side by side in one run.

1. Joint critic (2 x 256, d = 20, batch 64), forward + backward for K members: the explicit batched layer (one
   batched GEMM per layer), ``vmap`` over the members, and a loop over members (on autograd's plain path, and with
   the blocked grid of :mod:`pdlightning.critics.fused_joint`, the CPU default), as a fraction of ``torch.mm``'s rate
   at the dominant GEMM shape ``[n^2, 256] x [256, 256]`` (three such GEMMs per member: forward and two in backward).
2. Training-step overhead: ``MIEstimationModule`` in ``Trainer.fit`` (the guard, the records, the member-aware Adam,
   TensorBoard logging every step as the protocol's config does, and every 50 steps) against a bare PyTorch loop
   with the same math (the same stacked critic and bounds, ``torch.optim.Adam`` on the same parameters, the same
   batches, nothing else), for the separable critic at K = 1 (SMILE tau=5) and K = 33 (the protocol's 11
   estimators x 3 seeds).
3. Training step of the joint critic in ``Trainer.fit`` at K = 1 and K = 8, with the blocked grid (the CPU
   default) and with autograd's plain path.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/engine_speed.py [--steps 60] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from typing import Any, Callable

import lightning as L
import torch

from pdlightning.critics import JointCritic, SeparableCritic, fused_joint
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import Member, MIEstimationModule
from pdlightning.modules.bound_stack import BoundStack
from pdlightning.modules.members import resolve_members
from pdlightning.modules.mi_estimation import matrix_to_pairs
from pdlightning.modules.stacking import StackedCritic

DIM, BATCH, HIDDEN = 20, 64, 256
PROTOCOL = (
    "infonce",
    "nwj",
    "smile_tau1",
    "smile_tau5",
    "smile_tauinf",
    "remine",
    "pd_classifier",
    "pd_ratio_fitting",
    "pd_variational",
    "pd_matching_1",
    "pd_matching_2",
)


def median_time(fn: Callable[[], None], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------- 1. GEMM rate
def critic_rates(k: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    critics = [JointCritic(DIM, DIM, [HIDDEN, HIDDEN]) for _ in range(k)]
    x, y = torch.randn(BATCH, DIM), torch.randn(BATCH, DIM)
    a, b = torch.randn(BATCH * BATCH, HIDDEN), torch.randn(HIDDEN, HIDDEN)
    mm = median_time(lambda: torch.mm(a, b), repeats)
    rates = {}
    for name, chunk, fused in (
        ("explicit batched layer", k, False),
        ("loop, plain autograd", 1, False),
        ("loop, blocked grid (the CPU default)", 1, True),
    ):
        stack = StackedCritic(critics, chunk_size=chunk)

        def step(stack: StackedCritic = stack) -> None:
            stack(x, y).sum().backward()
            stack.flat.grad = None

        fused_joint.ENABLED = fused
        rates[name] = 3 * k * mm / median_time(step, repeats)
        fused_joint.ENABLED = True
    if k > 1:
        stack = StackedCritic(critics)
        vmapped = lambda: stack.vmap(lambda c, p, q: c(p, q), x, y)  # noqa: E731

        def step_vmap() -> None:
            vmapped().sum().backward()
            stack.flat.grad = None

        rates["vmap"] = 3 * k * mm / median_time(step_vmap, repeats)
    return rates


# ---------------------------------------------------------------------------------- 2. step overhead
def members_of(k: int) -> list[Any]:
    if k == 1:
        return ["smile_tau5"]
    if k < len(PROTOCOL):
        return list(PROTOCOL[:k])
    return [Member(key, seed=s) for s in range(k // len(PROTOCOL)) for key in PROTOCOL]


def separable() -> SeparableCritic:
    return SeparableCritic(DIM, DIM, [HIDDEN, HIDDEN], embed_dim=32)


def data() -> CorrelatedGaussianDataModule:
    return CorrelatedGaussianDataModule(dim=DIM, mi_schedule=[4.0], steps_per_level=10_000, batch_size=BATCH, seed=0)


class StepTimer(L.Callback):
    """Median wall time of the training steps after the first ``skip``."""

    def __init__(self, skip: int = 5) -> None:
        self.skip, self.times, self._start = skip, [], 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step > self.skip:
            self.times.append(time.perf_counter() - self._start)


def joint() -> JointCritic:
    return JointCritic(DIM, DIM, [HIDDEN, HIDDEN])


def lightning_step(k: int, steps: int, log_every: int, critic: Callable[[], Any] = separable) -> float:
    torch.manual_seed(0)
    module = MIEstimationModule(critic=critic(), members=members_of(k), summary=False, level_snapshots=False)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(
            max_steps=steps,
            logger=L.pytorch.loggers.TensorBoardLogger(directory, name="bench"),
            log_every_n_steps=log_every,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            accelerator="cpu",
            callbacks=[timer],
        ).fit(module, data())
    return statistics.median(timer.times)


def bare_step(k: int, steps: int) -> float:
    """The same math without Lightning: stacked critic, the members' bounds, torch Adam, the same batches."""
    torch.manual_seed(0)
    resolved = resolve_members(members_of(k), default_seed=0)
    critics = []
    for member in resolved:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(member.id.seed)
            critics.append(separable())
    stack = StackedCritic(critics)
    bounds = BoundStack([m.bound for m in resolved], [m.estimator for m in resolved])
    optimizer = torch.optim.Adam([*stack.parameters(), *bounds.parameters()], lr=5e-4)
    source = data()
    times = []
    for step in range(steps):
        batch = source.batch_at(step)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outputs = bounds(*matrix_to_pairs(stack(batch["x"], batch["y"])))
        outputs.loss.sum().backward()
        optimizer.step()
        if step > 5:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    print(f"{cpu}, one thread, torch {torch.__version__}; load average {open('/proc/loadavg').read().split()[:3]}\n")
    print("1. Joint critic fwd+bwd as a fraction of torch.mm's rate at [n^2, 256] x [256, 256]:")
    for k in (1, 5, 8):
        rates = critic_rates(k, args.repeats)
        print(f"   K={k:2}: " + ", ".join(f"{name} {rate:.0%}" for name, rate in rates.items()), flush=True)
    print("\n2. Training step, separable critic: Lightning fit vs a bare PyTorch loop with the same math")
    for k in (1, 33):
        bare = bare_step(k, args.steps)
        every = lightning_step(k, args.steps, 1)
        sparse = lightning_step(k, args.steps, 50)
        print(
            f"   K={k:2}: bare {bare * 1e3:6.2f} ms; fit, logging every step {every * 1e3:6.2f} ms "
            f"({every / bare:.2f}x); every 50 steps {sparse * 1e3:6.2f} ms ({sparse / bare:.2f}x)",
            flush=True,
        )
    print("\n3. Training step, joint critic, Lightning fit logging every step: the blocked grid against plain autograd")
    for k in (1, 8):
        times = {}
        for name, fused in (("plain autograd", False), ("blocked grid", True)):
            fused_joint.ENABLED = fused
            times[name] = lightning_step(k, max(20, args.steps // 3), 1, critic=joint)
        fused_joint.ENABLED = True
        plain, blocked = times["plain autograd"], times["blocked grid"]
        print(
            f"   K={k:2}: plain {plain * 1e3:6.1f} ms, blocked {blocked * 1e3:6.1f} ms ({plain / blocked:.2f}x faster)"
        )


if __name__ == "__main__":
    main()
