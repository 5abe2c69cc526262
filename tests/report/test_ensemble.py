"""The report on vectorised ensembles: one fit per task and critic holds every estimator and seed, gives
the single-fit path's numbers, and renders the mean ± standard error over seeds."""

from __future__ import annotations

import csv
import json

import pytest

from pdlightning.records import MemberId
from pdlightning.report.ensemble import member_id, member_identity
from pdlightning.report.main import main

ARGS = [
    "--steps-per-level",
    "4",
    "--levels",
    "2",
    "4",
    "--batch-size",
    "16",
    "--tasks",
    "gaussian",
    "--critics",
    "joint",
    "--estimators",
    "nwj",
    "smile_tauinf",
]  # SMILE's tau = .inf must reach the CLI


def _rows(path) -> dict[tuple, dict]:
    with open(path) as f:
        return {(r["estimator"], float(r["true_mi"]), int(r["seed"])): r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_one_seed_ensemble_gives_the_single_fit_numbers(tmp_path):
    """The same sweep as one ensemble fit and as one fit per estimator: every bias / variance / MSE of
    the table agrees to float32 rounding (the members are the single runs, see the module tests)."""
    assert main(["--out", str(tmp_path / "single"), *ARGS, "--single-fits"]) == 0
    assert main(["--out", str(tmp_path / "ensemble"), *ARGS]) == 0
    assert sorted(p.name for p in (tmp_path / "ensemble" / "runs").iterdir()) == ["gaussian-joint-nwj+smile_tauinf"]
    single, ensemble = _rows(tmp_path / "single" / "results.csv"), _rows(tmp_path / "ensemble" / "results.csv")
    assert set(single) == set(ensemble) and len(single) == 4
    for key, row in single.items():
        for metric in ("mean", "bias", "variance", "mse"):
            assert float(ensemble[key][metric]) == pytest.approx(float(row[metric]), abs=1e-4), (key, metric)
    report = (tmp_path / "ensemble" / "report.md").read_text()
    assert "Seed 0 (one seed: n = 1, no standard errors)" in report and " ± " not in report.split("## Held-out")[0]
    assert "## Held-out estimates" in report and "(n = 8 batchs)" not in report and "(n = 8 batches)" in report


@pytest.mark.slow
def test_seeds_give_mean_and_standard_error_across_seeds_and_resume(tmp_path, capsys):
    assert main(["--out", str(tmp_path), *ARGS, "--seeds", "3"]) == 0
    run = tmp_path / "runs" / "gaussian-joint-nwj+smile_tauinf-3seeds"
    record = json.loads((run / "run.json").read_text())
    assert record["spec"]["mode"] == "ensemble" and record["spec"]["seeds"] == 3 and record["status"] == "ok"
    assert "--data.init_args.replicas=3" in record["command"]
    rows = _rows(tmp_path / "results.csv")
    assert {seed for (_, _, seed) in rows} == {0, 1, 2} and len(rows) == 2 * 2 * 3
    report = (tmp_path / "report.md").read_text()
    assert "Seeds 0, 1, 2: each cell is the mean over the 3 seeds ± its standard error across seeds." in report
    table = report.split("## Joint critic")[1].split("##")[0]
    assert table.count(" ± ") == 2 * 2 * 3  # every cell: 2 estimators x 2 levels x 3 metrics
    assert "(n = 3 seeds)" in report.split("## Held-out")[1]
    capsys.readouterr()
    assert main(["--out", str(tmp_path), *ARGS, "--seeds", "3"]) == 0  # finished: not redone
    assert "finished earlier" in capsys.readouterr().out


def test_member_identities_are_stored_and_read_back_and_bad_seeds_are_named(tmp_path, capsys):
    """A run's members are who run.json says (key, seed, name); runs written before identities were stored are read
    from the report's old names ``<key>-seed<s>`` (replicate s of the budget's base seed)."""
    from pdlightning.runner import RunRecord

    replicate = member_id("pd_matching_1", 12, seeds=3)
    assert (replicate.key, replicate.seed, replicate.name) == ("pd_matching_1", 12, "pd_matching_1_s12")
    assert member_id("nwj", 4, seeds=1) == MemberId("nwj", 4, "nwj")
    record = RunRecord(
        spec={}, budget={"seed": 10}, status="ok", seconds=1.0, steps=1, extra={"members": [replicate.as_json()]}
    )
    assert member_identity(record, "pd_matching_1_s12") == replicate
    assert member_identity(record, None) == replicate  # a run of one member: its only identity
    old = RunRecord(spec={}, budget={"seed": 10}, status="ok", seconds=1.0, steps=1)
    assert member_identity(old, "smile_tau5-seed2") == MemberId("smile_tau5", 12, "smile_tau5-seed2")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), *ARGS, "--seeds", "0"])
    assert "seeds: expected an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), *ARGS, "--seeds", "2", "--single-fits"])
    assert "seeds: replicate seeds run as ensembles" in capsys.readouterr().err


def test_a_member_that_diverged_is_marked_and_the_others_are_stopped_not_diverged():
    """One member's divergence stops the whole ensemble fit: only that member is '(diverged)'; the
    others' streams are valid up to the stop and are marked as stopped early (‡), not as diverged."""
    import numpy as np

    from pdlightning.report.results import RunResult, RunSpec
    from pdlightning.report.tables import STOPPED, table2_markdown
    from pdlightning.runner import RunRecord

    record = RunRecord(
        spec={}, budget={"steps_per_level": 3, "levels": [2.0], "batch_size": 64, "seed": 0}, status="failed", seconds=1.0, steps=3, command="",
        error="NonFiniteBoundError: member 'nwj-seed0': bound NWJ: non-finite loss=inf at step 3",
    )  # fmt: skip
    stream = (np.arange(3), np.full(3, 2.0), np.array([1.0, 1.5, 1.8]))
    nwj = RunResult(RunSpec("cubic", "separable", "nwj"), record, *stream, member="nwj-seed0")
    smile = RunResult(RunSpec("cubic", "separable", "smile_tau5"), record, *stream, member="smile_tau5-seed0")
    single = RunResult(RunSpec("cubic", "separable", "infonce"), record, *stream)
    assert (nwj.status, smile.status, single.status) == ("failed", "stopped", "failed")
    table = table2_markdown([*nwj.rows(), *smile.rows()], "separable", ["nwj", "smile_tau5"], ["cubic"])
    assert "| NWJ (diverged) |" in table and f"| SMILE τ=5 {STOPPED} |" in table


def test_a_retired_member_is_diverged_and_the_finished_members_are_plain():
    """Report ensembles retire a diverged member (on_member_divergence='retire'): the fit ends 'ok', the
    record keeps who was retired, and only that member is marked."""
    import numpy as np

    from pdlightning.report.results import RunResult, RunSpec
    from pdlightning.report.tables import table2_markdown
    from pdlightning.runner import RunRecord

    record = RunRecord(
        spec={}, budget={"steps_per_level": 3, "levels": [2.0], "batch_size": 64, "seed": 0}, status="ok",
        seconds=1.0, steps=3, command="",
        extra={"retired": {"nwj-seed0": {"step": 2, "error": "member 'nwj-seed0': bound NWJ: non-finite loss"}}},
    )  # fmt: skip
    stream = (np.arange(3), np.full(3, 2.0), np.array([1.0, 1.5, 1.8]))
    nwj = RunResult(RunSpec("cubic", "separable", "nwj"), record, *stream, member="nwj-seed0")
    smile = RunResult(RunSpec("cubic", "separable", "smile_tau5"), record, *stream, member="smile_tau5-seed0")
    assert (nwj.status, smile.status) == ("failed", "ok")
    table = table2_markdown([*nwj.rows(), *smile.rows()], "separable", ["nwj", "smile_tau5"], ["cubic"])
    assert "| NWJ (diverged) |" in table and "| SMILE τ=5 |" in table


def test_report_ensembles_retire_a_diverged_member(tmp_path):
    from pdlightning.report.ensemble import EnsembleSpec, to_ensemble_run
    from pdlightning.report.sweep import Budget, default_configs_dir, to_run
    from pdlightning.report.sweep import RunSpec as SweepSpec

    configs = default_configs_dir()
    budget = Budget(steps_per_level=10, levels=(2.0,))
    single = to_run(SweepSpec("gaussian", "joint", "nwj"), budget, configs)
    run = to_ensemble_run(EnsembleSpec("gaussian", "joint", ("nwj", "smile_tau5")), budget, configs, single)
    model = run.settings["model"]["init_args"]  # handed to the CLI's parser as data, not as a YAML string
    assert model["on_member_divergence"] == "retire" and not any("--model=" in o for o in run.overrides)
    assert [m["key"] for m in model["members"]] == ["nwj", "smile_tau5"]


def test_the_header_says_which_cells_ran_with_one_seed():
    """A report that pools a 5-seed separable fit with a 1-seed joint one says that cells without ± are one seed."""
    import numpy as np

    from pdlightning.report.results import RunResult, RunSpec
    from pdlightning.report.tables import _seeds_note
    from pdlightning.runner import RunRecord

    budget = {"steps_per_level": 3, "levels": [2.0], "batch_size": 64, "seed": 0}
    record = RunRecord(spec={}, budget=budget, status="ok", seconds=1.0, steps=3, command="")
    stream = (np.arange(3), np.full(3, 2.0), np.array([1.0, 1.5, 1.8]))
    seeds = [RunResult(RunSpec("cubic", "separable", "nwj"), record, *stream, seed=s) for s in range(5)]
    joint = RunResult(RunSpec("cubic", "joint", "nwj"), record, *stream, seed=0)
    assert "one seed" not in _seeds_note(seeds, seeds[0].budget)
    assert "Cells without ± are rows that ran with one seed." in _seeds_note([*seeds, joint], joint.budget)
