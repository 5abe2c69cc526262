"""The papers' diagnostic plots as pure functions of recorded series (no training state).

- :func:`staircase_panel`: the PD paper's Fig. 1 / SMILE Fig. 1 / ReMINE Fig. 7 panel: raw per-step
  estimate (faint), its EWM (span 200 at the papers' 4,000 steps per level, scaled down for shorter
  levels), the true MI, and the bound's ceiling (``log K`` for InfoNCE).
- :func:`drift_figure`: ReMINE Figs. 1-5: first term, second term (with ``C*`` for Re-X) and the
  MI estimate per step, and the critic's outputs ``T`` on joint vs marginal pairs.
- :func:`pmi_profile_figure`: estimated vs exact PMI of held-out pairs, and the two PMI profiles
  (histograms over the joint pairs), for the task suite's pointwise evaluation.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .smoothing import ewm

__all__ = [
    "staircase_panel",
    "staircase_figure",
    "staircase_grid_figure",
    "drift_row",
    "drift_figure",
    "drift_grid_figure",
    "auto_span",
    "level_lengths",
    "pmi_profile_figure",
]

_ESTIMATE_COLOR = "tab:blue"


def _raw_and_smooth(ax: Axes, steps: np.ndarray, values: np.ndarray, color: str, label: str, span: float) -> None:
    ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.6, label=f"{label} (raw)")
    ax.plot(steps, ewm(values, span), color=color, linewidth=1.4, label=f"{label} (EWM {span:g})")


def level_lengths(true_mi: np.ndarray) -> list[int]:
    """Lengths of the runs of equal consecutive true-MI values (the staircase's levels)."""
    true_mi = np.asarray(true_mi, dtype=np.float64)
    if not true_mi.size:
        return []
    changes = np.flatnonzero(np.diff(true_mi) != 0) + 1
    edges = np.concatenate([[0], changes, [true_mi.size]])
    return np.diff(edges).astype(int).tolist()


def auto_span(true_mi: np.ndarray, span: Optional[float] = None, papers_span: float = 200.0) -> float:
    """The EWM span: ``span`` if given, else the papers' 200 scaled to the level length (a twentieth
    of the shortest level, between 5 and 200), so a short level's smoothed curve does not lag behind
    and make every estimator look worse than its raw estimates."""
    if span is not None:
        return float(span)
    lengths = level_lengths(true_mi)
    return float(min(papers_span, max(5.0, min(lengths) / 20.0))) if lengths else papers_span


def _limits(values: np.ndarray, low: float, high: float) -> tuple[float, float, int]:
    """``[low, high]`` widened to the 0.5 % / 99.5 % quantiles of ``values`` (a real excursion stays
    visible; a diverging estimator cannot squash the panel beyond twice the span); also the number of
    points left outside."""
    finite = values[np.isfinite(values)]
    if finite.size:
        width = high - low
        low = max(min(low, float(np.quantile(finite, 0.005))), low - width)
        high = min(max(high, float(np.quantile(finite, 0.995))), high + width)
    outside = int(np.sum((values < low) | (values > high) | ~np.isfinite(values)))
    return low, high, outside


def staircase_panel(
    ax: Axes,
    steps: Sequence[int] | np.ndarray,
    estimates: Sequence[float] | np.ndarray,
    true_mi: Sequence[float] | np.ndarray,
    span: Optional[float] = None,
    batch_limit: Optional[float] = None,
    title: Optional[str] = None,
    legend: bool = True,
) -> None:
    """Draw one staircase panel on ``ax``: raw estimate, its EWM (``span``; default scaled to the
    level length, see :func:`auto_span`), the true MI, and ``batch_limit`` (``log K``: InfoNCE's
    ceiling) when given.

    The y-range starts from the papers' ``[-1, max(true MI) + 4]`` and widens to show real
    excursions (up to twice that range); points still outside are counted in the title."""
    steps, estimates, true_mi = (np.asarray(a, dtype=np.float64) for a in (steps, estimates, true_mi))
    span = auto_span(true_mi, span)
    _raw_and_smooth(ax, steps, estimates, _ESTIMATE_COLOR, "estimate", span)
    ax.plot(steps, true_mi, color="black", linewidth=1.0, label="true MI")
    if batch_limit is not None:
        ax.axhline(batch_limit, color="black", linestyle=":", linewidth=1.0, label=f"ceiling log K = {batch_limit:.2f}")
    top = float(np.nanmax(true_mi)) if true_mi.size else 1.0
    low, high, outside = _limits(estimates, -1.0, top + 4.0)
    ax.set_ylim(low, high)
    ax.set_xlabel("step")
    ax.set_ylabel("MI (nats)")
    note = f" ({outside} raw points off the panel)" if outside else ""
    if title or note:
        ax.set_title(f"{title or ''}{note}", fontsize=9)
    if legend:
        ax.legend(fontsize=7, loc="upper left")


def staircase_figure(
    steps,
    estimates,
    true_mi,
    span: Optional[float] = None,
    batch_limit: Optional[float] = None,
    title: Optional[str] = None,
) -> Figure:
    """A one-panel figure (see :func:`staircase_panel`)."""
    figure = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    staircase_panel(figure.subplots(), steps, estimates, true_mi, span, batch_limit, title)
    return figure


def staircase_grid_figure(panels: Sequence[Mapping], span: Optional[float] = None, columns: int = 4) -> Figure:
    """One staircase panel per entry of ``panels`` (dicts with ``steps``, ``estimates``, ``true_mi``,
    optional ``batch_limit`` and ``title``), ``columns`` per row, shared axes' labels."""
    rows = -(-len(panels) // columns)
    columns = min(columns, len(panels))
    figure = Figure(figsize=(4.0 * columns, 3.2 * rows), dpi=90, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(panels):
            ax.set_axis_off()
            continue
        panel = panels[index]
        staircase_panel(
            ax,
            panel["steps"],
            panel["estimates"],
            panel["true_mi"],
            span,
            panel.get("batch_limit"),
            panel.get("title"),
            legend=index == 0,
        )
    return figure


def drift_row(
    axes: Sequence[Axes],
    steps: np.ndarray,
    series: Mapping[str, np.ndarray],
    outputs: Mapping[str, Mapping[str, np.ndarray]],
    span: float = 200.0,
    true_mi: Optional[np.ndarray] = None,
    c_star: Optional[float] = None,
    row_label: Optional[str] = None,
) -> None:
    """The three drift panels on ``axes``: first and second term, MI estimate, critic outputs ``T``.

    Args:
        steps: ``[t]`` step of each record.
        series: ``first_term``, ``second_term``, ``mi_estimate`` (each ``[t]``).
        outputs: per pair group (``joint``, ``marginal``, ``marginal_in_support``, ...), ``mean`` and
            optionally ``low``/``high`` quantile series (``[t]``, NaN where the group was empty).
        c_star: the Re-X target of the second term, drawn dotted.
    """
    terms_ax, mi_ax, t_ax = axes
    _raw_and_smooth(terms_ax, steps, series["first_term"], "tab:green", "first term", span)
    _raw_and_smooth(terms_ax, steps, series["second_term"], "tab:red", "second term", span)
    if c_star is not None:
        terms_ax.axhline(c_star, color="tab:orange", linestyle=":", linewidth=1.2, label=f"C* = {c_star:g}")
    terms_ax.set_title("bound terms", fontsize=9)
    terms_ax.set_ylabel(f"{row_label}\nterm value (nats)" if row_label else "term value (nats)")
    _raw_and_smooth(mi_ax, steps, series["mi_estimate"], _ESTIMATE_COLOR, "MI estimate", span)
    if true_mi is not None:
        mi_ax.plot(steps, true_mi, color="black", linewidth=1.0, label="true MI")
    mi_ax.set_title("MI estimate", fontsize=9)
    mi_ax.set_ylabel("MI (nats)")
    colors = {
        "joint": "tab:green",
        "marginal": "tab:red",
        "marginal_in_support": "tab:purple",
        "marginal_off_support": "tab:red",
    }
    groups = [g for g in ("joint", "marginal_in_support", "marginal_off_support") if g in outputs]
    if "marginal_off_support" not in outputs and "marginal" in outputs:
        groups.append("marginal")
    drawn: list[tuple[str, Mapping[str, np.ndarray]]] = []
    for group in groups:
        stats = outputs[group]
        same = next((other for other, seen in drawn if _coincide(seen["mean"], stats["mean"])), None)
        if same is not None:  # e.g. T on joint = T on in-support marginal pairs when X = Y (one-hot)
            for line in t_ax.get_lines():
                if line.get_label() == f"T on {same.replace('_', ' ')}":
                    line.set_label(f"T on {same.replace('_', ' ')} = T on {group.replace('_', ' ')} (identical)")
            continue
        color = colors.get(group, "tab:gray")
        if "low" in stats and "high" in stats:
            t_ax.fill_between(steps, stats["low"], stats["high"], color=color, alpha=0.15, linewidth=0)
        t_ax.plot(steps, stats["mean"], color=color, linewidth=1.2, label=f"T on {group.replace('_', ' ')}")
        drawn.append((group, stats))
    t_ax.set_title("critic outputs T (mean, quantile band)", fontsize=9)
    t_ax.set_ylabel("critic output T")
    for ax in (terms_ax, mi_ax, t_ax):
        ax.set_xlabel("step")
        ax.legend(fontsize=7)


def _coincide(a: np.ndarray, b: np.ndarray) -> bool:
    both = np.isfinite(a) & np.isfinite(b)
    return bool(both.any()) and bool(np.allclose(a[both], b[both], rtol=1e-6, atol=1e-6))


def drift_figure(
    steps: np.ndarray,
    series: Mapping[str, np.ndarray],
    outputs: Mapping[str, Mapping[str, np.ndarray]],
    span: float = 200.0,
    true_mi: Optional[np.ndarray] = None,
    c_star: Optional[float] = None,
    title: Optional[str] = None,
) -> Figure:
    """ReMINE Figs. 1-5 for one run: the three panels of :func:`drift_row`."""
    figure = Figure(figsize=(15, 4), dpi=100, layout="constrained")
    drift_row(figure.subplots(1, 3), steps, series, outputs, span, true_mi, c_star)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def drift_grid_figure(rows: Sequence[Mapping], span: float = 200.0, title: Optional[str] = None) -> Figure:
    """One row of drift panels per entry of ``rows`` (dicts with the arguments of :func:`drift_row`:
    ``steps``, ``series``, ``outputs``, optional ``true_mi``, ``c_star``, ``label``)."""
    figure = Figure(figsize=(15, 3.6 * len(rows)), dpi=90, layout="constrained")
    axes = figure.subplots(len(rows), 3, squeeze=False)
    for row, ax_row in zip(rows, axes):
        drift_row(
            ax_row,
            row["steps"],
            row["series"],
            row["outputs"],
            span,
            row.get("true_mi"),
            row.get("c_star"),
            row.get("label"),
        )
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def pmi_profile_figure(
    exact: np.ndarray,
    estimated: np.ndarray,
    product_exact: Optional[np.ndarray] = None,
    product_estimated: Optional[np.ndarray] = None,
    true_mi: Optional[float] = None,
    title: Optional[str] = None,
) -> Figure:
    """Two panels: estimated vs exact PMI per pair (joint pairs, and product-of-marginals pairs where their exact
    PMI is finite; the diagonal is a perfect estimate), and the PMI profile: histograms of the exact and the
    estimated PMI over the joint pairs, with their means (the plug-in MI) and the true MI.
    """
    exact, estimated = np.asarray(exact, dtype=np.float64), np.asarray(estimated, dtype=np.float64)
    figure = Figure(figsize=(11, 4.2), dpi=100, layout="constrained")
    scatter_ax, profile_ax = figure.subplots(1, 2)
    shown = [exact, estimated]
    if product_exact is not None and product_estimated is not None:
        product_exact = np.asarray(product_exact, dtype=np.float64)
        product_estimated = np.asarray(product_estimated, dtype=np.float64)
        finite = np.isfinite(product_exact) & np.isfinite(product_estimated)
        off_support = int((~np.isfinite(product_exact)).sum())
        note = f", {off_support} off the joint support not drawn" if off_support else ""
        scatter_ax.scatter(
            product_exact[finite],
            product_estimated[finite],
            s=4,
            alpha=0.35,
            color="tab:red",
            linewidths=0,
            label=f"product pairs ({int(finite.sum())}{note})",
        )
        shown += [product_exact[finite], product_estimated[finite]]
    scatter_ax.scatter(
        exact, estimated, s=4, alpha=0.5, color="tab:green", linewidths=0, label=f"joint pairs ({exact.size})"
    )
    values = np.concatenate([v[np.isfinite(v)] for v in shown]) if shown else np.zeros(1)
    low, high = (float(values.min()), float(values.max())) if values.size else (-1.0, 1.0)
    scatter_ax.plot([low, high], [low, high], color="black", linewidth=1.0, label="estimate = exact")
    scatter_ax.set_xlabel("exact PMI")
    scatter_ax.set_ylabel("estimated PMI")
    scatter_ax.set_title("estimated vs exact PMI (held-out pairs)", fontsize=9)
    scatter_ax.legend(fontsize=7, loc="upper left")
    joint = np.concatenate([exact[np.isfinite(exact)], estimated[np.isfinite(estimated)]])
    bins = np.linspace(float(joint.min()), float(joint.max()), 50) if joint.size and joint.min() < joint.max() else 20
    for series, color, name in ((exact, "black", "exact"), (estimated, _ESTIMATE_COLOR, "estimated")):
        series = series[np.isfinite(series)]
        profile_ax.hist(
            series,
            bins=bins,
            histtype="step",
            color=color,
            linewidth=1.3,
            label=f"{name} (mean {series.mean():.3f})" if series.size else name,
        )
    if true_mi is not None:
        profile_ax.axvline(true_mi, color="tab:orange", linestyle=":", linewidth=1.2, label=f"true MI {true_mi:.3f}")
    profile_ax.set_xlabel("PMI of the joint pairs")
    profile_ax.set_ylabel("pairs")
    profile_ax.set_title("PMI profile", fontsize=9)
    profile_ax.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
