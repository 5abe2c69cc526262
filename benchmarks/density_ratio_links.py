"""Density-Ratio Fitting: which link keeps the plug-in ``E_p[log r_hat]`` on the MI staircase?

The least-squares fit ``max E_p[r_hat] - 1/2 E_q[r_hat^2]`` (PD paper, Eq. 6) weights a pair by ``r_hat``: a joint
pair whose ratio the critic sends towards 0 barely matters to the fit, but it costs the plug-in ``log r_hat``. With
``r_hat = softplus(f)`` (or ``exp(f)``) the gradient that would lift such a pair is ``sigmoid(f)`` (or ``e^f``): it
vanishes once ``f`` is very negative, and those pairs stay there. With the raw score (``identity``, the PD paper's
public MI code: ``log clamp(f, 1e-4)``) the gradient of ``E_p[r_hat]`` is 1 for every joint pair.

Each run is the protocol's plain training loop (correlated Gaussian or Cubic, d = 20, batch 64, Adam 5e-4, a 2 x 256
joint or separable critic, levels 2-10 nats) with one :class:`~pdlightning.bounds.DensityRatioFitting`; per level it
reports the mean training estimate and the share of joint pairs at the floor (``r_hat <= min_ratio``) over the
level's last 10% of steps. One process per run, ``--jobs`` at a time, one torch thread each::

    OMP_NUM_THREADS=1 python benchmarks/density_ratio_links.py --steps-per-level 1000 --jobs 2 \\
        --out docs/results/density_ratio_links.md
"""

from __future__ import annotations

import argparse
import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from machine import load_average, machine, revision
from pdlightning.bounds import DensityRatioFitting
from pdlightning.bounds.base import PairScores
from pdlightning.critics import JointCritic, SeparableCritic
from pdlightning.data.gaussian import sample_correlated_gaussian

LEVELS = (2.0, 4.0, 6.0, 8.0, 10.0)


def run(task: str, critic_kind: str, link: str, steps_per_level: int, seed: int) -> dict:
    """One staircase: per level, the mean training estimate and the share of joint pairs at the floor."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    critic = SeparableCritic(20, 20) if critic_kind == "separable" else JointCritic(20, 20)
    bound = DensityRatioFitting(link=link)  # type: ignore[arg-type]
    floor = bound.min_log_ratio
    optimizer = torch.optim.Adam(critic.parameters(), lr=5e-4)
    data = torch.Generator().manual_seed(10_000 + seed)
    tail = max(1, steps_per_level // 10)
    means, at_floor = [], []
    start = time.perf_counter()
    for level in LEVELS:
        estimates, floored = [], []
        for step in range(steps_per_level):
            x, y = sample_correlated_gaussian(64, 20, level, data, cubic=task == "cubic")
            pairs = PairScores.from_matrix(critic.cross(x, y))
            out = bound(pairs)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            estimates.append(float(out.mi))
            if step >= steps_per_level - tail:
                floored.append(float((bound.log_ratio(pairs.joint.detach()) <= floor + 1e-6).float().mean()))
        means.append(sum(estimates) / len(estimates))
        at_floor.append(sum(floored) / len(floored))
    return {
        "task": task,
        "critic": critic_kind,
        "link": link,
        "seed": seed,
        "means": means,
        "at_floor": at_floor,
        "seconds": time.perf_counter() - start,
    }


def page(results: list[dict], args: argparse.Namespace, wall: float) -> str:
    header = "| task | critic | link | " + " | ".join(f"{level:g} nats" for level in LEVELS) + " |"
    rule = "|---|---|---|" + "---|" * len(LEVELS)
    lines = [
        "# Density-Ratio Fitting: the link and the plug-in on the MI staircase",
        "",
        f"`python benchmarks/density_ratio_links.py --steps-per-level {args.steps_per_level} --seeds "
        f"{' '.join(map(str, args.seeds))} --jobs {args.jobs}` on {machine()}, load average {load_average()} at the "
        f"end, revision {revision()}; {wall:.0f} s wall. d = 20, batch 64, Adam 5e-4, 2 x 256 critics; "
        f"{args.steps_per_level} steps per level (the papers' protocol: 4,000).",
        "",
        "Mean training estimate per level (nats; the truth is the level), averaged over seeds; in brackets the share "
        "of joint pairs whose ratio sits at the plug-in's floor `min_ratio = 1e-6` over the level's last 10% of steps "
        "(each floored pair reads log 1e-6 = -13.8 nats).",
        "",
        header,
        rule,
    ]
    key = lambda r: (r["task"], r["critic"], r["link"])  # noqa: E731
    for (task, critic, link), group in itertools.groupby(sorted(results, key=key), key=key):
        runs = list(group)
        cells = []
        for i in range(len(LEVELS)):
            mean = sum(r["means"][i] for r in runs) / len(runs)
            floor = sum(r["at_floor"][i] for r in runs) / len(runs)
            cells.append(f"{mean:.2f} ({floor:.0%})")
        lines.append(f"| {task} | {critic} | {link} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["gaussian"], choices=["gaussian", "cubic"])
    parser.add_argument("--critics", nargs="+", default=["joint", "separable"], choices=["joint", "separable"])
    parser.add_argument("--links", nargs="+", default=["identity", "softplus", "exp"])
    parser.add_argument("--steps-per-level", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the markdown page here (default: stdout only)")
    args = parser.parse_args()
    configs = list(itertools.product(args.tasks, args.critics, args.links, [args.steps_per_level], args.seeds))
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run, *zip(*configs)))
    text = page(results, args, time.perf_counter() - start)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
