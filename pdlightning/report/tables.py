"""The markdown report: bias / variance / MSE per MI level in the layout of Song & Ermon's Table 2
(one block per metric, estimators as rows, Gaussian then Cubic levels as columns; biases as
absolute values), one table per critic, and our numbers next to the published ones."""

from __future__ import annotations

import math
from typing import Sequence

from .results import ResultRow, RunResult, lookup
from .sweep import ESTIMATORS, Budget
from .targets import TABLE2

__all__ = ["table2_markdown", "comparison_markdown", "report_markdown"]

_METRICS = (("bias", "Bias (abs)"), ("variance", "Var"), ("mse", "MSE"))


def _cell(value: float | None) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "∞" if value > 0 else "nan"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:.3g}"


def _metric(row: ResultRow | None, metric: str) -> float | None:
    if row is None:
        return None
    value = getattr(row, metric)
    return abs(value) if metric == "bias" else value


def _levels(rows: Sequence[ResultRow]) -> list[float]:
    return sorted({row.true_mi for row in rows})


def table2_markdown(rows: Sequence[ResultRow], critic: str, estimators: Sequence[str], tasks: Sequence[str]) -> str:
    levels = _levels(rows)
    header = ["", "estimator"] + [f"{task.capitalize()} {level:g}" for task in tasks for level in levels]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric, name in _METRICS:
        for i, estimator in enumerate(estimators):
            cells = [_cell(_metric(lookup(rows, task, critic, estimator, level), metric))
                     for task in tasks for level in levels]
            failed = any(r.status == "failed" for r in rows if (r.critic, r.estimator) == (critic, estimator))
            label = ESTIMATORS[estimator].label + (" (diverged)" if failed else "")
            lines.append("| " + " | ".join([f"**{name}**" if i == 0 else "", label] + cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(rows: Sequence[ResultRow], estimators: Sequence[str], tasks: Sequence[str]) -> str:
    """Joint-critic cells as ``ours / paper`` wherever the paper has the row (SMILE Table 2, ReMINE)."""
    levels = [level for level in _levels(rows)]
    lines = []
    for task in tasks:
        published = TABLE2.get(task, {})
        names = [e for e in estimators if e in published]
        if not names:
            continue
        header = ["", "estimator"] + [f"{level:g}" for level in levels]
        lines += [f"#### {task.capitalize()}, joint critic: ours / paper", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for metric, name in _METRICS:
            for i, estimator in enumerate(names):
                cells = []
                for level in levels:
                    ours = _metric(lookup(rows, task, "joint", estimator, level), metric)
                    paper = dict(zip((2.0, 4.0, 6.0, 8.0, 10.0), published[estimator][metric])).get(level)
                    cells.append(f"{_cell(ours)} / {_cell(paper)}")
                lines.append("| " + " | ".join([f"**{name}**" if i == 0 else "", ESTIMATORS[estimator].label]
                                                + cells) + " |")
        lines.append("")
    return "\n".join(lines)


def report_markdown(results: Sequence[RunResult], rows: Sequence[ResultRow], budget: Budget,
                    estimators: Sequence[str], tasks: Sequence[str], critics: Sequence[str],
                    burn_in: float = 0.0) -> str:
    protocol = budget.steps_per_level == 4000 and tuple(budget.levels) == (2.0, 4.0, 6.0, 8.0, 10.0)
    lines = [
        "# MI estimator benchmark: bias / variance / MSE per MI level",
        "",
        f"Correlated Gaussian / Cubic, d = 20, batch {budget.batch_size}, levels "
        f"{', '.join(f'{v:g}' for v in budget.levels)} nats, **{budget.steps_per_level} steps per level**"
        + (" (the papers' protocol)." if protocol else " (a reduced budget; the papers use 4,000).")
        + f" Seed {budget.seed}. Statistics over the raw per-step training estimates of each level"
        + (" (no burn-in), as Song & Ermon's Table 2" if burn_in == 0 else
           f" after leaving out the first {burn_in:.0%} of each level's steps (the papers use none)")
        + "; biases are absolute values.",
        "",
    ]
    for critic in critics:
        if any(r.critic == critic for r in rows):
            lines += [f"## {critic.capitalize()} critic", "", table2_markdown(rows, critic, estimators, tasks)]
    comparison = comparison_markdown(rows, estimators, tasks)
    if comparison:
        lines += ["## Against the published rows (SMILE Table 2; ReMINE λ=1 from DESIGN.md)", "", comparison]
    failed = [r for r in results if r.record.status != "ok"]
    if failed:
        lines += ["## Runs that stopped", ""]
        lines += [f"- {r.spec.run_id}: {r.record.error} (after {r.record.steps} steps)" for r in failed]
        lines.append("")
    lines += ["## Runs", "", "| run | status | steps | seconds |", "|---|---|---|---|"]
    lines += [f"| {r.spec.run_id} | {r.record.status} | {r.record.steps} | {r.record.seconds:.0f} |" for r in results]
    return "\n".join(lines) + "\n"
