"""SLB / CLB table runner: MI estimate and test accuracy per loss, original vs Re-X (ReMINE Table 2).

Each ``(loss, form, seed)`` is one ``pdlightning fit`` + ``test`` of a base config with the bound
swapped, a run of the shared runner layer (``<output_dir>/runs/<loss>-<form>-seed<seed>/run.json``;
a sweep started again skips the finished runs); the table reports the held-out MI estimate
(negative estimates clipped to 0, as in the paper) and test accuracy, mean +- 95% confidence
half-width over seeds (Student t). A run whose bound diverges is a row with NaN values.

    pdlightning-mi-benchmark --config configs/slb/table_mnist.yaml
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import yaml
from jsonargparse.typing import Path_fr

from pdlightning.runner import Run, config_path, function_cli, markdown_table, run_id, write_csv

from .sweep import bound_override, held_out_mi_estimate, sweep

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
    body = []
    for loss in losses:
        cells = []
        for key in ("mi_clipped", "accuracy"):
            for form in ("original", "regularized"):
                values = [
                    r[key]
                    for r in rows
                    if r["loss"] == loss and r["form"] == form and r[key] is not None and not math.isnan(r[key])
                ]
                cells.append(_cell(values))
        body.append([loss] + cells)
    header = ["Loss", "MI original", "MI regularized", "Acc. original", "Acc. regularized"]
    return head + "\n\n" + markdown_table(header, body)


def _losses(losses: Union[os.PathLike, str, Mapping]) -> dict[str, dict[str, dict[str, Any]]]:
    if isinstance(losses, Mapping):
        return dict(losses)
    path = config_path(losses)
    with open(path) as f:
        loaded = yaml.safe_load(f)
    if not isinstance(loaded, dict):
        raise ValueError(f"losses: {path} should map loss names to {{original, regularized}} bound specs")
    return loaded


def run_mi_benchmark(
    base: list[Union[Path_fr, str]],
    losses: Union[Path_fr, str, dict[str, dict[str, dict[str, Any]]]],
    seeds: list[int] = [0],  # noqa: B006 (jsonargparse reads CLI defaults from the signature; never mutated)
    overrides: list[str] = [],  # noqa: B006
    output_dir: str = "reports/mi_benchmark",
    title: str = "MI benchmark",
    max_runs: Optional[int] = None,
    retry_failed: bool = False,
) -> list[dict[str, Any]]:
    """Fit and test every loss in its ``original`` and ``regularized`` form for every seed.

    Args:
        base: the base ``pdlightning`` config file(s) (critic, data, trainer, accuracy callback);
            in a runner config, relative to that file.
        losses: ``{name: {"original": bound spec, "regularized": bound spec}}`` or a YAML file of it;
            a spec is a ``{class_path, init_args}`` dict, as in YAML. Either form may be omitted.
        seeds: ``seed_everything`` values; 5 in the paper.
        overrides: extra CLI arguments for every run (e.g. ``--trainer.max_steps=200``).
        output_dir: receives ``runs/`` (one ``run.json`` per run), ``results.csv`` (one row per run,
            with its command) and ``table.md``.
        title: table heading.
        max_runs: stop after this many new runs (run again to continue).
        retry_failed: run again the runs that diverged.
    """
    losses = _losses(losses)
    if not losses:
        raise ValueError("losses: expected at least one loss")
    for name, forms in losses.items():
        unknown = set(forms) - {"original", "regularized"}
        if unknown:
            raise ValueError(f"losses.{name}: forms must be 'original' and/or 'regularized', got {sorted(unknown)}")
    configs = tuple(config_path(c) for c in base)
    budget = {"base": list(configs), "overrides": list(overrides)}
    runs = [
        Run(
            run_id(name, form, f"seed{seed}"),
            configs,
            (bound_override(spec), f"--seed_everything={seed}", *overrides),
            spec={"loss": name, "form": form, "seed": seed},
            budget=budget,
            test=True,
        )
        for name, forms in losses.items()
        for form, spec in forms.items()
        for seed in seeds
    ]
    records = sweep(runs, output_dir, max_runs, retry_failed, "mi_benchmark")
    rows: list[dict[str, Any]] = []
    for run in runs:
        if run.run_id not in records:
            continue
        record = records[run.run_id]
        mi = held_out_mi_estimate(record.metrics)
        mi = float("nan") if mi is None else mi
        rows.append(
            {
                **run.spec,
                "mi": mi,
                "mi_clipped": max(mi, 0.0) if math.isfinite(mi) else float("nan"),
                "accuracy": record.metrics.get("test/accuracy", float("nan")),
                "true_mi": record.metrics.get("mi/true", float("nan")),
                "status": record.status,
                "command": record.command,
            }
        )
        print(
            f"[mi_benchmark] {run.spec['loss']} {run.spec['form']} seed {run.spec['seed']}: MI {mi:.4f}, "
            f"accuracy {rows[-1]['accuracy']:.4f}",
            flush=True,
        )
    if rows:
        _write(rows, output_dir, title)
    return rows


def _write(rows: list[dict[str, Any]], output_dir: str, title: str) -> None:
    write_csv(rows, Path(output_dir) / "results.csv")
    true_mi = rows[0]["true_mi"]
    (Path(output_dir) / "table.md").write_text(format_table(rows, title, true_mi if math.isfinite(true_mi) else None))


def main(args: Optional[list[str]] = None) -> None:
    """Console entry point ``pdlightning-mi-benchmark``."""
    from pdlightning.cli.errors import run_console
    from pdlightning.runner import SweepBusy

    # bad arguments, another budget or protocol in the output folder, a damaged run file, a path that cannot be
    # used: one line (pdlightning.cli.errors), as every console script
    run_console(
        "pdlightning-mi-benchmark",
        lambda: function_cli(run_mi_benchmark, args, prog="pdlightning-mi-benchmark"),
        (ValueError, FileNotFoundError, SweepBusy),
    )


if __name__ == "__main__":
    main()
