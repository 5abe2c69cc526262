"""The sweep report: resume without redoing finished runs, budget guard, Table 2 layout, grid."""

from __future__ import annotations

import csv
import json
import math

import pytest

from pdlightning.report import Budget, plan, run_sweep
from pdlightning.report.main import main
from pdlightning.report.results import ResultRow
from pdlightning.report.tables import comparison_markdown, table2_markdown

TINY = Budget(steps_per_level=3, levels=(2.0, 4.0), batch_size=16, seed=0)


@pytest.mark.slow
def test_resume_skips_finished_runs_and_redoes_a_half_finished_one(tmp_path):
    specs = plan(["infonce", "nwj"], ["gaussian"], ["joint"])
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
    assert (
        main(
            [
                "--out",
                str(tmp_path),
                "--steps-per-level",
                "3",
                "--levels",
                "2",
                "4",
                "--batch-size",
                "16",
                "--estimators",
                "infonce",
                "nwj",
                "--tasks",
                "gaussian",
                "--critics",
                "joint",
            ]
        )
        == 0
    )
    report = (tmp_path / "report.md").read_text()
    assert "CPC (InfoNCE)" in report and "NWJ" in report and "**3 steps per level**" in report
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["estimator"], float(r["true_mi"])) for r in rows} == {
        ("infonce", 2.0),
        ("infonce", 4.0),
        ("nwj", 2.0),
        ("nwj", 4.0),
    }
    assert all(int(r["steps"]) == 3 for r in rows)
    assert (tmp_path / "staircase_grid.png").stat().st_size > 0

    # Another budget in the same directory is refused rather than mixed into the tables.
    with pytest.raises(ValueError, match="out"):
        run_sweep(specs, Budget(steps_per_level=4, levels=(2.0, 4.0), batch_size=16), tmp_path, log=lines.append)


def test_names_and_budget_are_checked():
    with pytest.raises(ValueError, match="estimators"):
        plan(["nope"], ["gaussian"], ["joint"])
    with pytest.raises(ValueError, match="critics"):
        plan(["infonce"], ["gaussian"], ["bilinear"])
    with pytest.raises(ValueError, match="steps_per_level"):
        Budget(steps_per_level=0)
    with pytest.raises(ValueError, match="levels"):
        Budget(levels=(2.0, -1.0))


def _row(estimator, task, level, bias, variance, critic="joint"):
    return ResultRow(task, critic, estimator, level, 100, level + bias, bias, variance, bias**2 + variance, "ok")


def test_table2_layout_blocks_and_absolute_bias():
    rows = [
        _row("nwj", "gaussian", 2.0, -0.5, 0.1),
        _row("nwj", "gaussian", 4.0, 0.25, 2.0),
        _row("nwj", "cubic", 2.0, -1.0, 0.05),
        _row("infonce", "gaussian", 2.0, -0.2, 0.01),
    ]
    lines = table2_markdown(rows, "joint", ["infonce", "nwj"], ["gaussian", "cubic"]).splitlines()
    assert lines[0] == "|  | estimator | Gaussian 2 | Gaussian 4 | Cubic 2 | Cubic 4 |"
    assert lines[2] == "| **Bias (abs)** | CPC (InfoNCE) | 0.20 | – | – | – |"
    assert lines[3] == "|  | NWJ | 0.50 | 0.25 | 1.00 | – |"
    assert lines[5] == "|  | NWJ | 0.10 | 2.00 | 0.05 | – |"
    assert lines[6].startswith("| **MSE** | CPC (InfoNCE) | 0.05 |")


def test_comparison_puts_ours_next_to_the_paper():
    markdown = comparison_markdown([_row("nwj", "gaussian", 2.0, -0.5, 0.1)], ["nwj", "pd_classifier"], ["gaussian"])
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


@pytest.mark.slow
def test_a_second_sweep_into_the_same_out_is_refused_while_the_first_runs(tmp_path):
    """Each run starts from an empty directory, so two sweeps over one --out would restart each other's
    runs: the second is refused (naming the first's pid) for as long as the first holds the out's lock,
    which goes with its process, a kill -9 included."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from pdlightning.runner import SweepBusy

    specs = plan(["infonce"], ["gaussian"], ["joint"])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; from pdlightning.runner.schedule import sweep_lock\n"
                "with sweep_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(120)"
            ),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SweepBusy, match=f"out: another sweep \\(pid {holder.pid}\\) is running in"):
            run_sweep(specs, TINY, tmp_path, log=lambda _: None)
        assert not (tmp_path / "runs").exists(), "the refused sweep touched the runs"
        with pytest.raises(SystemExit):  # the CLI says it as a usage error
            main(
                [
                    "--out",
                    str(tmp_path),
                    "--steps-per-level",
                    "3",
                    "--levels",
                    "2",
                    "4",
                    "--batch-size",
                    "16",
                    "--estimators",
                    "infonce",
                    "--tasks",
                    "gaussian",
                    "--critics",
                    "joint",
                ]
            )
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
    time.sleep(0.1)
    records = run_sweep(specs, TINY, tmp_path, log=lambda _: None)  # a killed sweep leaves no stale lock
    assert records[specs[0]].status == "ok"


def test_bad_burn_in_is_refused_with_its_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--burn-in", "1.5", "--render-only"])
    assert "burn_in" in capsys.readouterr().err


def _configs_with(tmp_path, fragments: dict[str, str]):
    """A copy of the packaged configs with extra bound fragments (``{key: class_path + init_args YAML}``)."""
    import shutil

    from pdlightning.cli.configs import packaged_configs_dir

    configs = tmp_path / "configs"
    shutil.copytree(packaged_configs_dir(), configs, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for key, bound in fragments.items():
        (configs / "mi" / "bounds" / f"{key}.yaml").write_text(
            "model:\n  init_args:\n    bound:\n" + "".join(f"      {line}\n" for line in bound.splitlines())
        )
    return configs


TINY_ARGS = [
    "--steps-per-level",
    "3",
    "--levels",
    "2",
    "4",
    "--batch-size",
    "16",
    "--tasks",
    "gaussian",
    "--critics",
    "joint",
    "--single-fits",
]  # the one-fit-per-estimator path (ensembles: test_ensemble.py)


def test_a_new_bound_is_one_class_and_one_fragment_for_the_report(tmp_path):
    """The report lists every fragment of <configs>/mi/bounds/ and labels an undocumented one with its
    Bound.label; the run record carries that label and the bound's own value ceiling."""
    from pdlightning.report import estimators

    toy = "class_path: tests.report.toy_bound.ToyBound\ninit_args: {scale: 2.0}"
    configs = _configs_with(tmp_path, {"toy_dv": toy})
    found = estimators(configs)
    assert "toy_dv" in found and found["toy_dv"].label == "Toy(s=2)" and found["toy_dv"].settles_at is None
    assert "toy_dv" not in estimators() and set(estimators()) <= set(found)
    assert list(found)[:3] == ["infonce", "nwj", "js"]  # documented rows first, in the papers' order

    out = tmp_path / "out"
    assert main(["--out", str(out), "--configs", str(configs), "--estimators", "toy_dv", *TINY_ARGS]) == 0
    record = json.loads((out / "runs" / "gaussian-joint-toy_dv" / "run.json").read_text())
    assert record["label"] == "Toy(s=2)" and record["ceiling"] == pytest.approx(math.log(16) + 1.0)
    assert record["status"] == "ok" and record["steps"] == 6 and record["candidates"] == 16
    assert record["versions"]["torch"] and record["command"].startswith("pdlightning fit -c ")
    assert "toy_dv.yaml" in record["command"]
    assert "| **Bias (abs)** | Toy(s=2) |" in (out / "report.md").read_text()
    with open(out / "results.csv") as f:
        assert {r["estimator"] for r in csv.DictReader(f)} == {"toy_dv"}


def test_old_report_keys_still_work_with_a_deprecation_message():
    with pytest.warns(FutureWarning, match="'cpc' is now 'infonce'"):
        specs = plan(["cpc", "pc", "drf", "dm1", "dm2"], ["gaussian"], ["joint"])
    assert [s.estimator for s in specs] == [
        "infonce",
        "pd_classifier",
        "pd_ratio_fitting",
        "pd_matching_1",
        "pd_matching_2",
    ]
    assert [s.estimator for s in plan(["all"], ["gaussian"], ["joint"])][:2] == ["infonce", "nwj"]


def test_render_only_reads_each_runs_own_budget_and_flags_short_levels(tmp_path):
    """--render-only with no budget arguments (default 4,000 steps) must not call a 3-step run the
    papers' protocol; estimators whose documented budget is longer are flagged."""
    assert main(["--out", str(tmp_path), "--estimators", "infonce", *TINY_ARGS]) == 0
    assert main(["--out", str(tmp_path), "--render-only"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "**3 steps per level**" in report and "papers' protocol)." not in report
    assert "not the papers' protocol" in report
    assert "| **Bias (abs)** | CPC (InfoNCE) † |" in report and "CPC (InfoNCE) 1000" in report


def test_two_sweeps_sharing_out_end_with_a_report_of_every_finished_run(tmp_path):
    assert main(["--out", str(tmp_path), "--estimators", "nwj", *TINY_ARGS]) == 0
    assert main(["--out", str(tmp_path), "--estimators", "infonce", *TINY_ARGS]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| **Bias (abs)** | CPC (InfoNCE) † |" in report and "|  | NWJ † |" in report
    with open(tmp_path / "results.csv") as f:
        assert {r["estimator"] for r in csv.DictReader(f)} == {"infonce", "nwj"}


@pytest.mark.slow
def test_runs_of_different_budgets_are_never_mixed_in_one_table(tmp_path, capsys):
    import shutil

    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["--out", str(first), "--estimators", "nwj", *TINY_ARGS]) == 0
    other = [a if a != "3" else "4" for a in TINY_ARGS]  # 4 steps per level
    assert main(["--out", str(second), "--estimators", "infonce", *other]) == 0
    # A sweep of another budget into the same directory is refused with the parameter's name ...
    with pytest.raises(SystemExit):
        main(["--out", str(first), "--estimators", "infonce", *other])
    assert "out:" in capsys.readouterr().err
    # ... and runs copied there by hand are rendered in their own section, each with its budget.
    shutil.copytree(second / "runs" / "gaussian-joint-infonce", first / "runs" / "gaussian-joint-infonce")
    assert main(["--out", str(first), "--render-only"]) == 0
    report = (first / "report.md").read_text()
    assert report.startswith(f"**{first} holds runs of 2 budgets**")
    assert report.count("# MI estimator benchmark") == 2
    assert "**3 steps per level**" in report and "**4 steps per level**" in report
    three, four = sorted(report.split("\n---\n")[-2:], key=lambda section: "**4 steps per level**" in section)
    assert "| NWJ †" in three and "CPC" not in three and "CPC (InfoNCE)" in four and "NWJ" not in four
    assert (first / "staircase_grid.png").exists() and (first / "staircase_grid_2.png").exists()
    with open(first / "results.csv") as f:
        assert {(r["estimator"], r["steps_per_level"]) for r in csv.DictReader(f)} == {("nwj", "3"), ("infonce", "4")}


def test_the_verdict_says_cell_by_cell_whether_the_published_bias_is_within_our_interval():
    """Seeds: |mean bias| ± t_{S-1} se across seeds; one seed: the level's held-out interval read as |v - level|."""
    from scipy import stats

    from pdlightning.report.results import ResultRow
    from pdlightning.report.tables import verdict_markdown

    def row(critic: str, level: float, bias: float, seed: int = 0) -> ResultRow:
        return ResultRow("gaussian", critic, "smile_tau5", level, 10, level + bias, bias, 0.1, bias**2, "ok", seed=seed)

    # the paper: SMILE tau=5, Gaussian, |bias| 0.13 at 2 nats and 0.11 at 4 nats
    seeds = [row("joint", 2.0, b, s) for s, b in enumerate((-0.10, -0.14, -0.12))]
    seeds += [row("joint", 4.0, b, s) for s, b in enumerate((-0.50, -0.52, -0.51))]
    text = verdict_markdown(seeds, None, ["smile_tau5"], ["gaussian"], ["joint"])
    half = stats.t.ppf(0.975, 2) * 0.02 / 3**0.5  # sd 0.02 over 3 seeds
    assert f"yes: 0.13 in [{0.12 - half:.2f}, {0.12 + half:.2f}]" in text
    half = stats.t.ppf(0.975, 2) * 0.01 / 3**0.5
    assert f"**no**: 0.11 not in [{0.51 - half:.2f}, {0.51 + half:.2f}]" in text and "across 3 seeds" in text

    one = [row("joint", 2.0, -0.3), row("joint", 4.0, -0.2)]
    held_out = {
        ("gaussian", "joint", "smile_tau5", 2.0): {"estimate": 1.8, "low": 1.75, "high": 1.95},  # |bias| 0.05-0.25
        ("gaussian", "joint", "smile_tau5", 4.0): {"estimate": 4.1, "low": 3.95, "high": 4.25},  # contains the truth
    }
    text = verdict_markdown(one, held_out, ["smile_tau5"], ["gaussian"], ["joint"])
    assert "yes: 0.13 in [0.05, 0.25]" in text and "yes: 0.11 in [0.00, 0.25]" in text and "held-out" in text
    assert verdict_markdown(one, None, ["smile_tau5"], ["gaussian"], ["joint"]).count("| – |") == 1  # no held-out


def test_the_verdict_judges_only_the_papers_critic_and_no_diverged_cell():
    """The published cells are joint-critic ones; a seed whose member diverged makes its cell's interval meaningless
    (a 1e30 bias gives an interval that contains every value: a "yes" that says nothing)."""
    from pdlightning.report.tables import comparison_markdown, verdict_markdown

    def row(critic: str, level: float, bias: float, seed: int, status: str = "ok") -> ResultRow:
        return ResultRow("gaussian", critic, "nwj", level, 10, level + bias, bias, 0.1, bias**2, status, seed=seed)

    separable = [row("separable", 2.0, b, s) for s, b in enumerate((-0.11, -0.13, -0.12))]
    assert verdict_markdown(separable, None, ["nwj"], ["gaussian"], ["separable"]) == ""
    assert comparison_markdown(separable, ["nwj"], ["gaussian"]) == ""
    diverged = [row("joint", 2.0, -0.12, 0), row("joint", 2.0, 1e30, 1, "failed"), row("joint", 2.0, -0.1, 2)]
    text = verdict_markdown(diverged, None, ["nwj"], ["gaussian"], ["joint", "separable"])
    assert "| NWJ | diverged (1 of 3 seeds) |" in text and "yes" not in text and "separable" not in text
    assert "| NWJ | diverged |" in verdict_markdown(
        [row("joint", 2.0, 1e30, 0, "failed")], None, ["nwj"], ["gaussian"], ["joint"]
    )
