"""SLB / CLB table runner: MI estimate and test accuracy per loss, original vs Re-X (ReMINE Table 2).

Each ``(loss, form, seed)`` is one ``pdlightning fit`` + ``test`` of a base config with the bound
swapped; the table reports the held-out MI estimate (negative estimates clipped to 0, as in the
paper) and test accuracy, mean +- 95% confidence half-width over seeds (Student t).

    python -m pdlightning.applications.mi_benchmark --config configs/slb/table_mnist.yaml
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Mapping, Optional, Sequence

from .sweep import bound_override, command_line, function_cli, run_config, held_out_mi_estimate

__all__ = ["run_mi_benchmark", "format_table", "confidence_interval"]

# Two-sided 95% Student-t quantiles for 1..10 degrees of freedom (normal beyond).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def confidence_interval(values: Sequence[float]) -> tuple[float, float]:
    """``(mean, 95% half-width)``; the half-width is NaN for a single value."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan")
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    quantile = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return mean, quantile * std / math.sqrt(n)


def _cell(values: Sequence[float], digits: int = 3) -> str:
    if not values:
        return "-"
    mean, half = confidence_interval(values)
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def format_table(rows: Sequence[Mapping[str, Any]], title: str, true_mi: Optional[float] = None) -> str:
    """Markdown table in the layout of ReMINE's Table 2 (one line per loss)."""
    losses = list(dict.fromkeys(r["loss"] for r in rows))
    head = f"### {title}" + (f" (true MI = H(Y) = {true_mi:.3f} nats)" if true_mi is not None else "")
    lines = [head, "", "| Loss | MI original | MI regularized | Acc. original | Acc. regularized |",
             "|---|---|---|---|---|"]
    for loss in losses:
        cells = []
        for key in ("mi_clipped", "accuracy"):
            for form in ("original", "regularized"):
                values = [r[key] for r in rows if r["loss"] == loss and r["form"] == form and r[key] is not None
                          and not math.isnan(r[key])]
                cells.append(_cell(values))
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_mi_benchmark(
    base: list[str],
    losses: dict[str, dict[str, dict[str, Any]]],
    seeds: list[int] = [0],
    overrides: list[str] = [],
    output_dir: str = "reports/mi_benchmark",
    title: str = "MI benchmark",
) -> list[dict[str, Any]]:
    """Fit and test every loss in its ``original`` and ``regularized`` form for every seed.

    Args:
        base: the base ``pdlightning`` config file(s) (critic, data, trainer, accuracy callback).
        losses: ``{name: {"original": bound spec, "regularized": bound spec}}``; a spec is a
            ``{class_path, init_args}`` dict, as in YAML. Either form may be omitted.
        seeds: ``seed_everything`` values; 5 in the paper.
        overrides: extra CLI arguments for every run (e.g. ``--trainer.max_steps=200``).
        output_dir: receives ``results.csv`` (one row per run, with its command) and ``table.md``.
        title: table heading.
    """
    if not losses:
        raise ValueError("losses: expected at least one loss")
    rows: list[dict[str, Any]] = []
    os.makedirs(output_dir, exist_ok=True)
    for name, forms in losses.items():
        unknown = set(forms) - {"original", "regularized"}
        if unknown:
            raise ValueError(f"losses.{name}: forms must be 'original' and/or 'regularized', got {sorted(unknown)}")
        for form, spec in forms.items():
            for seed in seeds:
                args = [bound_override(spec), f"--seed_everything={seed}", *overrides]
                metrics = run_config(base, args)
                mi = held_out_mi_estimate(metrics)
                mi = float("nan") if mi is None else mi
                rows.append({
                    "loss": name, "form": form, "seed": seed, "mi": mi,
                    "mi_clipped": max(mi, 0.0) if math.isfinite(mi) else float("nan"),
                    "accuracy": metrics.get("test/accuracy", float("nan")),
                    "true_mi": metrics.get("mi/true", float("nan")),
                    "command": command_line(base, args),
                })
                print(f"[mi_benchmark] {name} {form} seed {seed}: MI {mi:.4f}, accuracy {rows[-1]['accuracy']:.4f}",
                      flush=True)
                _write(rows, output_dir, title)
    return rows




def _write(rows: list[dict[str, Any]], output_dir: str, title: str) -> None:
    with open(os.path.join(output_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(os.path.join(output_dir, "table.md"), "w") as f:
        true_mi = rows[0]["true_mi"]
        f.write(format_table(rows, title, true_mi if math.isfinite(true_mi) else None))


def main(args: Optional[list[str]] = None) -> None:
    function_cli(run_mi_benchmark, args)


if __name__ == "__main__":
    main()
