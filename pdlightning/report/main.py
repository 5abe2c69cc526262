"""``pdlightning-report``: run (or resume) the sweep, then write ``report.md``, ``results.csv`` and
``staircase_grid.png`` under ``--out`` from every finished run there.

    pdlightning-report --out reports/full                                  # papers' protocol, 4,000 steps/level
    pdlightning-report --out reports/cpu --steps-per-level 300 --estimators infonce nwj smile_tau1 smile_tauinf \\
        remine pd_classifier pd_ratio_fitting
    pdlightning-report --out reports/cpu --render-only                     # tables and grid of what has finished
    pdlightning-report --out reports/cpu --workers 4                       # 4 runs at once (Ray: pdlightning[sweep])
    pdlightning-report --out /shared/sweep --address auto --gpus-per-run 0.25   # on a Ray cluster, 4 runs per GPU

    pdlightning-report --suite bmi-v1 --seeds 3 --out reports/suite        # the task suite (suite.md, suite.csv)
    pdlightning-report --suite bmi-v1 --seeds 1 --tasks 1v1-normal-0.75 1v1-additive-0.1 --steps 500 --out s

Estimators are the fragments of <configs>/mi/bounds/ by file name (``all`` for every one); the
configs are the packaged ones unless --configs names another folder. With --suite, one run per task of
the suite and seed: the estimators as one ensemble on the suite's finite-sample protocol
(<configs>/suite/cpu.yaml, or --suite-config), plus KSG (k=5) and CCA on the same held-out pairs
(pdlightning.report.suite). The report is rendered from
each finished run's own recorded budget; runs of different budgets are never mixed in one table.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from pdlightning.cli.errors import run_console
from pdlightning.runner import SweepBusy
from pdlightning.runner.ray_executor import add_parallel_arguments, parallel_from_args

from .estimators import DEFAULT_ESTIMATORS, order
from .suite import DEFAULT_SUITE_ESTIMATORS

if TYPE_CHECKING:
    from .suite import SuiteBudget, SuiteSpec
from .sweep import CRITICS, TASKS, Budget, plan, run_sweep

__all__ = ["main", "parser", "render"]


class _Unset(list):
    """A list default the user did not type (argparse keeps a default object as it is): the staircase's default
    tasks and estimators, which ``--suite`` replaces with its own."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pdlightning-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path("reports/sweep"), help="sweep directory (default: reports/sweep)")
    p.add_argument(
        "--steps-per-level",
        type=int,
        default=4000,
        help="training steps per MI level (budget; default 4000, the papers' protocol)",
    )
    p.add_argument("--levels", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0, 10.0], help="MI levels in nats")
    p.add_argument(
        "--batch-size", type=int, default=None, help="training batch (default 64; with --suite the config's, 256)"
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (replicate s trains from seed + s)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="replicate seeds per estimator (each its own critic seed and data stream); the tables give "
        "the mean ± standard error across seeds",
    )
    p.add_argument(
        "--single-fits",
        action="store_true",
        help="one fit per estimator instead of one vectorised ensemble per task and critic",
    )
    p.add_argument(
        "--estimators",
        nargs="+",
        default=_Unset(DEFAULT_ESTIMATORS),
        help=f"report rows: fragment names of <configs>/mi/bounds/, or 'all' (default: {' '.join(DEFAULT_ESTIMATORS)}; "
        f"with --suite: {' '.join(DEFAULT_SUITE_ESTIMATORS)})",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        default=_Unset(TASKS),
        help=f"tasks: {', '.join(TASKS)} (default: both); with --suite, task ids of the suite (default: all)",
    )
    p.add_argument(
        "--suite",
        default=None,
        help="run the task suite instead of the staircase sweep: a suite of pdlightning.tasks (bmi-v1); writes "
        "suite.md, suite.csv and suite_heatmap.png under --out",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="with --suite: training steps per run (default: the config's, 2000)"
    )
    p.add_argument(
        "--suite-config",
        default="suite/cpu.yaml",
        help="with --suite: the base config, relative to the configs folder (default suite/cpu.yaml)",
    )
    p.add_argument("--critics", nargs="+", default=list(CRITICS), choices=list(CRITICS))
    p.add_argument(
        "--configs",
        type=Path,
        default=None,
        help="folder of the configs (default: the packaged ones, `pdlightning --print-configs-dir`)",
    )
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs (resume later)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs that diverged")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="only write the report of the finished runs (each under its own recorded budget)",
    )
    p.add_argument(
        "--burn-in",
        type=float,
        default=0.0,
        help="fraction of each level's first steps left out of the statistics (default 0, as the papers)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    p.add_argument(
        "--log-every-n-steps",
        type=int,
        default=None,
        help="TensorBoard logging cadence of the runs (default: the config's, every step; the per-step stream of "
        "the tables is recorded whatever it is: a larger value spares a large fit on a GPU a host transfer a step)",
    )
    add_parallel_arguments(p)  # --workers, --address, --cpus-per-run, --gpus-per-run, --max-retries (Ray)
    return p


def render(out: Path, burn_in: float = 0.0, log=print) -> str:
    """Write ``results.csv``, ``report.md`` and the staircase grid(s) of every finished run under
    ``out``; return the markdown. Runs are grouped by their recorded budget: one report section (and
    one grid) per budget, with a warning when there is more than one."""
    from .grid import staircase_grid
    from .results import count_each_fit_once, finished_runs, held_out_results, load_results, write_results_csv
    from .tables import report_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[str, dict] = {}
    for name, (spec, record) in finished_runs(out).items():
        groups.setdefault(json.dumps(record.budget, sort_keys=True), {})[name] = (spec, record)
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    sections, all_results = [], []
    for index, (_, runs) in enumerate(ordered or [("", {})]):
        results, counted_once = count_each_fit_once(load_results(out, runs))
        for line in counted_once:
            log(f"note: {line}")
        all_results += results
        budget = results[0].budget if results else Budget()
        rows = [row for result in results for row in result.rows(burn_in)]
        estimators = order([r.spec.estimator for r in results])
        tasks = [t for t in TASKS if any(r.spec.task == t for r in results)]
        critics = [c for c in CRITICS if any(r.spec.critic == c for r in results)]
        sections.append(
            report_markdown(
                results,
                rows,
                budget,
                estimators,
                tasks,
                critics,
                burn_in,
                held_out_results(out, runs),
                counted_once,
            )
        )
        if results:
            grid = "staircase_grid.png" if index == 0 else f"staircase_grid_{index + 1}.png"
            staircase_grid(results, estimators, tasks, critics, out / grid)
    write_results_csv(all_results, out / "results.csv", burn_in)
    markdown = sections[0] if all_results else f"# MI estimator benchmark\n\nNo finished runs under {out} yet.\n"
    if len(sections) > 1:
        budgets = "; ".join(
            f"({i + 1}) {Budget.from_json(json.loads(key)).describe()}: {len(runs)} runs"
            for i, (key, runs) in enumerate(ordered)
        )
        warning = (
            f"**{out} holds runs of {len(sections)} budgets** — {budgets}. Each section below is one budget "
            "(grids: staircase_grid.png, staircase_grid_2.png, ...); numbers of different budgets are "
            "never in one table."
        )
        log(f"warning: {warning.replace('**', '')}")
        markdown = warning + "\n\n" + "\n---\n\n".join(sections)
    (out / "report.md").write_text(markdown)
    return markdown


#: what ends the report as one line (``pdlightning-report: error: ...``, exit 2), not a traceback: bad values and
#: names, another budget or protocol in --out (BudgetMismatch, ProtocolMismatch), a damaged run file
#: (DamagedRunFile: all ValueErrors), missing configs, a busy --out; any OSError about a path (--out a file, an
#: output path that is a folder, a folder that cannot be written) is one line too (pdlightning.cli.errors).
REPORT_ERRORS = (ValueError, FileNotFoundError, SweepBusy)
PROG = "pdlightning-report"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.steps is not None and args.suite is None:
        parser().error("--steps: only with --suite (the staircase's budget is --steps-per-level)")
    return run_console(PROG, lambda: _run(args), REPORT_ERRORS)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder: --out is the folder of the sweep's runs", str(out))


def _run(args: argparse.Namespace) -> int:
    _check_out(args.out)
    if args.suite is not None:
        return suite_main(args)
    args.batch_size = 64 if args.batch_size is None else args.batch_size
    if not 0.0 <= args.burn_in < 1.0:
        raise ValueError(f"burn_in: expected a fraction in [0, 1), got {args.burn_in}")
    if not args.render_only:
        budget = Budget(args.steps_per_level, tuple(args.levels), args.batch_size, args.seed)
        specs = plan(args.estimators, args.tasks, args.critics, args.configs)
        parallel = parallel_from_args(args)  # None: one run after another in this process
    _quiet_lightning(args.threads)

    def log(line: str) -> None:
        print(line, flush=True)

    unfinished = []
    if not args.render_only:
        records = run_sweep(
            specs,
            budget,
            args.out,
            args.configs,
            args.max_runs,
            args.retry_failed,
            log,
            ensemble=not args.single_fits,
            seeds=args.seeds,
            parallel=parallel,
            log_every=args.log_every_n_steps,
        )
        unfinished = [getattr(key, "run_id", key) for key, record in records.items() if record.status == "crashed"]
    render(args.out, args.burn_in, log)
    log(f"report: {args.out / 'report.md'}, {args.out / 'results.csv'}, {args.out / 'staircase_grid.png'}")
    if unfinished:  # exit status 1 for batch jobs; the report holds the rest
        log(
            f"{len(unfinished)} run(s) did not finish (logs under {args.out / 'logs'}); run the sweep again to retry: "
            f"{', '.join(unfinished)}"
        )
        return 1
    return 0


def _quiet_lightning(threads: Optional[int]) -> None:
    """One line per run is the progress; Lightning's per-fit banners would drown it."""
    import lightning  # noqa: F401  (Lightning sets its loggers' levels when imported, so import it first)

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|IterableDataset. has .__len__).*")
    if threads:
        import torch

        torch.set_num_threads(threads)


def suite_plan(args: argparse.Namespace) -> tuple["SuiteBudget", list["SuiteSpec"]]:
    """The budget and the task x seed runs that ``--suite`` arguments ask for (raises on bad values)."""
    from .suite import SuiteBudget, plan_suite

    budget = SuiteBudget(args.suite, args.suite_config, args.steps, args.batch_size)
    specs = plan_suite(
        args.suite,
        None if isinstance(args.tasks, _Unset) else args.tasks,
        args.seeds,
        list(DEFAULT_SUITE_ESTIMATORS) if isinstance(args.estimators, _Unset) else args.estimators,
        args.configs,
        args.seed,
    )
    return budget, specs


def suite_main(args: argparse.Namespace) -> int:
    """``--suite``: one ensemble run per task x seed (:mod:`.suite`), then ``suite.md`` of what has finished."""
    from .suite import render_suite, resolve_suite, run_suite

    if args.render_only:
        resolve_suite(args.suite)
        specs: list = []
    else:
        budget, specs = suite_plan(args)
    parallel = parallel_from_args(args)
    _quiet_lightning(args.threads)

    def log(line: str) -> None:
        print(line, flush=True)

    unfinished = []
    if specs:
        records = run_suite(specs, budget, args.out, args.configs, args.max_runs, args.retry_failed, log, parallel)
        unfinished = [run_id for run_id, record in records.items() if record.status == "crashed"]
    render_suite(args.out, args.suite, args.configs)
    log(f"report: {args.out / 'suite.md'}, {args.out / 'suite.csv'}, {args.out / 'suite_heatmap.png'}")
    if unfinished:
        log(f"{len(unfinished)} run(s) did not finish; run the suite again to retry: {', '.join(unfinished)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
