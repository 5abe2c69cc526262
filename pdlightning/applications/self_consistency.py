"""Self-consistency sweep runner (SMILE, Song & Ermon ICLR 2020, §4.2 and Figures 4-6).

For every chosen bound and every row count ``t`` it fits and tests one estimator per setting of
:class:`~pdlightning.data.SelfConsistencyDataModule` and reports the ratios a consistent estimator
must give:

=================  =========================================  =====
setting            ratio                                      ideal
=================  =========================================  =====
baseline           I(X; top_t X) / I(X; X)                    non-decreasing in t, 1 at t = H
independence       I(X; top_t X') / I(X; X)  (X' independent) 0
data_processing    I([X, X]; [top_t X, top_{t-3} X]) / I(X; top_t X)   1
additivity         I([X1, X2]; [top_t X1, top_t X2]) / I(X; top_t X)    2
=================  =========================================  =====

Every estimate is the mean of the reporting bound over held-out test batches. Each (bound, setting,
t) is a run of the shared runner layer (``<output_dir>/runs/<bound>-<setting>-t<t>/run.json``; a sweep
started again skips the finished runs). The critic's input channels come from the datamodule (its
``channels``: the images' own, doubled for the stacked settings), set on every ``in_channels`` of the
model's config, so the sweep runs on any source the datamodule reads (MNIST, CIFAR, ...). Writes
``self_consistency.csv`` (one row per run, with its command) and ``self_consistency.png``.

    pdlightning-self-consistency --config configs/consistency/sweep_mnist.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import lightning as L
from jsonargparse.typing import Path_fr

from pdlightning.runner import Run, config_path, function_cli, run_id, write_csv
from pdlightning.runner.config import instantiate, key_paths, resolved_config

from ..data.self_consistency import SETTINGS
from .sweep import bound_override, held_out_mi_estimate, sweep

__all__ = ["run_self_consistency", "consistency_ratios", "plot_ratios", "channel_overrides", "IDEAL"]

IDEAL = {"baseline": None, "independence": 0.0, "data_processing": 1.0, "additivity": 2.0}


def channel_overrides(
    configs: Sequence[str], args: Sequence[str], channel_keys: Optional[Sequence[str]] = None
) -> list[str]:
    """``--<key>=<channels>`` for the critic's input channels of one run: ``channels`` of the run's
    datamodule (asked, not recomputed) on ``channel_keys``, by default every ``in_channels`` in the
    model's config."""
    config = resolved_config(Run("config", tuple(configs), tuple(args)))
    datamodule = instantiate(config["data"], L.LightningDataModule)
    channels = getattr(datamodule, "channels", None)
    if not isinstance(channels, int):
        raise ValueError(
            f"data: {type(datamodule).__name__} declares no `channels`; the self-consistency runner "
            "needs a SelfConsistencyDataModule (or a datamodule with the critic's input channels)"
        )
    keys = (
        list(channel_keys)
        if channel_keys is not None
        else [f"model.{path}" for path in key_paths(config["model"], "in_channels")]
    )
    if not keys:
        raise ValueError(
            "channel_keys: the model's config has no `in_channels` to set to the data's "
            f"{channels} channels; name the keys with channel_keys"
        )
    return [f"--{key}={channels}" for key in keys]


def consistency_ratios(estimates: dict[tuple[str, int], float], reference_rows: int) -> list[dict[str, Any]]:
    """Turn ``{(setting, t): estimate}`` of one bound into rows with ``reference`` and ``ratio``.

    ``baseline`` and ``independence`` are divided by ``I(X; X)`` (the baseline at ``reference_rows``
    = the full image); ``data_processing`` and ``additivity`` by the baseline at the same ``t``.
    """
    rows = []
    full = estimates.get(("baseline", reference_rows))
    for (setting, t), value in sorted(estimates.items()):
        reference = full if setting in ("baseline", "independence") else estimates.get(("baseline", t))
        ratio = value / reference if reference else float("nan")
        rows.append(
            {
                "setting": setting,
                "rows": t,
                "estimate": value,
                "reference": float("nan") if reference is None else reference,
                "ratio": ratio,
                "ideal": IDEAL[setting] if IDEAL[setting] is not None else float("nan"),
            }
        )
    return rows


def plot_ratios(rows: list[dict[str, Any]], path: str) -> None:
    """One panel per setting: ratio vs rows used, a line per bound, the ideal value dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in SETTINGS if any(r["setting"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(settings), figsize=(4 * len(settings), 3.4), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        for bound in dict.fromkeys(r["bound"] for r in rows):
            points = sorted((r["rows"], r["ratio"]) for r in rows if r["bound"] == bound and r["setting"] == setting)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=bound)
        if IDEAL[setting] is not None:
            ax.axhline(IDEAL[setting], color="k", linestyle="--", linewidth=1, label="ideal")
        denominator = "I(X;X)" if setting in ("baseline", "independence") else "I(X;Y)"
        ax.set_title(f"{setting} (/ {denominator})")
        ax.set_xlabel("rows used t")
        ax.set_ylabel("ratio")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_self_consistency(
    base: list[Union[Path_fr, str]],
    bounds: dict[str, dict[str, Any]],
    rows: list[int] = [7, 14, 21],  # noqa: B006 (jsonargparse reads CLI defaults from the signature; never mutated)
    settings: list[str] = list(SETTINGS),  # noqa: B006
    reference_rows: int = 28,
    overrides: list[str] = [],  # noqa: B006
    channel_keys: Optional[list[str]] = None,
    output_dir: str = "reports/consistency",
    max_runs: Optional[int] = None,
    retry_failed: bool = False,
) -> list[dict[str, Any]]:
    """Sweep ``t`` over ``rows`` for every bound and setting; write CSV + PNG to ``output_dir``.

    Args:
        base: base ``pdlightning`` config file(s) with a :class:`SelfConsistencyDataModule`; in a runner
            config, relative to that file.
        bounds: ``{name: bound spec}`` (``{class_path, init_args}``), the estimators to compare.
        rows: the row counts ``t`` to sweep.
        settings: any of ``baseline``, ``independence``, ``data_processing``, ``additivity``;
            ``baseline`` runs whenever a ratio needs it.
        reference_rows: ``t`` of ``I(X; X)`` (the image height: 28 for MNIST, 32 for CIFAR).
        overrides: extra CLI arguments for every run (budgets, seeds).
        channel_keys: config keys set to the datamodule's ``channels`` (the encoders' ``in_channels``);
            default: every ``in_channels`` of the model's config.
        output_dir: where ``runs/``, ``self_consistency.csv`` and ``.png`` go.
        max_runs: stop after this many new runs (run again to continue).
        retry_failed: run again the runs that diverged.
    """
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"settings: unknown {unknown}; expected some of {SETTINGS}")
    if not bounds:
        raise ValueError("bounds: expected at least one bound to test")
    points: list[tuple[str, int]] = [("baseline", reference_rows)]
    for setting in ["baseline"] + [s for s in settings if s != "baseline"]:
        points += [(setting, t) for t in rows if (setting, t) not in points]
    configs = tuple(config_path(c) for c in base)
    budget = {"base": list(configs), "overrides": list(overrides)}
    runs = []
    for name, spec in bounds.items():
        for setting, t in points:
            args = [bound_override(spec), f"--data.init_args.setting={setting}", f"--data.init_args.rows={t}"]
            args += channel_overrides(configs, args + list(overrides), channel_keys) + list(overrides)
            runs.append(
                Run(
                    run_id(name, setting, f"t{t}"),
                    configs,
                    tuple(args),
                    spec={"bound": name, "setting": setting, "rows": t},
                    budget=budget,
                    test=True,
                )
            )
    records = sweep(runs, output_dir, max_runs, retry_failed, "self_consistency")
    results: list[dict[str, Any]] = []
    for name in bounds:
        estimates: dict[tuple[str, int], float] = {}
        commands: dict[tuple[str, int], str] = {}
        for run in runs:
            if run.spec["bound"] != name or run.run_id not in records:
                continue
            value = held_out_mi_estimate(records[run.run_id].metrics)
            point = (run.spec["setting"], run.spec["rows"])
            estimates[point] = float("nan") if value is None else value
            commands[point] = records[run.run_id].command or run.command
            print(f"[self_consistency] {name} {point[0]} t={point[1]}: {estimates[point]:.4f} nats", flush=True)
        for row in consistency_ratios(estimates, reference_rows):
            if row["setting"] in settings or row["setting"] == "baseline":
                results.append({"bound": name, **row, "command": commands[(row["setting"], row["rows"])]})
    if results:
        _write(results, output_dir)
    return results


def _write(results: list[dict[str, Any]], output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    write_csv(results, Path(output_dir) / "self_consistency.csv")
    plot_ratios(results, os.path.join(output_dir, "self_consistency.png"))


def main(args: Optional[list[str]] = None) -> None:
    """Console entry point ``pdlightning-self-consistency``."""
    from pdlightning.cli.errors import run_console
    from pdlightning.runner import SweepBusy

    # bad arguments, another budget or protocol in the output folder, a damaged run file, a path that cannot be
    # used: one line (pdlightning.cli.errors), as every console script
    run_console(
        "pdlightning-self-consistency",
        lambda: function_cli(run_self_consistency, args, prog="pdlightning-self-consistency"),
        (ValueError, FileNotFoundError, SweepBusy),
    )


if __name__ == "__main__":
    main()
