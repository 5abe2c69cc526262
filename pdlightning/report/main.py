"""``pdlightning-report``: run (or resume) the sweep, then write ``report.md``, ``results.csv`` and
``staircase_grid.png`` under ``--out``.

    pdlightning-report --out reports/full                                  # papers' protocol, 4,000 steps/level
    pdlightning-report --out reports/cpu --steps-per-level 300 --estimators cpc nwj smile_tau1 smile_tauinf remine pc drf
    pdlightning-report --out reports/cpu --steps-per-level 300 --render-only   # tables and grid of what has finished
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from .sweep import CRITICS, DEFAULT_ESTIMATORS, ESTIMATORS, TASKS, Budget, plan, read_record, run_sweep

__all__ = ["main", "parser", "render"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pdlightning-report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("reports/sweep"), help="sweep directory (default: reports/sweep)")
    p.add_argument("--steps-per-level", type=int, default=4000,
                   help="training steps per MI level (budget; default 4000, the papers' protocol)")
    p.add_argument("--levels", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0, 10.0], help="MI levels in nats")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--estimators", nargs="+", default=list(DEFAULT_ESTIMATORS),
                   help=f"report rows, or 'all' (known: {', '.join(ESTIMATORS)})")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--critics", nargs="+", default=list(CRITICS), choices=list(CRITICS))
    p.add_argument("--configs", type=Path, default=None, help="the repository's configs/ (default: found from the package)")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs (resume later)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs that diverged")
    p.add_argument("--render-only", action="store_true", help="only write the report of the finished runs")
    p.add_argument("--burn-in", type=float, default=0.0,
                   help="fraction of each level's first steps left out of the statistics (default 0, as the papers)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    return p


def render(out: Path, budget: Budget, estimators: Sequence[str], tasks: Sequence[str], critics: Sequence[str],
           records: Optional[dict] = None, burn_in: float = 0.0) -> str:
    """Write ``results.csv``, ``report.md`` and ``staircase_grid.png``; return the markdown."""
    from .grid import staircase_grid
    from .results import load_results, write_results_csv
    from .tables import report_markdown

    specs = plan(estimators, tasks, critics)
    if records is None:
        records = {s: r for s in specs if (r := read_record(out / "runs" / s.run_id)) is not None}
    results = load_results(out, {s: records[s] for s in specs if s in records})
    out.mkdir(parents=True, exist_ok=True)
    rows = write_results_csv(results, out / "results.csv", burn_in)
    markdown = report_markdown(results, rows, budget, estimators, tasks, critics, burn_in)
    (out / "report.md").write_text(markdown)
    if results:
        staircase_grid(results, estimators, tasks, critics, out / "staircase_grid.png")
    return markdown


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    estimators = list(ESTIMATORS) if args.estimators == ["all"] else args.estimators
    try:
        if not 0.0 <= args.burn_in < 1.0:
            raise ValueError(f"burn_in: expected a fraction in [0, 1), got {args.burn_in}")
        budget = Budget(args.steps_per_level, tuple(args.levels), args.batch_size, args.seed)
        specs = plan(estimators, args.tasks, args.critics)
    except ValueError as exc:
        parser().error(str(exc))
    # One line per run is the progress; Lightning's per-fit banners would drown it. (Lightning sets
    # its loggers' levels when imported, so import it first.)
    import lightning  # noqa: F401

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(does not have many workers|IterableDataset. has .__len__).*")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    records = None
    if not args.render_only:
        def log(line: str) -> None:
            print(line, flush=True)

        records = run_sweep(specs, budget, args.out, args.configs, args.max_runs, args.retry_failed, log)
    render(args.out, budget, estimators, args.tasks, args.critics, records, args.burn_in)
    print(f"report: {args.out / 'report.md'}, {args.out / 'results.csv'}, {args.out / 'staircase_grid.png'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
