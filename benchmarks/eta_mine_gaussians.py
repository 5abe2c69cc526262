"""η-MINE's Gaussian experiment at a CPU budget (Mroueh et al., "Improved Mutual Information Estimation", AAAI 2021,
Sec. 5 and Fig. 3 left): MI of Gaussians with a random mean and a random SPD covariance, joint dimension d = 2, 10,
20 (X and Y d/2 each), 5,000 training and 1,000 held-out pairs (one fixed sample per d), every estimator run with
several seeds (critic initialisation and batch order; the sample and the split stay fixed, as in the paper's "each
estimator was run 10 times"). Reported: mean ± std over seeds of the held-out estimate against the closed-form MI, and
the training estimate against steps.

Fits per d (all on one ``ArraysDataModule`` of the sample, ``data: replicas``, joint critic, Adam):

- ``main``: DV-MINE (``dv``), f-MINE (``nwj``), η-MINE (``eta_dv``) and a-MINE (``TUBA`` on a
  ``BaselineShiftedCritic``: TUBA with a learned ``a(y)``) x seeds, one ``MIEstimationModule`` fit, one shuffled
  marginal pair per joint pair (``marginal_pairs: derangement``, Algorithm 1's marginal minibatch);
- ``infonce``: InfoNCE x seeds (its bound needs every in-batch pair: ``marginal_pairs: all``, 128x the pairs);
- ``bcd``: η-MINE by block-coordinate descent (``configs/mi/bounds/eta_mine_bcd.yaml``'s module settings: 5 critic
  steps per η step, η's rate 5e-3) x seeds;
- η-MINE-convex: for every η-MINE member of ``main``, ``EtaDVConvex`` on ``CriticFeatures`` of its trained critic
  (read back from the fit's checkpoint), fitted by L-BFGS on the 5,000 training pairs, its η-DV value on the 1,000
  held-out pairs.

The held-out estimate of a neural member is the module's ``test`` (the bound on the 1,000 held-out pairs in 4
batches of 250, every in-batch pair scored). Everything a run produces goes under ``--work`` (``results.json``, the
per-step training estimates, the checkpoints); ``--report-only`` rebuilds the page and the PNG from it.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/eta_mine_gaussians.py \\
        --work /tmp/eta_mine_gaussians --out docs/results/eta_mine_gaussians.md
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import math
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from machine import machine, revision  # benchmarks/machine.py: the script's own folder is on the path

MAIN = ("dv", "nwj", "eta_dv", "a_mine")
LABELS = {
    "eta_dv": "η-MINE (`eta_dv`)",
    "eta_mine_bcd": "η-MINE, block-coordinate (`eta_mine_bcd`)",
    "eta_convex": "η-MINE-convex (Φ = trained η-MINE critic)",
    "dv": "DV-MINE (`dv`)",
    "nwj": "f-MINE (`nwj`)",
    "infonce": "InfoNCE (`infonce`)",
    "a_mine": "a-MINE (`TUBA` + learned a(y))",
}
ORDER = ("eta_dv", "eta_mine_bcd", "eta_convex", "dv", "nwj", "infonce", "a_mine")
CURVE_STEPS = (100, 250, 500, 1000, 1500, 2000, 3000, 4000)


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def sample(dim: int, n: int) -> tuple[Any, Any, float, str]:
    """The fixed sample of joint dimension ``dim``: the task drawn with seed 0, ``n`` pairs drawn with seed 1."""
    import torch

    from pdlightning.tasks import RandomGaussianTask

    task = RandomGaussianTask(dim, seed=0)
    drawn = task.sample(n, generator=1, dtype=torch.float64)
    return drawn.x.numpy(), drawn.y.numpy(), task.mi, task.name


def known_mi_arrays(true_mi: float, **kwargs: Any) -> Any:
    """An ``ArraysDataModule`` of the fixed sample whose batches also carry the closed-form MI as ``mi`` (as a task
    datamodule's do), so the module records each member's per-step training estimate (``stream_path``) and its held-out
    rows carry the bias."""
    from pdlightning.data import ArraysDataModule

    class KnownMIArrays(ArraysDataModule):
        def replica_batch(self, seed: int, step: int, stream: Any = None) -> dict[str, Any]:
            batch = super().replica_batch(seed, step) if stream is None else super().replica_batch(seed, step, stream)
            return {**batch, "mi": true_mi}

    return KnownMIArrays(**kwargs)


def fit(
    name: str,
    members: list[Any],
    data: Any,
    args: argparse.Namespace,
    directory: Path,
    marginal_pairs: Literal["all", "derangement"],
    **module_settings: Any,
) -> dict[str, Any]:
    """One ``MIEstimationModule`` fit of ``members`` and its ``test``: each member's held-out estimate, the per-step
    training estimates (CSV), the checkpoint, wall and CPU seconds."""
    import lightning as L
    import torch

    from pdlightning.critics import JointCritic
    from pdlightning.modules import MIEstimationModule

    directory.mkdir(parents=True, exist_ok=True)
    stream = directory / f"{name}_stream.csv"
    module = MIEstimationModule(
        critic=JointCritic(data.x_dim, data.y_dim, args.hidden),
        members=members,
        data="replicas",
        optimizer=functools.partial(torch.optim.Adam, lr=args.lr),
        non_finite="skip",
        on_member_divergence="retire",
        summary=False,
        stream_path=str(stream),
        marginal_pairs=marginal_pairs,
        **module_settings,
    )
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=50,
        default_root_dir=str(directory),
    )
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(module, datamodule=data)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    trainer.test(module, datamodule=data, verbose=False)
    checkpoint = directory / f"{name}.ckpt"
    trainer.save_checkpoint(str(checkpoint))
    held_out = {
        r.member: (r.interval.estimate if r.status == "ok" and r.interval is not None else None)
        for r in module.held_out_results["test"]
        if r.group is None
    }
    return {
        "held_out": held_out,
        "stream": str(stream),
        "checkpoint": str(checkpoint),
        "fit_seconds": fit_wall,
        "fit_cpu_seconds": fit_cpu,
        "total_seconds": time.perf_counter() - wall,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "members": len(members),
    }


def dimension_data(dim: int, replicas: int, args: argparse.Namespace) -> Any:
    """The ``ArraysDataModule`` of dimension ``dim``'s fixed sample and split (``replicas`` batch streams)."""
    x, y, mi, _ = sample(dim, args.train + args.test)
    return known_mi_arrays(
        mi,
        x=x,
        y=y,
        test_fraction=args.test / (args.train + args.test),
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        steps=args.steps,
        seed=0,
        replicas=replicas,
    )


def convex_fits(result: dict[str, Any], data: Any, lam: float, args: argparse.Namespace) -> dict[str, Any]:
    """η-MINE-convex with ridge ``lam`` on each trained η-MINE critic's feature layer (read from the main fit's
    checkpoint): ``(w, η)`` by L-BFGS on the training pairs, the η-DV value on the held-out pairs."""
    from pdlightning.convex import CriticFeatures, EtaDVConvex
    from pdlightning.critics import JointCritic

    train, test = data.train_pairs, data.test_pairs
    convex = {}
    for s in range(args.seeds):
        start = time.perf_counter()
        features = CriticFeatures.from_checkpoint(
            result["fits"]["main"]["checkpoint"],
            critic=JointCritic(result["x_dim"], result["y_dim"], args.hidden),
            member=f"eta_dv_s{s}",
        )
        model = EtaDVConvex(features, lam=lam)
        solution = model.fit(train["x"], train["y"])
        convex[f"eta_convex_s{s}"] = {
            "held_out": model.estimate(test["x"], test["y"]),
            "train_value": solution.value,
            "iterations": solution.iterations,
            "converged": solution.converged,
            "seconds": time.perf_counter() - start,
        }
    return convex


def run_dimension(dim: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from pdlightning.bounds import TUBA
    from pdlightning.critics import BaselineShiftedCritic, JointCritic
    from pdlightning.modules import Member

    torch.set_num_threads(1)
    x, y, mi, task = sample(dim, args.train + args.test)
    directory = args.work / f"d{dim}"

    def data(replicas: int) -> Any:
        return dimension_data(dim, replicas, args)

    main_data = data(args.seeds)
    dx, dy = main_data.x_dim, main_data.y_dim
    seeds = range(args.seeds)
    members: list[Any] = [Member(bound=key, seed=s, replica=s) for key in MAIN if key != "a_mine" for s in seeds]
    for s in seeds:
        torch.manual_seed(s)
        critic = BaselineShiftedCritic(JointCritic(dx, dy, args.hidden), (args.hidden[0],))
        members.append(Member(bound=TUBA(), name=f"a_mine_s{s}", key="a_mine", seed=s, replica=s, critic=critic))
    out: dict[str, Any] = {"dim": dim, "task": task, "true_mi": mi, "x_dim": dx, "y_dim": dy, "fits": {}}
    out["fits"]["main"] = fit("main", members, main_data, args, directory, "derangement")
    print(f"d={dim}: main fit {out['fits']['main']['total_seconds']:.0f} s", flush=True)
    infonce = [Member(bound="infonce", seed=s, replica=s) for s in range(args.infonce_seeds)]
    out["fits"]["infonce"] = fit("infonce", infonce, data(args.infonce_seeds), args, directory, "all")
    print(f"d={dim}: infonce fit {out['fits']['infonce']['total_seconds']:.0f} s", flush=True)
    if args.bcd:
        bcd = [Member(bound="eta_dv", name=f"eta_mine_bcd_s{s}", seed=s, replica=s) for s in seeds]
        out["fits"]["bcd"] = fit(
            "bcd", bcd, data(args.seeds), args, directory, "derangement", critic_updates_per_aux_step=5, aux_lr=5e-3
        )
        print(f"d={dim}: bcd fit {out['fits']['bcd']['total_seconds']:.0f} s", flush=True)
    out["convex"] = convex_fits(out, main_data, args.lam, args)
    print(f"d={dim}: convex fits {sum(c['seconds'] for c in out['convex'].values()):.0f} s", flush=True)
    return out


# ----------------------------------------------------------------------------------------------- the report
def key_of(member: str) -> str:
    return member.rsplit("_s", 1)[0]


def held_out_by_key(result: dict[str, Any]) -> dict[str, list[Optional[float]]]:
    values: dict[str, list[Optional[float]]] = {}
    for fit_result in result["fits"].values():
        for member, value in fit_result["held_out"].items():
            values.setdefault(key_of(member), []).append(value)
    for member, entry in result["convex"].items():
        values.setdefault(key_of(member), []).append(entry["held_out"])
    return values


def curves(result: dict[str, Any], window: int) -> dict[str, dict[int, float]]:
    """Per estimator: the mean over seeds of the training estimate, averaged over the ``window`` steps ending at each
    step (the stream's steps are 0-based: step ``t`` is the estimate after ``t`` updates)."""
    per_member: dict[str, dict[int, float]] = {}
    for fit_result in result["fits"].values():
        with open(fit_result["stream"]) as f:
            for row in csv.DictReader(f):
                member = row.get("member") or "member"
                if row["estimate"] not in ("", "nan"):
                    per_member.setdefault(member, {})[int(row["step"])] = float(row["estimate"])
    out: dict[str, dict[int, float]] = {}
    for member, series in per_member.items():
        key = key_of(member)
        steps = sorted(series)
        for end in CURVE_STEPS:
            chunk = [series[t] for t in steps if end - window < t + 1 <= end]
            if chunk:
                out.setdefault(key, {}).setdefault(end, 0.0)
                out[key][end] += statistics.fmean(chunk)
    counts: dict[str, int] = {}
    for member in per_member:
        counts[key_of(member)] = counts.get(key_of(member), 0) + 1
    return {k: {t: v / counts[k] for t, v in series.items()} for k, series in out.items()}


def mean_std(values: Sequence[Optional[float]]) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "—"
    lost = len(values) - len(finite)
    text = f"{statistics.fmean(finite):.3f} ± {statistics.stdev(finite):.3f}" if len(finite) > 1 else f"{finite[0]:.3f}"
    return text + (f" ({lost} retired)" if lost else "")


def plot(results: list[dict[str, Any]], window: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    for ax, result in zip(axes[0], results):
        for key, series in sorted(curves(result, window).items(), key=lambda kv: ORDER.index(kv[0])):
            steps = sorted(series)
            ax.plot(steps, [series[t] for t in steps], marker="o", ms=3, label=LABELS[key].split(" (")[0])
        ax.axhline(result["true_mi"], color="red", lw=1, label="true MI")
        ax.set_title(f"d = {result['dim']} (true MI {result['true_mi']:.2f})")
        ax.set_xlabel("training step")
        ax.set_xscale("log")
    axes[0][0].set_ylabel(f"training estimate (nats, {window}-step mean)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def report(results: list[dict[str, Any]], args: argparse.Namespace, meta: dict[str, Any]) -> str:
    keys = [k for k in ORDER if any(k in held_out_by_key(r) for r in results)]
    lines = [
        "# η-MINE on Gaussians with random covariances (CPU budget)",
        "",
        'Mroueh et al., "Improved Mutual Information Estimation" (AAAI 2021), Sec. 5 "MI estimation" and Fig. 3 '
        "(left): MI of Gaussians with random means and random SPD covariances, 5K training and 1K test samples, "
        "each estimator run 10 times, mean ± std against the true MI. Reproduced here at a CPU budget by "
        "`benchmarks/eta_mine_gaussians.py`:",
        "",
        "```bash",
        f"OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/eta_mine_gaussians.py --dims {' '.join(map(str, args.dims))} "
        f"--seeds {args.seeds} --infonce-seeds {args.infonce_seeds} --steps {args.steps} \\",
        f"    --work {args.work} --out {args.out}",
        "```",
        "",
        "## Setup",
        "",
        "- **Data** (`pdlightning.tasks.RandomGaussianTask(d, seed=0)`): `Σ = A Aᵀ + 0.1 I` with `A_ij ~ N(0, 1/d)`, "
        "`μ ~ N(0, I)`; X the first d/2 coordinates, Y the rest (the paper's \"2-, 10- and 20-dimensional "
        'Gaussian distributions", read as the joint dimension). True MI `½ log(det Σx det Σy / det Σ)`. One sample of '
        f"{args.train + args.test:,} pairs per d (seed 1), split once into {args.train:,} training and {args.test:,} "
        "held-out pairs; each variable standardised with the training pairs' statistics (`ArraysDataModule`; an affine "
        "map, MI unchanged).",
        f"- **Runs**: {args.seeds} seeds per estimator (critic initialisation and batch order; the sample and split fixed), "
        f"except InfoNCE: {args.infonce_seeds} seeds"
        + (
            " (its bound scores all 128² in-batch pairs, the costliest fit; fewer seeds to fit the budget)"
            if args.infonce_seeds < args.seeds
            else ""
        )
        + ".",
        f"- **Critic**: joint MLP `[x; y]` → {' → '.join(map(str, args.hidden))} → 1 (ReLU), Adam {args.lr:g}, "
        f"batch {args.batch_size}, {args.steps:,} steps (≈{args.steps * args.batch_size / args.train:.0f} passes over "
        "the training pairs). DV-MINE, f-MINE, η-MINE, a-MINE: one shuffled marginal pair per joint pair "
        "(`marginal_pairs: derangement`, Algorithm 1); InfoNCE: every in-batch pair. a-MINE: `TUBA` (log a = 0) on "
        f"`BaselineShiftedCritic` (the same joint critic minus an MLP log a(y), {args.hidden[0]} hidden units), which is "
        "TUBA with a learned a(y) (Poole et al. 2019); the zoo's `tuba` fragment (a learned *scalar* log a) is the η-DV "
        "bound itself, so it is not a separate row. The block-coordinate η-MINE (Algorithm 1) uses "
        "`configs/mi/bounds/eta_mine_bcd.yaml`'s settings: 5 critic steps per η step, η's learning rate 5e-3.",
        f"- **η-MINE-convex**: `EtaDVConvex(CriticFeatures(trained η-MINE critic), lam={args.lam:g})` per seed: the "
        f"critic's last hidden layer ({args.hidden[-1]} features, read with `CriticFeatures.from_checkpoint(..., "
        'member="eta_dv_s<k>")`) as Φ, `(w, η)` by L-BFGS on the training pairs (one shifted marginal pair each), '
        "its η-DV value on the held-out pairs.",
        f"- **Held-out estimate**: the module's `test` on the {args.test:,} held-out pairs in batches of "
        f"{args.eval_batch_size} (every in-batch pair scored: {args.eval_batch_size}·{args.eval_batch_size - 1} marginal "
        "pairs per batch), the mean of the batches' values.",
        f"- **Code**: revision `{args.revision or meta.get('revision') or revision()}` of this repository.",
        f"- **Machine**: {meta['machine']}, shared and loaded (load average {meta['load_min']:.1f} to "
        f"{meta['load_max']:.1f} during the fits; other experiments running); one thread, `nice -n 10`. Total wall "
        f"time {meta['wall_seconds'] / 60:.1f} min ({meta['cpu_seconds'] / 60:.1f} min of CPU).",
        "",
        "## Held-out estimate, mean ± std over seeds (nats)",
        "",
        "| estimator | " + " | ".join(f"d = {r['dim']}" for r in results) + " |",
        "|---|" + "---|" * len(results),
        "| **true MI** | " + " | ".join(f"**{r['true_mi']:.3f}**" for r in results) + " |",
    ]
    for key in keys:
        cells = [mean_std(held_out_by_key(r).get(key, [])) for r in results]
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    lines += ["", "Bias (mean over seeds − true MI, nats):", ""]
    lines += [
        "| estimator | " + " | ".join(f"d = {r['dim']}" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for key in keys:
        cells = []
        for r in results:
            finite = [v for v in held_out_by_key(r).get(key, []) if v is not None and math.isfinite(v)]
            cells.append(f"{statistics.fmean(finite) - r['true_mi']:+.3f}" if finite else "—")
        lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    if any("convex_sensitivity" in r for r in results):
        lams = sorted({lam for r in results for lam in r.get("convex_sensitivity", {})}, key=float)
        lines += [
            "",
            "η-MINE-convex against its ridge λ (the same trained critics' features, refitted; a sensitivity check on "
            f"the held-out pairs, not a choice of λ: the headline row above uses λ = {args.lam:g}, fixed before the "
            "runs). Held-out estimate, mean ± std over seeds, and in brackets the value on the training pairs the fit "
            "maximised:",
            "",
            "| λ | " + " | ".join(f"d = {r['dim']}" for r in results) + " |",
            "|---|" + "---|" * len(results),
        ]
        for lam in lams:
            cells = []
            for r in results:
                fits = r.get("convex_sensitivity", {}).get(lam)
                if not fits:
                    cells.append("—")
                    continue
                train = statistics.fmean(f["train_value"] for f in fits.values())
                cells.append(f"{mean_std([f['held_out'] for f in fits.values()])} [{train:.3f}]")
            lines.append(f"| {lam} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Training estimate against steps",
        "",
        f"Mean over seeds of the training-batch estimate, averaged over the {args.window} steps ending at each step "
        "(the bound on the training minibatch: optimistic once the critic fits the training pairs). PNG: "
        f"`{args.png.name}`.",
        "",
        f"![training estimate against steps]({args.png.name})",
        "",
    ]
    for r in results:
        series = curves(r, args.window)
        steps = [t for t in CURVE_STEPS if t <= args.steps]
        lines += [
            f"d = {r['dim']} (true MI {r['true_mi']:.3f}):",
            "",
            "| estimator | " + " | ".join(f"step {t}" for t in steps) + " |",
            "|---|" + "---|" * len(steps),
        ]
        for key in ORDER:
            if key in series:
                lines.append(
                    f"| {LABELS[key]} | "
                    + " | ".join(f"{series[key][t]:.3f}" if t in series[key] else "—" for t in steps)
                    + " |"
                )
        lines.append("")
    lines += [
        "## Cost",
        "",
        "| d | fit | members | steps | wall (fit + test) | CPU (fit) | load before → after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, f in r["fits"].items():
            lines.append(
                f"| {r['dim']} | {name} | {f['members']} | {args.steps:,} | {f['total_seconds']:.0f} s | "
                f"{f['fit_cpu_seconds']:.0f} s | {f['load_before']:.1f} → {f['load_after']:.1f} |"
            )
        conv = r["convex"].values()
        lines.append(
            f"| {r['dim']} | η-MINE-convex | {len(conv)} | L-BFGS {min(c['iterations'] for c in conv)}–"
            f"{max(c['iterations'] for c in conv)} iterations, "
            f"{sum(bool(c['converged']) for c in conv)}/{len(conv)} converged | "
            f"{sum(c['seconds'] for c in conv):.0f} s | — | — |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 10, 20])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--infonce-seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-batch-size", type=int, default=250)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lam", type=float, default=1e-3, help="η-MINE-convex's ridge λ")
    parser.add_argument("--train", type=int, default=5000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--window", type=int, default=50, help="steps averaged per point of the curves")
    parser.add_argument("--no-bcd", dest="bcd", action="store_false", help="skip the block-coordinate η-MINE fit")
    parser.add_argument("--work", type=Path, default=Path("/tmp/eta_mine_gaussians"))
    parser.add_argument("--out", type=Path, default=Path("docs/results/eta_mine_gaussians.md"))
    parser.add_argument("--png", type=Path, default=None, help="default: --out with .png")
    parser.add_argument("--revision", default=None, help="the runs' code revision (default: recorded by the run)")
    parser.add_argument("--report-only", action="store_true", help="rebuild the page from --work/results.json")
    parser.add_argument(
        "--convex-sensitivity",
        type=float,
        nargs="+",
        default=None,
        metavar="LAM",
        help="with --report-only: refit η-MINE-convex with each ridge λ on the saved critics (a sensitivity table, "
        "next to the headline's --lam)",
    )
    args = parser.parse_args()
    started_revision = revision()  # the code the runs use (HEAD may move while they run)
    args.png = args.png or args.out.with_suffix(".png")
    quiet()
    results_path = args.work / "results.json"
    if args.report_only:
        saved = json.loads(results_path.read_text())
        results, meta = saved["results"], saved["meta"]
        if args.convex_sensitivity:
            for result in results:
                data = dimension_data(result["dim"], args.seeds, args)
                result["convex_sensitivity"] = {
                    f"{lam:g}": convex_fits(result, data, lam, args) for lam in args.convex_sensitivity
                }
            results_path.write_text(json.dumps({"results": results, "meta": meta}, indent=1))
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        wall, cpu = time.perf_counter(), time.process_time()
        loads = [os.getloadavg()[0]]
        results = []
        for dim in args.dims:
            results.append(run_dimension(dim, args))
            loads += [f["load_before"] for f in results[-1]["fits"].values()]
            loads += [f["load_after"] for f in results[-1]["fits"].values()]
            meta = {
                "machine": machine(),
                "revision": started_revision,
                "load_min": min(loads),
                "load_max": max(loads),
                "wall_seconds": time.perf_counter() - wall,
                "cpu_seconds": time.process_time() - cpu,
            }
            results_path.write_text(json.dumps({"results": results, "meta": meta}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, args.window, args.png)
    args.out.write_text(report(results, args, meta))
    print(f"written {args.out} and {args.png}")


if __name__ == "__main__":
    main()
