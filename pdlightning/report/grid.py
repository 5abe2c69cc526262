"""The PNG grid of staircase panels in the layout of the PD paper's Fig. 1: one panel per
estimator (columns), one row per task and critic."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pdlightning.callbacks.figures import staircase_panel

from .results import RunResult

__all__ = ["staircase_grid"]


def staircase_grid(
    results: Sequence[RunResult],
    estimators: Sequence[str],
    tasks: Sequence[str],
    critics: Sequence[str],
    path: Path,
    span: Optional[float] = None,
) -> Figure:
    """Draw and save the grid; empty cells are runs not finished yet."""
    rows = [(task, critic) for task in tasks for critic in critics]
    by_key: dict = {}
    for r in sorted(results, key=lambda r: r.seed):  # the first seed's stream (one panel per estimator)
        by_key.setdefault((r.spec.task, r.spec.critic, r.spec.estimator), r)
    figure = Figure(figsize=(3.0 * len(estimators), 2.5 * len(rows)), dpi=90, layout="constrained")
    axes = figure.subplots(len(rows), len(estimators), squeeze=False, sharex=True)
    for i, (task, critic) in enumerate(rows):
        for j, estimator in enumerate(estimators):
            ax = axes[i][j]
            result = by_key.get((task, critic, estimator))
            if result is None:
                ax.set_axis_off()
                continue
            limit = result.ceiling  # the reporting bound's own ceiling (log K for InfoNCE), as recorded
            title = result.label + (" (diverged)" if result.record.status != "ok" else "")
            staircase_panel(
                ax, result.steps, result.estimates, result.true_mi, span, limit, title, legend=(i == 0 and j == 0)
            )
            if j == 0:
                ax.set_ylabel(f"{task} / {critic}\nMI (nats)")
            else:
                ax.set_ylabel("")
            if i < len(rows) - 1:
                ax.set_xlabel("")
    FigureCanvasAgg(figure)
    figure.savefig(path)
    return figure
