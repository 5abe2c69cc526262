"""High-MI results (issue 22): the TRE protocol's correlated Gaussians (10 / 20 / 40 / 80 nats in d = 20 / 40 / 80 /
160; Rhodes, Xu & Gutmann, NeurIPS 2020) and their non-Gaussian versions of the ``high-mi`` suite, with lower,
plug-in and upper estimators in ONE fit per task, so that ``test`` prints the bracket.

Per task: one :class:`~pdlightning.modules.MIEstimationModule` whose members are the estimator keys (fragments
``mi/bounds/<key>.yaml``) x ``--seeds`` seeds, each seed on its own replica stream of fresh training pairs
(:class:`~pdlightning.data.TaskDataModule` with ``stream=True``: the population limit, as the TRE paper's large
samples), then ``trainer.test`` on ``--n-test`` held-out pairs (batches of 500). The members:

- InfoNCE, SMILE tau=5, NWJ, f-DIME (KL) on the module critic: a separable critic (two MLPs ``--hidden`` wide,
  embedding 64; its ``n^2`` in-batch scores are one matrix product, what makes them affordable here);
- TRE on its own :class:`~pdlightning.critics.TelescopingCritic` (quadratic features, linear-mixing waymarks; the
  waymark count by level, ``WAYMARKS``), learning through its bridge loss;
- CLUB and L1Out on the fragments' conditional Gaussian ``q(y|x)`` (MLP 256 x 256), fitted by maximum likelihood.

Writes ``<out>/<task>.json`` (every member's held-out estimate and interval, the bracket, the wall times) and, with
``--render``, the markdown tables of all finished tasks to stdout.

    OMP_NUM_THREADS=1 python benchmarks/high_mi.py --out reports/high_mi --tasks tre-normal-20-10.0 --steps 1500 --seeds 2
    python benchmarks/high_mi.py --out reports/high_mi --render
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from pathlib import Path
from statistics import fmean
from typing import Any, Union

import lightning as L
import torch

from pdlightning.critics import SeparableCritic, TelescopingCritic
from pdlightning.data import TaskDataModule
from pdlightning.modules import Member, MIEstimationModule
from pdlightning.modules.reporting import brackets
from pdlightning.tasks import get_task

ESTIMATORS = ("infonce", "smile_tau5", "nwj", "fdime_kl", "tre", "club", "l1out")
#: TRE's waymark count (bridges) by true MI: about 5-7 nats a bridge (the paper raises the count with the MI).
WAYMARKS = {10.0: 4, 20.0: 4, 40.0: 6, 80.0: 10}
EVAL_BATCH = 500


def tre_critic(dim: int, mi: float, hidden: int) -> TelescopingCritic:
    waymarks = WAYMARKS.get(mi, max(4, math.ceil(mi / 8)))
    return TelescopingCritic(dim, dim, num_waymarks=waymarks, hidden_dims=[hidden, hidden], quadratic_features="full")


def run_task(task_id: str, args: argparse.Namespace) -> dict[str, Any]:
    task = get_task(task_id)
    dim, mi = task.x_dim, float(task.mi)
    estimators = [e for e in args.estimators if not (mi >= 80 and e in args.skip_at_80)]
    seeds = args.seeds
    torch.manual_seed(args.seed)
    members: list[Union[str, Member]] = [
        Member(
            bound=key,
            seed=args.seed + s,
            replica=s if seeds > 1 else None,
            critic=tre_critic(dim, mi, args.tre_hidden) if key == "tre" else None,
        )
        for s in range(seeds)
        for key in estimators
    ]
    module = MIEstimationModule(
        SeparableCritic(dim, dim, [args.hidden, args.hidden], embed_dim=64),
        members=members,
        data="replicas" if seeds > 1 else "shared",
        optimizer=lambda params: torch.optim.Adam(params, lr=args.lr),
        on_member_divergence="retire",
        summary=False,
        stream_path=str(Path(args.out) / task_id / "estimates.csv"),  # every member's training estimate per step
    )
    data = TaskDataModule(
        task_id,
        n_samples=2 * args.n_test,
        test_fraction=0.5,
        seed=args.seed,
        batch_size=args.batch_size,
        steps=args.steps,
        stream=True,
        eval_batch_size=EVAL_BATCH,
        replicas=seeds if seeds > 1 else None,
    )
    run_dir = Path(args.out) / task_id
    trainer = L.Trainer(
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        default_root_dir=str(run_dir),
    )
    start = time.perf_counter()
    trainer.fit(module, data)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.test(module, data, verbose=False)
    test_s = time.perf_counter() - start
    results = module.held_out_results["test"]
    rows = []
    for r in results:
        row: dict[str, Any] = {"member": r.member, "key": r.key, "seed": r.seed, "group": r.group, "status": r.status}
        if r.interval is not None:
            row.update(estimate=r.interval.estimate, low=r.interval.low, high=r.interval.high)
        if r.member is not None and r.group is None and r.interval is not None:
            row["side"] = module._bound_side(r)
        rows.append(row)
    record = {
        "task": task_id,
        "dim": dim,
        "true_mi": mi,
        "estimators": estimators,
        "seeds": seeds,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "hidden": args.hidden,
        "tre_hidden": args.tre_hidden,
        "tre_waymarks": WAYMARKS.get(mi, max(4, math.ceil(mi / 8))),
        "n_test": args.n_test,
        "fit_s": fit_s,
        "test_s": test_s,
        "rows": rows,
        "brackets": [b.as_dict() for b in brackets(results, module._bound_side)],
    }
    (Path(args.out) / f"{task_id}.json").write_text(json.dumps(record, indent=1))
    return record


def _fmt(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.2f}"


def render(out: Path) -> str:
    """Markdown: per task, each estimator's held-out estimate per seed (and the mean), the bracket, wall time."""
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    order = {t: i for i, t in enumerate(get_task_order())}
    records.sort(key=lambda r: order.get(r["task"], 99))
    keys = [k for k in ESTIMATORS if any(k in r["estimators"] for r in records)]
    lines = ["| task | d | true MI | " + " | ".join(keys) + " | bracket (lower ≤ MI ≤ upper) | fit / test s |"]
    lines.append("|" + "---|" * (len(keys) + 5))
    for r in records:
        cells = []
        for k in keys:
            values = [row.get("estimate") for row in r["rows"] if row["key"] == k and row["group"] is None]
            values = [v for v in values if v is not None]
            if not values:
                cells.append("—" if k not in r["estimators"] else "retired")
                continue
            mean = sum(values) / len(values)
            each = " / ".join(_fmt(v) for v in values)
            cells.append(f"**{_fmt(mean)}** ({each})" if len(values) > 1 else _fmt(mean))
        bracket = "—"
        if r["brackets"]:
            b = r["brackets"][0]
            lo, up = b["lower"], b["upper"]
            holds = lo["estimate"] <= r["true_mi"] <= up["estimate"]
            bracket = f"{_fmt(lo['estimate'])} ({lo['member']}) ≤ MI ≤ {_fmt(up['estimate'])} ({up['member']}): " + (
                "CROSSED" if b["crossed"] else "holds" if holds else "misses"
            )
        lines.append(
            f"| {r['task']} | {r['dim']} | {r['true_mi']:g} | "
            + " | ".join(cells)
            + f" | {bracket} | {r['fit_s']:.0f} / {r['test_s']:.0f} |"
        )
    return "\n".join(lines)


#: Published estimates on the same four Gaussian levels, as issue 22 quotes them (a flow-matching estimator; a
#: diffusion-bridge estimator at 80 nats only).
PUBLISHED = {
    "flow matching (published)": {10.0: 10.5, 20.0: 21.1, 40.0: 41.7, 80.0: 90.8},
    "diffusion bridge (published)": {80.0: 81.2},
}


def plot(out: Path, path: Path) -> None:
    """Estimate against the true MI on the Gaussian levels (``tre-normal-*``): each estimator's seed mean, the
    published generative estimators, and the identity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(p.read_text()) for p in sorted(out.glob("tre-normal-*.json"))]
    records.sort(key=lambda r: r["true_mi"])
    fig, ax = plt.subplots(figsize=(5.2, 4.0), dpi=90)
    truths = [r["true_mi"] for r in records]
    ax.plot([0, 85], [0, 85], color="0.6", lw=1, ls="--", label="true MI")
    for k in ESTIMATORS:
        xs, ys = [], []
        for r in records:
            values = [
                row["estimate"] for row in r["rows"] if row["key"] == k and row["group"] is None and "estimate" in row
            ]
            if values:
                xs.append(r["true_mi"])
                ys.append(sum(values) / len(values))
        if xs:
            ax.plot(xs, ys, marker="o", ms=4, lw=1.2, label=k)
    for name, published in PUBLISHED.items():
        xs = [t for t in published if t in truths or not truths]
        ax.plot(
            xs, [published[t] for t in xs], marker="x", ls=":", lw=1, color="k" if "flow" in name else "m", label=name
        )
    ax.set_xlabel("true MI (nats)")
    ax.set_ylabel("held-out estimate (nats)")
    ax.set_title("TRE protocol: correlated Gaussians, d = 2 x MI")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)


def true_conditional_references(batch: int = EVAL_BATCH, batches: int = 8, seed: int = 0) -> str:
    """What the upper bounds and InfoNCE give with the TRUE model on the Gaussian levels, by Monte Carlo on
    ``batches`` batches of ``batch`` pairs: CLUB and L1Out (Poole et al. 2019, Eq. 13) with
    ``q(y|x) = p(y|x) = N(ρx, (1 - ρ²) I)``, InfoNCE with the true log-ratio as critic; and CLUB's closed form
    ``d ρ² / (1 - ρ²)`` (``E_p log q - E_{p(x)p(y)} log q``). The distance of these from the truth is the bound's own
    gap at this batch, which no training closes."""
    generator = torch.Generator().manual_seed(seed)
    lines = [
        "| d | true MI | CLUB, true q (closed form) | L1Out, true q | InfoNCE, true critic |",
        "|---|---|---|---|---|",
    ]
    for d, mi in ((20, 10.0), (40, 20.0), (80, 40.0), (160, 80.0)):
        s2 = math.exp(-2 * mi / d)
        rho = math.sqrt(1 - s2)
        eye = torch.eye(batch, dtype=torch.bool)
        club, l1out, nce = [], [], []
        for _ in range(batches):
            x = torch.randn(batch, d, dtype=torch.float64, generator=generator)
            y = rho * x + math.sqrt(s2) * torch.randn(batch, d, dtype=torch.float64, generator=generator)
            log_q = -((y[:, None, :] - rho * x[None, :, :]) ** 2).sum(-1) / (2 * s2)  # [i: y_i, j: x_j], no constant
            joint = log_q.diagonal()
            others = log_q.masked_fill(eye, -math.inf)
            club.append(float(joint.mean() - log_q[~eye].mean()))
            l1out.append(float((joint - torch.logsumexp(others, 1) + math.log(batch - 1)).mean()))
            nce.append(float((joint - torch.logsumexp(log_q, 1) + math.log(batch)).mean()))
        lines.append(
            f"| {d} | {mi:g} | {fmean(club):.2f} ({d * rho**2 / s2:.2f}) | {fmean(l1out):.2f} | {fmean(nce):.2f} |"
        )
    return "\n".join(lines)


def get_task_order() -> list[str]:
    from pdlightning.tasks import suite_task_ids

    return list(suite_task_ids("high-mi"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("reports/high_mi"))
    p.add_argument("--tasks", nargs="+", default=[])
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    p.add_argument("--skip-at-80", nargs="*", default=[], help="estimators left out at the 80-nat level")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=128, help="width of the separable critic's two MLPs")
    p.add_argument("--tre-hidden", type=int, default=128, help="width of the telescoping critic's body")
    p.add_argument("--n-test", type=int, default=2000, help="held-out pairs (batches of 500)")
    p.add_argument(
        "--references", action="store_true", help="print CLUB / L1Out / InfoNCE with the true model and exit"
    )
    p.add_argument("--render", action="store_true", help="print the tables of the finished tasks and exit")
    p.add_argument("--plot", type=Path, default=None, help="with --render: also draw the Gaussian levels to this PNG")
    args = p.parse_args()
    if args.references:
        print(true_conditional_references())
        return
    if args.render:
        print(render(args.out))
        if args.plot is not None:
            plot(args.out, args.plot)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    for task_id in args.tasks:
        record = run_task(task_id, args)
        print(f"{task_id}: fit {record['fit_s']:.0f} s, test {record['test_s']:.0f} s", flush=True)
        for row in record["rows"]:
            if row["group"] is None:
                print(f"  {row['member']}: {row.get('estimate')} [{row.get('low')}, {row.get('high')}]", flush=True)
        for b in record["brackets"]:
            print(f"  bracket: {b['lower']['estimate']:.3f} <= MI <= {b['upper']['estimate']:.3f}", flush=True)


if __name__ == "__main__":
    main()
