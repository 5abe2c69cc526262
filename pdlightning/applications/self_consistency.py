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

Every estimate is the mean of the reporting bound over held-out test batches. Writes
``self_consistency.csv`` (one row per run, with its command) and ``self_consistency.png``.

    python -m pdlightning.applications.self_consistency --config configs/consistency/sweep_mnist.yaml
"""

from __future__ import annotations

import csv
import os
from typing import Any, Optional

from ..data.self_consistency import SETTINGS
from .sweep import bound_override, command_line, function_cli, run_config, held_out_mi_estimate

__all__ = ["run_self_consistency", "consistency_ratios", "plot_ratios", "IDEAL"]

IDEAL = {"baseline": None, "independence": 0.0, "data_processing": 1.0, "additivity": 2.0}
_CHANNEL_KEYS = (
    "model.init_args.critic.init_args.x_encoder.init_args.in_channels",
    "model.init_args.critic.init_args.y_encoder.init_args.in_channels",
)


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
        rows.append({"setting": setting, "rows": t, "estimate": value,
                     "reference": float("nan") if reference is None else reference,
                     "ratio": ratio, "ideal": IDEAL[setting] if IDEAL[setting] is not None else float("nan")})
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
    base: list[str],
    bounds: dict[str, dict[str, Any]],
    rows: list[int] = [7, 14, 21],
    settings: list[str] = list(SETTINGS),
    reference_rows: int = 28,
    overrides: list[str] = [],
    channel_keys: list[str] = list(_CHANNEL_KEYS),
    output_dir: str = "reports/consistency",
) -> list[dict[str, Any]]:
    """Sweep ``t`` over ``rows`` for every bound and setting; write CSV + PNG to ``output_dir``.

    Args:
        base: base ``pdlightning`` config file(s) with a :class:`SelfConsistencyDataModule`.
        bounds: ``{name: bound spec}`` (``{class_path, init_args}``), the estimators to compare.
        rows: the row counts ``t`` to sweep.
        settings: any of ``baseline``, ``independence``, ``data_processing``, ``additivity``;
            ``baseline`` runs whenever a ratio needs it.
        reference_rows: ``t`` of ``I(X; X)`` (the image height: 28 for MNIST, 32 for CIFAR).
        overrides: extra CLI arguments for every run (budgets, seeds).
        channel_keys: config keys set to the number of stacked channels (2 for data processing and
            additivity): the encoders' ``in_channels``.
        output_dir: where ``self_consistency.csv`` / ``.png`` go.
    """
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"settings: unknown {unknown}; expected some of {SETTINGS}")
    if not bounds:
        raise ValueError("bounds: expected at least one bound to test")
    runs: list[tuple[str, int]] = [("baseline", reference_rows)]
    for setting in ["baseline"] + [s for s in settings if s != "baseline"]:
        runs += [(setting, t) for t in rows if (setting, t) not in runs]
    os.makedirs(output_dir, exist_ok=True)
    results: list[dict[str, Any]] = []
    for name, spec in bounds.items():
        estimates: dict[tuple[str, int], float] = {}
        commands: dict[tuple[str, int], str] = {}
        for setting, t in runs:
            channels = 2 if setting in ("data_processing", "additivity") else 1
            args = [bound_override(spec), f"--data.init_args.setting={setting}", f"--data.init_args.rows={t}"]
            args += [f"--{key}={channels}" for key in channel_keys] + list(overrides)
            metrics = run_config(base, args)
            value = held_out_mi_estimate(metrics)
            estimates[(setting, t)] = float("nan") if value is None else value
            commands[(setting, t)] = command_line(base, args)
            print(f"[self_consistency] {name} {setting} t={t}: {estimates[(setting, t)]:.4f} nats", flush=True)
        for row in consistency_ratios(estimates, reference_rows):
            if row["setting"] in settings or row["setting"] == "baseline":
                results.append({"bound": name, **row, "command": commands[(row["setting"], row["rows"])]})
        _write(results, output_dir)
    return results


def _write(results: list[dict[str, Any]], output_dir: str) -> None:
    with open(os.path.join(output_dir, "self_consistency.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    plot_ratios(results, os.path.join(output_dir, "self_consistency.png"))


def main(args: Optional[list[str]] = None) -> None:
    function_cli(run_self_consistency, args)


if __name__ == "__main__":
    main()
