"""The sweep report: resume without redoing finished runs, budget guard, Table 2 layout, grid."""

from __future__ import annotations

import csv
import json

import pytest

from pdlightning.report import Budget, plan, run_sweep
from pdlightning.report.main import main
from pdlightning.report.results import ResultRow
from pdlightning.report.tables import comparison_markdown, table2_markdown

TINY = Budget(steps_per_level=3, levels=(2.0, 4.0), batch_size=16, seed=0)


def test_resume_skips_finished_runs_and_redoes_a_half_finished_one(tmp_path):
    specs = plan(["cpc", "nwj"], ["gaussian"], ["joint"])
    lines: list[str] = []
    first = run_sweep(specs, TINY, tmp_path, max_runs=1, log=lines.append)
    assert list(first) == specs[:1] and first[specs[0]].status == "ok" and first[specs[0]].steps == 6
    assert any("stopping after 1 new runs" in line for line in lines)
    done = tmp_path / "runs" / specs[0].run_id / "run.json"
    stamp = done.stat().st_mtime_ns
    # A run killed midway leaves a directory without run.json: it is redone from scratch.
    half = tmp_path / "runs" / specs[1].run_id
    half.mkdir(parents=True)
    (half / "estimates.csv").write_text("step,true_mi,estimate\n0,2.0,99.0\n")

    lines.clear()
    second = run_sweep(specs, TINY, tmp_path, log=lines.append)
    assert set(second) == set(specs)
    assert done.stat().st_mtime_ns == stamp, "a finished run was redone"
    assert any(f"{specs[0].run_id}: finished earlier" in line for line in lines)
    assert any(line.startswith("[2/2]") and "running" in line for line in lines)
    assert lines[-1].endswith("2/2 runs done")
    with open(half / "estimates.csv") as f:
        stream = list(csv.DictReader(f))
    assert len(stream) == TINY.total_steps and all(float(r["estimate"]) != 99.0 for r in stream)

    # A third call has nothing to do; the CLI renders the report of what is there.
    assert main(["--out", str(tmp_path), "--steps-per-level", "3", "--levels", "2", "4", "--batch-size", "16",
                 "--estimators", "cpc", "nwj", "--tasks", "gaussian", "--critics", "joint"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "CPC (InfoNCE)" in report and "NWJ" in report and "**3 steps per level**" in report
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["estimator"], float(r["true_mi"])) for r in rows} == {("cpc", 2.0), ("cpc", 4.0), ("nwj", 2.0), ("nwj", 4.0)}
    assert all(int(r["steps"]) == 3 for r in rows)
    assert (tmp_path / "staircase_grid.png").stat().st_size > 0

    # Another budget in the same directory is refused rather than mixed into the tables.
    with pytest.raises(ValueError, match="out"):
        run_sweep(specs, Budget(steps_per_level=4, levels=(2.0, 4.0), batch_size=16), tmp_path, log=lines.append)


def test_names_and_budget_are_checked():
    with pytest.raises(ValueError, match="estimators"):
        plan(["nope"], ["gaussian"], ["joint"])
    with pytest.raises(ValueError, match="critics"):
        plan(["cpc"], ["gaussian"], ["bilinear"])
    with pytest.raises(ValueError, match="steps_per_level"):
        Budget(steps_per_level=0)
    with pytest.raises(ValueError, match="levels"):
        Budget(levels=(2.0, -1.0))


def _row(estimator, task, level, bias, variance, critic="joint"):
    return ResultRow(task, critic, estimator, level, 100, level + bias, bias, variance, bias**2 + variance, "ok")


def test_table2_layout_blocks_and_absolute_bias():
    rows = [_row("nwj", "gaussian", 2.0, -0.5, 0.1), _row("nwj", "gaussian", 4.0, 0.25, 2.0),
            _row("nwj", "cubic", 2.0, -1.0, 0.05), _row("cpc", "gaussian", 2.0, -0.2, 0.01)]
    lines = table2_markdown(rows, "joint", ["cpc", "nwj"], ["gaussian", "cubic"]).splitlines()
    assert lines[0] == "|  | estimator | Gaussian 2 | Gaussian 4 | Cubic 2 | Cubic 4 |"
    assert lines[2] == "| **Bias (abs)** | CPC (InfoNCE) | 0.20 | – | – | – |"
    assert lines[3] == "|  | NWJ | 0.50 | 0.25 | 1.00 | – |"
    assert lines[5] == "|  | NWJ | 0.10 | 2.00 | 0.05 | – |"
    assert lines[6].startswith("| **MSE** | CPC (InfoNCE) | 0.05 |")


def test_comparison_puts_ours_next_to_the_paper():
    markdown = comparison_markdown([_row("nwj", "gaussian", 2.0, -0.5, 0.1)], ["nwj", "pc"], ["gaussian"])
    assert "| **Bias (abs)** | NWJ | 0.50 / 0.12 |" in markdown
    assert "| **Var** | NWJ | 0.10 / 0.06 |" in markdown
    assert "Probabilistic" not in markdown  # no published row


def test_run_record_is_plain_json(tmp_path):
    specs = plan(["smile_tauinf"], ["cubic"], ["separable"])
    records = run_sweep(specs, Budget(steps_per_level=2, levels=(2.0,), batch_size=8), tmp_path, log=lambda _: None)
    with open(tmp_path / "runs" / specs[0].run_id / "run.json") as f:
        record = json.load(f)
    assert record["spec"] == {"task": "cubic", "critic": "separable", "estimator": "smile_tauinf"}
    assert record["status"] == "ok" and record["steps"] == 2 and records[specs[0]].candidates == 8
    config = (tmp_path / "runs" / specs[0].run_id / "tb" / "config.yaml").read_text()
    assert "SeparableCritic" in config and "tau: .inf" in config and "cubic: true" in config


def test_a_run_finished_by_a_parallel_sweep_is_not_redone(tmp_path, monkeypatch):
    from pdlightning.report import sweep

    specs = plan(["cpc", "nwj"], ["gaussian"], ["joint"])
    ran = []

    def fake_run_one(spec, budget, configs, run_dir):
        ran.append(spec)
        run_dir.mkdir(parents=True)
        record = sweep.RunRecord(spec={}, budget=budget.as_json(), status="ok", seconds=1.0, steps=1)
        sweep._write_record(run_dir, record)
        # Meanwhile another process finishes the next run.
        other = tmp_path / "runs" / specs[1].run_id
        other.mkdir(parents=True, exist_ok=True)
        sweep._write_record(other, record)
        return record

    monkeypatch.setattr(sweep, "run_one", fake_run_one)
    lines: list[str] = []
    records = run_sweep(specs, TINY, tmp_path, log=lines.append)
    assert ran == specs[:1] and set(records) == set(specs)
    assert any("finished meanwhile by another process" in line for line in lines)


def test_a_run_claimed_by_a_live_process_is_left_alone(tmp_path, monkeypatch):
    import subprocess
    import sys

    from pdlightning.report import sweep

    specs = plan(["cpc", "nwj"], ["gaussian"], ["joint"])
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        claimed = tmp_path / "runs" / specs[0].run_id
        claimed.mkdir(parents=True)
        (claimed / "owner.pid").write_text(str(live.pid))
        stale = tmp_path / "runs" / specs[1].run_id
        stale.mkdir(parents=True)
        (stale / "owner.pid").write_text("999999999")  # no such process: a killed sweep's claim
        ran = []
        monkeypatch.setattr(sweep, "run_one", lambda spec, *a: ran.append(spec) or sweep.RunRecord(
            spec={}, budget=TINY.as_json(), status="ok", seconds=1.0, steps=1))
        lines: list[str] = []
        run_sweep(specs, TINY, tmp_path, log=lines.append)
        assert ran == specs[1:]
        assert any(f"running in another process (pid {live.pid})" in line for line in lines)
    finally:
        live.kill()


def test_bad_burn_in_is_refused_with_its_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--burn-in", "1.5", "--render-only"])
    assert "burn_in" in capsys.readouterr().err
