"""Torch operations per training step against the number of members K (issue: one estimation engine).

On a GPU every torch operation is a kernel launch, and a step of small critics is bound by launches, not
arithmetic; counting the operations of a step on the CPU (``torch.profiler``, one thread) is a proxy for that cost
that any machine can check. For the joint and the separable critic (the protocol's 2 x 256, d = 20, batch 64) and
K = 1 (SMILE tau=5), 8 (the report's 8 default estimators), 32 and 128 (those 8 x 4 and x 16 seeds), one
``MIEstimationModule`` is fitted in Lightning and one step is profiled: every ``aten::`` operation recorded between
the step's ``on_train_batch_start`` and ``on_train_batch_end`` (forward, backward, the guard, the optimiser, the
record), nested calls included. Two steps are counted: one that logs (one host transfer, the scalars to the loggers)
and one that does not (``log_every_n_steps``). The critic runs as one stacked call for all members (``chunk_size = K``:
the GPU's setting; on a CPU the joint critic's default loops over members for cache reasons, which only changes the
critic's count; the CPU's blocked joint grid of :mod:`pdlightning.critics.fused_joint` is switched off, since a GPU
does not take it), the gradient check is the GPU's element-wise one, and the optimiser makes the masked passes a GPU
makes (on a CPU the member-aware Adam instead reads the update mask on the host and calls torch's fused kernel on the
members' rows: K views and K host reads, no kernel launches, so not what this proxy is for). Targets: K = 128 at most 1.25 x K = 8, and K = 8 at most
1,500.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/step_ops.py [--out docs/results/step_ops.md]``
"""

from __future__ import annotations

import argparse
import platform
import warnings
from collections import Counter
from typing import Any, Optional

import lightning as L
import torch
from torch.profiler import ProfilerActivity, profile

from pdlightning.critics import JointCritic, SeparableCritic, fused_joint
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import Member, MIEstimationModule

DEFAULT_ESTIMATORS = (
    "infonce",
    "nwj",
    "smile_tau1",
    "smile_tau5",
    "smile_tauinf",
    "remine",
    "pd_classifier",
    "pd_ratio_fitting",
)
DIM, BATCH = 20, 64


def members(k: int) -> list[Any]:
    """K = 1: SMILE tau=5; otherwise the 8 defaults x K/8 seeds."""
    if k == 1:
        return ["smile_tau5"]
    return [Member(key, seed=s) for s in range(k // len(DEFAULT_ESTIMATORS)) for key in DEFAULT_ESTIMATORS]


def critic(kind: str) -> torch.nn.Module:
    if kind == "joint":
        return JointCritic(DIM, DIM, [256, 256])
    return SeparableCritic(DIM, DIM, [256, 256], embed_dim=32)


class Profiled(L.Callback):
    """Profiles training step ``step``: every aten operation from its batch start to the end of the module's own
    ``on_train_batch_end`` (where a logging step logs), which runs after the callbacks'."""

    def __init__(self, module: L.LightningModule, step: int) -> None:
        self.step = step
        self.profiler: Optional[profile] = None
        self.count: Optional[int] = None
        self.top: list[tuple[str, int]] = []
        end = module.on_train_batch_end

        def on_train_batch_end(*args: Any, **kwargs: Any) -> None:
            end(*args, **kwargs)
            self._stop()

        module.on_train_batch_end = on_train_batch_end  # type: ignore[method-assign]

    def on_train_start(self, trainer: L.Trainer, *args: Any) -> None:
        for optimizer in trainer.optimizers:
            if hasattr(optimizer, "fused"):
                optimizer.fused = False  # the GPU's path (module docstring)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            self.profiler = profile(activities=[ProfilerActivity.CPU])
            self.profiler.__enter__()

    def _stop(self) -> None:
        if self.profiler is not None and self.count is None:
            self.profiler.__exit__(None, None, None)
            names = Counter(e.name for e in self.profiler.events() if e.name.startswith("aten::"))
            self.count = sum(names.values())
            self.top = names.most_common(8)
            self.profiler = None


def count(kind: str, k: int, logging: bool) -> tuple[int, list[tuple[str, int]]]:
    """aten operations of one step of a K-member fit (a logging step when ``logging``)."""
    torch.manual_seed(0)
    module = MIEstimationModule(
        critic=critic(kind), members=members(k), summary=False, level_snapshots=False, chunk_size=max(k, 1)
    )
    module.elementwise_finiteness = True  # the GPU's gradient check (module docstring)
    data = CorrelatedGaussianDataModule(dim=DIM, mi_schedule=[2.0], steps_per_level=8, batch_size=BATCH, seed=0)
    probe = Profiled(module, step=5)  # after the first steps' one-time work (optimiser state, caches)
    trainer = L.Trainer(
        max_steps=7,
        logger=L.pytorch.loggers.CSVLogger(save_dir="/tmp/step_ops_logs") if logging else False,
        log_every_n_steps=1 if logging else 1000,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator="cpu",
        callbacks=[probe],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, data)
    assert probe.count is not None
    return probe.count, probe.top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--out", default=None, help="also write the table as markdown to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fused_joint.ENABLED = False  # the GPU's path: the CPU's blocked joint grid (more, cheaper ops) is not the proxy
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    rows = []
    for kind in ("joint", "separable"):
        for k in args.members:
            quiet, top = count(kind, k, logging=False)
            logged, _ = count(kind, k, logging=True)
            rows.append((kind, k, quiet, logged))
            print(
                f"{kind:9} K={k:4}: {quiet:6} ops (step that logs nothing), {logged:6} ops (logging step)", flush=True
            )
            print("           most frequent: " + ", ".join(f"{n} x{c}" for n, c in top[:5]), flush=True)
    lines = [
        f"Torch operations per training step (`benchmarks/step_ops.py`, torch.profiler, {cpu}, one thread, torch "
        f"{torch.__version__}); critic 2 x 256 (separable: two such nets, 32-d embeddings), d = {DIM}, batch {BATCH}.",
        "",
        "| critic | K | ops, step that logs nothing | ops, logging step | vs K = 8 |",
        "|---|---|---|---|---|",
    ]
    for kind, k, quiet, logged in rows:
        base = next((q for c, kk, q, _ in rows if c == kind and kk == 8), None)
        ratio = (
            f"{quiet / base:.2f}x / {logged / next(lg for c, kk, _, lg in rows if c == kind and kk == 8):.2f}x"
            if base
            else "-"
        )
        lines.append(f"| {kind} | {k} | {quiet:,} | {logged:,} | {ratio} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table)


if __name__ == "__main__":
    main()
