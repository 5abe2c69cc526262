"""``pdlightning fit -c mi/arrays.yaml --data.init_args.x ... --data.init_args.y ...``: the user's files of every kind
train the config's estimators, and the fit ends by printing the held-out estimate and interval per estimator
(``test_after_fit``, the module's own test) and writing them to the run's results.json."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pdlightning.cli.main import build_cli

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")


def _write(tmp_path: Path, kind: str) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    rho = math.sqrt(1 - math.exp(-2 * 1.0 / 3))  # 3 features each, I = 1 nat
    x = rng.normal(size=(300, 3))
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(300, 3))
    if kind == "npy":
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        return str(tmp_path / "x.npy"), str(tmp_path / "y.npy")
    if kind == "npz":
        np.savez(tmp_path / "pairs.npz", features=x, targets=y)
        return f"{tmp_path / 'pairs.npz'}:features", f"{tmp_path / 'pairs.npz'}:targets"
    if kind == "csv":
        np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b,c", comments="")  # with a header row
        np.savetxt(tmp_path / "y.csv", y, delimiter=",")  # without
        return str(tmp_path / "x.csv"), str(tmp_path / "y.csv")
    torch.save(torch.tensor(x, dtype=torch.float32), tmp_path / "x.pt")
    torch.save(torch.tensor(y), tmp_path / "y.pt")
    return str(tmp_path / "x.pt"), str(tmp_path / "y.pt")


def _fit(tmp_path: Path, x: str, y: str, *extra: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_cli(
            [
                "fit",
                "-c",
                "mi/arrays.yaml",
                *extra,
                f"--data.init_args.x={x}",
                f"--data.init_args.y={y}",
                "--trainer.max_steps=20",
                "--trainer.enable_progress_bar=false",
                f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
            ]
        )


@pytest.mark.parametrize("kind", ["npy", "npz", "csv", "pt"])
def test_a_fit_on_the_users_files_prints_and_writes_the_held_out_estimates(kind, tmp_path, caplog):
    x, y = _write(tmp_path, kind)
    with caplog.at_level("INFO", logger="lightning.pytorch"):
        cli = _fit(tmp_path, x, y, "--data.init_args.eval_batch_size=20")
    assert cli.trainer.global_step == 20 and (cli.model.x_dim, cli.model.y_dim) == (3, 3)  # dims from the data
    run = tmp_path / "logs" / "arrays" / "version_0"
    rows = json.loads((run / "results.json").read_text())["results"]
    assert [(r["key"], r["true_mi"], r["n"], r["unit"]) for r in rows] == [
        ("smile_tau5", None, 3, "batch"),  # 60 held-out pairs in 3 batches of 20
        ("infonce", None, 3, "batch"),
    ]
    text = caplog.text
    assert "Held-out MI per member and level (test):" in text
    for r in rows:
        line = next(line for line in text.splitlines() if line.strip().startswith(r["key"] + " "))
        assert f"{r['estimate']:9.3f}" in line and f"[{r['low']:.3f}, {r['high']:.3f}]" in line, line
        assert r["low"] < r["estimate"] < r["high"]
    assert f"(written to {run / 'results.json'})" in text


def test_the_held_out_table_is_one_evaluation_of_the_test_split(tmp_path, caplog):
    """By default the 60 held-out pairs are one batch (eval_batch_size = min(batch_size 128, 60)): one unit, no
    interval, said as such; the evaluation runs once; and test_after_fit false leaves the fit a fit."""
    x, y = _write(tmp_path, "npy")
    with caplog.at_level("INFO", logger="lightning.pytorch"):
        cli = _fit(tmp_path, x, y)
    rows = json.loads((tmp_path / "logs" / "arrays" / "version_0" / "results.json").read_text())["results"]
    assert [(r["key"], r["n"], r["unit"], r["method"], r["low"]) for r in rows] == [
        ("smile_tau5", 1, "batch", "n = 1: no interval", None),
        ("infonce", 1, "batch", "n = 1: no interval", None),
    ]
    assert "n = 1: none" in caplog.text
    assert cli.model.held_out_results["test"][0].interval.estimate == rows[0]["estimate"]
    assert caplog.text.count("Held-out MI per member and level (test):") == 1
    _fit(tmp_path, x, y, "--test_after_fit=false")
    assert not list((tmp_path / "logs" / "arrays" / "version_1").glob("results*.json"))


def test_seed_replicates_compose_and_print_the_across_seed_row(tmp_path, caplog):
    x, y = _write(tmp_path, "npy")
    with caplog.at_level("INFO", logger="lightning.pytorch"):
        cli = _fit(tmp_path, x, y, "-c", "mi/ensemble/seeds.yaml")
    assert cli.model.data_mode == "replicas" and cli.datamodule.replicas == 5
    run = next((tmp_path / "logs").glob("*/version_0"))
    rows = json.loads((run / "results.json").read_text())["results"]
    group = [r for r in rows if r["group"] == "smile_tau5"]
    assert len(rows) == 6 and len(group) == 1 and (group[0]["n"], group[0]["unit"]) == (5, "seed")
    assert group[0]["estimate"] == pytest.approx(np.mean([r["estimate"] for r in rows[:5]]))
    assert "smile_tau5 (seeds)" in caplog.text


def test_estimate_mi_and_the_cli_are_one_implementation(tmp_path):
    """The same files and settings through ``pdlightning fit -c mi/arrays.yaml`` and ``estimate_mi``: the same
    weights and the same held-out rows, to the last bit (one module, datamodule, optimiser and evaluation)."""
    import pdlightning

    x, y = _write(tmp_path, "npy")
    cli = _fit(tmp_path, x, y, "--data.init_args.eval_batch_size=20")
    result = pdlightning.estimate_mi(x, y, steps=20, eval_batch_size=20, progress=False)
    cli_state, api_state = cli.model.state_dict(), result._module.state_dict()
    assert all(torch.equal(cli_state[key], api_state[key]) for key in cli_state)
    rows = {row.key: row.interval for row in cli.model.held_out_results["test"]}
    for key in ("smile_tau5", "infonce"):
        assert (result[key].estimate, result[key].low, result[key].high) == (
            rows[key].estimate,
            rows[key].low,
            rows[key].high,
        )
