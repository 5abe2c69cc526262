"""The markdown report: bias / variance / MSE per MI level in the layout of Song & Ermon's Table 2
(one block per metric, estimators as rows, Gaussian then Cubic levels as columns; biases as
absolute values), one table per critic, and our numbers next to the published ones.

Published rows: Song & Ermon, "Understanding the Limitations of Variational Mutual Information
Estimators" (ICLR 2020), Table 2, and ReMINE (Choi & Lee, AAAI 2022) with lambda = 1 (see
:mod:`pdlightning.report.targets`)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from pdlightning.runner import RunRecord, markdown_table
from pdlightning.uncertainty import count_of

from .estimators import DOCUMENTED, label_of
from .provenance import provenance_cells, provenance_notes, recorded_config
from .results import ResultRow, RunResult, cell_rows
from .sweep import Budget
from .targets import PUBLISHED_CRITIC, TABLE2, TABLE2_LEVELS

__all__ = ["table2_markdown", "comparison_markdown", "verdict_markdown", "report_markdown", "SHORT"]

_METRICS = (("bias", "Bias (abs)"), ("variance", "Var"), ("mse", "MSE"))
#: the mark of a row whose levels were shorter than the estimator's documented budget.
SHORT = "†"
#: marks an ensemble member whose fit stopped early because another member diverged
STOPPED = "‡"


def _cell(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return "–"
    if not math.isfinite(value):
        return "∞" if value > 0 else "nan"
    text = f"{value:.2f}" if abs(value) < 100 else f"{value:.3g}"
    if stderr is not None and math.isfinite(stderr):
        text += f" ± {stderr:.2f}" if abs(stderr) < 100 else f" ± {stderr:.3g}"
    return text


def cell_value(rows: Sequence[ResultRow], metric: str) -> tuple[Optional[float], Optional[float]]:
    """A cell over its seeds: the mean of the metric (the absolute value of the mean bias) and its
    standard error across seeds (``None`` with one seed: nothing to estimate it from)."""
    if not rows:
        return None, None
    values = [getattr(row, metric) for row in rows]
    mean = sum(values) / len(values)
    stderr = None
    if len(values) > 1 and all(math.isfinite(v) for v in values):
        stderr = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
    return (abs(mean) if metric == "bias" else mean), stderr


def _formatted(rows: Sequence[ResultRow], metric: str) -> str:
    return _cell(*cell_value(rows, metric))


def _levels(rows: Sequence[ResultRow]) -> list[float]:
    return sorted({row.true_mi for row in rows})


def short_estimators(estimators: Sequence[str], steps_per_level: int) -> list[str]:
    """The estimators whose documented budget is longer than ``steps_per_level``."""
    return [e for e in estimators if e in DOCUMENTED and (DOCUMENTED[e].settles_at or 0) > steps_per_level]


def table2_markdown(
    rows: Sequence[ResultRow],
    critic: str,
    estimators: Sequence[str],
    tasks: Sequence[str],
    labels: Optional[Mapping[str, str]] = None,
    short: Sequence[str] = (),
) -> str:
    """One critic's table; ``labels`` overrides row labels, estimators in ``short`` are marked."""
    levels = _levels(rows)
    header = ["", "estimator"] + [f"{task.capitalize()} {level:g}" for task in tasks for level in levels]
    lines = []
    for metric, name in _METRICS:
        for i, estimator in enumerate(estimators):
            cells = [
                _formatted(cell_rows(rows, task, critic, estimator, level), metric)
                for task in tasks
                for level in levels
            ]
            statuses = {r.status for r in rows if (r.critic, r.estimator) == (critic, estimator)}
            label = (labels or {}).get(estimator) or label_of(estimator)
            label += f" {SHORT}" if estimator in short else ""
            label += " (diverged)" if "failed" in statuses else f" {STOPPED}" if "stopped" in statuses else ""
            lines.append([f"**{name}**" if i == 0 else "", label] + cells)
    return markdown_table(header, lines)


def comparison_markdown(rows: Sequence[ResultRow], estimators: Sequence[str], tasks: Sequence[str]) -> str:
    """Joint-critic cells as ``ours / paper`` wherever the paper has the row (SMILE Table 2, ReMINE); nothing when
    no joint-critic cell was run (the published cells are joint-critic ones: a table of "– / paper" says nothing)."""
    rows = [r for r in rows if r.critic == PUBLISHED_CRITIC]
    if not rows:
        return ""
    levels = _levels(rows)
    lines = []
    for task in tasks:
        published = TABLE2.get(task, {})
        names = [e for e in estimators if e in published]
        if not names:
            continue
        body = []
        for metric, name in _METRICS:
            for i, estimator in enumerate(names):
                cells = []
                for level in levels:
                    ours = _formatted(cell_rows(rows, task, PUBLISHED_CRITIC, estimator, level), metric)
                    paper = dict(zip(TABLE2_LEVELS, published[estimator][metric])).get(level)
                    cells.append(f"{ours} / {_cell(paper)}")
                body.append([f"**{name}**" if i == 0 else "", label_of(estimator)] + cells)
        header = ["", "estimator"] + [f"{level:g}" for level in levels]
        lines += [
            f"#### {task.capitalize()}, {PUBLISHED_CRITIC} critic: ours / paper",
            "",
            markdown_table(header, body),
        ]
    return "\n".join(lines)


def _t_quantile(dof: int, confidence: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def _bias_range(level: float, low: float, high: float) -> tuple[float, float]:
    """The absolute biases ``|v - level|`` of the estimates ``v`` in ``[low, high]``."""
    far = max(abs(low - level), abs(high - level))
    return (0.0 if low <= level <= high else min(abs(low - level), abs(high - level))), far


def _verdict(published: float, low: float, high: float) -> str:
    inside = low - 5e-3 <= published <= high + 5e-3  # the paper's cells carry two decimals
    return f"{'yes' if inside else '**no**'}: {_cell(published)} {'in' if inside else 'not in'} [{low:.2f}, {high:.2f}]"


def _cell_verdict(cell: Sequence[ResultRow], held_out: Optional[Mapping], paper: float, level: float) -> str:
    """One cell of :func:`verdict_markdown`: ``cell`` holds the seeds' rows, ``held_out`` the one seed's
    ``results.json`` entry, ``paper`` the published bias."""
    diverged = sum(r.status == "failed" for r in cell)
    if diverged:
        return f"diverged ({diverged} of {len(cell)} seeds)" if len(cell) > 1 else "diverged"
    if len(cell) > 1:
        mean, stderr = cell_value(cell, "bias")
        if mean is None or stderr is None:
            return "–"
        half = _t_quantile(len(cell) - 1) * stderr
        return _verdict(paper, max(mean - half, 0.0), mean + half)
    if not held_out or held_out.get("low") is None or not math.isfinite(float(held_out["low"])):
        return "–"
    return _verdict(paper, *_bias_range(level, float(held_out["low"]), float(held_out["high"])))


def verdict_markdown(
    rows: Sequence[ResultRow],
    held_out: Optional[Mapping] = None,
    estimators: Sequence[str] = (),
    tasks: Sequence[str] = (),
    critics: Sequence[str] = (),
) -> str:
    """Cell by cell: is the published absolute bias (SMILE Table 2, ReMINE λ=1) within our 95% interval of it?

    Only cells of the critic the paper used (:data:`~.targets.PUBLISHED_CRITIC`, joint) are judged: a separable
    critic's bias differs from the joint one's by what the critic can represent, not by chance.
    With several seeds, the interval is ours across seeds: ``|mean bias| ± t_{S-1} se`` (Student t over the seeds'
    per-level biases). With one seed, it is the held-out interval of that level's own critic (``results.json``'s
    ``low``, ``high``), read as biases ``|v - level|``; a level without a held-out result has no verdict ("–").
    A cell with a seed whose member diverged (retired, status ``failed``) has none either: its statistics hold the
    run-up to the overflow, so any interval over them is meaningless ("diverged (k of S seeds)")."""
    if PUBLISHED_CRITIC not in critics:
        return ""
    critic, lines = PUBLISHED_CRITIC, []
    for task in tasks:
        published = TABLE2.get(task, {})
        names = [e for e in estimators if e in published]
        cells_of = [r for r in rows if (r.task, r.critic) == (task, critic)]
        if not names or not cells_of:
            continue
        levels = [level for level in _levels(cells_of) if level in TABLE2_LEVELS]
        cells = {(e, level): cell_rows(rows, task, critic, e, level) for e in names for level in levels}
        body = [
            [label_of(estimator)]
            + [
                _cell_verdict(
                    cells[estimator, level],
                    (held_out or {}).get((task, critic, estimator, level)),
                    dict(zip(TABLE2_LEVELS, published[estimator]["bias"]))[level],
                    level,
                )
                for level in levels
            ]
            for estimator in names
        ]
        seeds = max([1, *(len(cell) for cell in cells.values())])
        how = (
            f"our |bias| ± t·se across {seeds} seeds"
            if seeds > 1
            else "the held-out 95% interval of each level's critic, as |estimate - true MI|"
        )
        header = ["estimator"] + [f"{level:g}" for level in levels]
        lines += [
            f"#### {task.capitalize()}, {critic} critic: published bias within {how}?",
            "",
            markdown_table(header, body),
        ]
    return "\n".join(lines)


def _ensemble_id(result: RunResult) -> str:
    spec = result.record.spec
    return (
        f"{spec['task']}-{spec['critic']}: one ensemble fit of {len(spec['estimators'])} estimators x "
        f"{spec.get('seeds', 1)} seeds"
    )


def _seeds_note(results: Sequence[RunResult], budget: Budget) -> str:
    seeds = sorted({r.seed for r in results})
    if len(seeds) <= 1:
        return f" Seed {seeds[0] if seeds else budget.seed} (one seed: n = 1, no standard errors)."
    per_row: dict[tuple[str, str, str], set[int]] = {}
    for r in results:
        per_row.setdefault((r.spec.task, r.spec.critic, r.spec.estimator), set()).add(r.seed)
    single = " Cells without ± are rows that ran with one seed." if any(len(s) == 1 for s in per_row.values()) else ""
    return (
        f" Seeds {', '.join(map(str, seeds))}: each cell is the mean over the {len(seeds)} seeds ± its standard "
        f"error across seeds.{single}"
    )


def _dimension(results: Sequence[RunResult]) -> str:
    """``d = 20`` as the runs' recorded configs say (never assumed): ``d not recorded`` for runs of unknown
    provenance."""
    dims = []
    for result in results:
        data = recorded_config(result.record).get("data") or {}
        dim = (data.get("init_args") or {}).get("dim") if isinstance(data, dict) else None
        if dim is None:
            return "d not recorded (runs of unknown provenance)"
        dims.append(dim)
    return "d = " + ", ".join(str(d) for d in sorted(set(dims))) if dims else "d not recorded"


def report_markdown(
    results: Sequence[RunResult],
    rows: Sequence[ResultRow],
    budget: Budget,
    estimators: Sequence[str],
    tasks: Sequence[str],
    critics: Sequence[str],
    burn_in: float = 0.0,
    held_out: Optional[Mapping] = None,
    counted_once: Sequence[str] = (),
) -> str:
    """The report of runs that share one ``budget`` (the one their ``run.json`` recorded); ``counted_once``: the
    lines saying which fits two runs shared (:func:`~.results.count_each_fit_once`)."""
    labels = {r.spec.estimator: r.label for r in results}
    short = short_estimators(estimators, budget.steps_per_level)
    lines = [
        "# MI estimator benchmark: bias / variance / MSE per MI level",
        "",
        f"Correlated Gaussian / Cubic, {_dimension(results)}, batch {budget.batch_size}, levels "
        f"{', '.join(f'{v:g}' for v in budget.levels)} nats, **{budget.steps_per_level} steps per level**"
        + (
            " (the papers' protocol)."
            if budget.is_protocol
            else " (not the papers' protocol of 4,000 steps at 2, 4, 6, 8, 10 nats, batch 64)."
        )
        + _seeds_note(results, budget)
        + " Statistics over the raw per-step training estimates of each level"
        + (
            " (no burn-in), as Song & Ermon's Table 2"
            if burn_in == 0
            else f" after leaving out the first {burn_in:.0%} of each level's steps (the papers use none)"
        )
        + "; biases are absolute values.",
        "",
    ]
    if short:
        needs = ", ".join(f"{label_of(e)} {DOCUMENTED[e].settles_at}" for e in short)
        lines += [
            f"{SHORT} Levels shorter than the steps per level this estimator needs on the protocol before its "
            f'statistics settle (README, "Budgets"): {needs}. Read those rows as under-trained.',
            "",
        ]
    if any(r.status == "stopped" for r in rows):
        lines += [
            f'{STOPPED} The ensemble fit stopped early because another member diverged (section "Runs that '
            "stopped\"): these members' statistics are valid for the steps they ran, and their last level is partial.",
            "",
        ]
    for critic in critics:
        if any(r.critic == critic for r in rows):
            lines += [
                f"## {critic.capitalize()} critic",
                "",
                table2_markdown(rows, critic, estimators, tasks, labels, short),
            ]
    comparison = comparison_markdown(rows, estimators, tasks)
    if comparison:
        lines += ["## Against the published rows (SMILE Table 2; ReMINE λ=1)", "", comparison]
    verdicts = verdict_markdown(rows, held_out, estimators, tasks, critics)
    if verdicts:
        lines += ["## Is the published bias within our interval? (cell by cell, 95%)", "", verdicts]
    if held_out:
        lines += [
            "## Held-out estimates (`pdlightning test`, each level by its own critic)",
            "",
            "Mean ± standard error and the count of independent units from each run's `results.json`: held-out "
            "pairs for plug-in estimators, held-out batches for bounds with in-batch negatives, seeds where the "
            "run had replicates (see `pdlightning.uncertainty`).",
            "",
            held_out_markdown(held_out, estimators, tasks, critics),
            "",
        ]
    retired = [
        f"- {_run_name(r)}: member {r.member} diverged at step {info['step']} and was retired, the others went on: "
        f"{info['error']}"
        for r in results
        if r.member is not None and (info := (r.record.extra or {}).get("retired", {}).get(r.member))
    ]
    if retired:
        lines += ["## Members that diverged", "", *retired, ""]
    failed = list({id(r.record): r for r in results if r.record.status != "ok"}.values())  # each run once
    if failed:
        lines += ["## Runs that stopped", ""]
        lines += [f"- {_run_name(r)}: {r.record.error} (after {r.record.steps} steps)" for r in failed]
        lines.append("")
    if counted_once:
        lines += ["## Fits counted once", "", *[f"- {line}" for line in counted_once], ""]
    runs: dict[str, RunRecord] = {}
    for r in results:  # an ensemble run holds several results: list each run once (by its folder)
        run_id = r.run or (
            (r.record.spec or {}).get("run_id") or r.spec.run_id if r.member is None else _ensemble_id(r)
        )
        runs.setdefault(run_id, r.record)
    lines += [
        "## Runs",
        "",
        markdown_table(
            ["run", "status", "steps", "seconds", "config", "pdlightning"],
            [
                [run_id, record.status, record.steps, f"{record.seconds:.0f}", *provenance_cells(record)]
                for run_id, record in runs.items()
            ],
        ),
    ]
    lines += provenance_notes(runs.values())
    return "\n".join(lines) + "\n"


def held_out_markdown(
    held_out: Mapping[tuple[str, str, str, float], Mapping],
    estimators: Sequence[str],
    tasks: Sequence[str],
    critics: Sequence[str],
) -> str:
    """The runs' ``results.json`` (``pdlightning test`` on held-out batches at every level, each level with
    its own critic): estimate ± standard error per estimator and level, with the unit count; across
    seeds where the run had several."""
    lines = []
    for critic in critics:
        for task in tasks:
            cells = {k: v for k, v in held_out.items() if k[0] == task and k[1] == critic}
            if not cells:
                continue
            levels = sorted({k[3] for k in cells})
            body = []
            for estimator in estimators:
                row = []
                for level in levels:
                    result = cells.get((task, critic, estimator, level))
                    if result is None:
                        row.append("–")
                        continue
                    spread = f" ± {result['stderr']:.2f}" if result.get("stderr") is not None else ""
                    row.append(f"{result['estimate']:.2f}{spread} (n = {count_of(result['n'], result['unit'])})")
                body.append([label_of(estimator)] + row)
            header = ["estimator"] + [f"{level:g}" for level in levels]
            lines += [f"#### {task.capitalize()}, {critic} critic", "", markdown_table(header, body)]
    return "\n".join(lines)


def _run_name(result: Any) -> str:
    """The run a result came from: the ensemble fit's ``task-critic`` for a member, else the spec's run id."""
    if getattr(result, "member", None) is not None:
        return f"{result.spec.task}-{result.spec.critic} (ensemble fit)"
    return result.spec.run_id
