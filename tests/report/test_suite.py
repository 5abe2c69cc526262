"""``pdlightning-report --suite``: the task-suite table end to end, resume, bad ids, and the rendering itself."""

from __future__ import annotations

import csv
import math

import pytest

from pdlightning.report.main import main
from pdlightning.report.suite import BASELINES, SuiteBudget, SuiteSpec, render_suite, resolve_suite_tasks
from pdlightning.runner import RunRecord, write_record
from pdlightning.tasks import get_task

TASKS = ["1v1-normal-0.75", "multinormal-sparse-2-2-2-2.0"]
ESTIMATORS = ["smile_tau5", "pd_classifier"]
TINY = ["--suite", "bmi-v1", "--seeds", "1", "--steps", "30", "--batch-size", "32", "--threads", "1"]


def _table(markdown: str, title: str) -> list[list[str]]:
    """The cells of the markdown table under the heading starting with ``title`` (header row first)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"## {title}"))
    rows = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.slow
def test_suite_report_end_to_end_and_resume(tmp_path, capsys):
    argv = [*TINY, "--tasks", *TASKS, "--estimators", *ESTIMATORS, "--out", str(tmp_path)]
    assert main(argv) == 0
    markdown = (tmp_path / "suite.md").read_text()
    table = _table(markdown, "Held-out MI estimate")
    assert table[0] == ["task", "true MI", "SMILE τ=5", "Probabilistic Classifier", "KSG (k=5)", "CCA"]
    assert [row[0] for row in table[1:]] == TASKS  # the suite's order
    for row in table[1:]:
        assert float(row[1]) == pytest.approx(get_task(row[0]).mi, abs=0.005)
        assert sum(cell.startswith("**") for cell in row[2:]) == 1, "exactly one best column per task"
    counts = _table(markdown, "Tasks within 0.1 nats")
    assert len(counts[1]) == 4 and all(0 <= int(c) <= 2 for c in counts[1])
    for title in ("PMI centred RMSE", "PMI Spearman"):
        pointwise = _table(markdown, title)
        assert pointwise[0][1:] == table[0][2:] and [r[0] for r in pointwise[1:]] == TASKS
        assert all(cell != "—" for row in pointwise[1:] for cell in row[1:])
    with open(tmp_path / "suite.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(TASKS) * (len(ESTIMATORS) + len(BASELINES))
    # CCA is exact for Gaussians: on 2,500 held-out pairs within a few hundredths of the truth, PMI rank ~1
    for row in (r for r in rows if r["column"] == "cca"):
        assert abs(float(row["error"])) < 0.1 and float(row["pmi_joint_spearman"]) > 0.95
    assert (tmp_path / "suite_heatmap.png").stat().st_size > 1000

    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    stamps = [(run / "run.json").stat().st_mtime_ns for run in runs]
    capsys.readouterr()
    assert main(argv) == 0
    assert "2 finished earlier" in capsys.readouterr().out
    assert [(run / "run.json").stat().st_mtime_ns for run in runs] == stamps, "a finished run was redone"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--suite", "bmi-v2"], ["suite:", "bmi-v1"]),
        (["--suite", "bmi-v1", "--tasks", "1v1-normal-0.7"], ["tasks:", "'1v1-normal-0.7'", "1v1-normal-0.75"]),
        (["--suite", "bmi-v1", "--estimators", "smile_tau6"], ["estimators:", "smile_tau5"]),
        (["--suite", "bmi-v1", "--seeds", "0"], ["seeds:"]),
        (["--tasks", "gausian"], ["tasks:", "gaussian"]),  # the staircase sweep still checks its own tasks
    ],
)
def test_bad_ids_are_refused_naming_the_parameter_and_close_matches(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    for text in expected:
        assert text in error
    assert not (tmp_path / "runs").exists()


def test_unknown_task_lists_only_close_matches():
    with pytest.raises(ValueError, match=r"tasks: .*close matches: student-identity-2-2-1") as info:
        resolve_suite_tasks("bmi-v1", ["student-identity-2-2-11"])
    assert "swissroll" not in str(info.value)


def _fake_run(out, task: str, seed: int, estimates: dict[str, float], status: str = "ok") -> None:
    spec = SuiteSpec(task, seed, ("nwj", "pd_classifier"))
    columns = {
        key: {"estimate": value, "pmi_joint_centred_rmse": 0.1 * (seed + 1), "pmi_joint_spearman": 0.5 + 0.1 * seed}
        for key, value in estimates.items()
    }
    record = RunRecord(
        spec=spec.as_json(), budget=SuiteBudget(steps=10).as_json(), status=status, seconds=1.0, steps=10
    )
    record.extra["suite"] = columns
    directory = out / "runs" / spec.run_id
    directory.mkdir(parents=True)
    write_record(directory, record)


def test_render_from_records_means_stds_best_and_counts(tmp_path):
    """Two seeds on one task, hand-made records: the cells are the seeds' mean ± sample std, the bold cell is the
    one closest to the truth, and the count within 0.1 nats follows the means."""
    task = "1v1-normal-0.75"
    true_mi = get_task(task).mi
    _fake_run(tmp_path, task, 0, {"nwj": true_mi - 0.30, "pd_classifier": true_mi + 0.05, "ksg": true_mi, "cca": 9.0})
    _fake_run(tmp_path, task, 1, {"nwj": true_mi - 0.10, "pd_classifier": true_mi + 0.07, "ksg": true_mi, "cca": 9.0})
    _fake_run(tmp_path, "1v1-additive-0.1", 0, {}, status="failed")
    markdown = render_suite(tmp_path)
    table = _table(markdown, "Held-out MI estimate")
    assert table[0] == ["task", "true MI", "NWJ", "Probabilistic Classifier", "KSG (k=5)", "CCA"]
    row = next(r for r in table if r[0] == task)
    assert row[2] == f"{true_mi - 0.2:.2f} ± {math.sqrt(0.02):.2f}"
    assert row[3] == f"{true_mi + 0.06:.2f} ± {math.sqrt(0.0002):.2f}"
    assert row[4] == f"**{true_mi:.2f} ± 0.00**"
    failed = next(r for r in table if r[0] == "1v1-additive-0.1")
    assert failed[2:] == ["—"] * 4
    assert "1v1-additive-0.1 seed 0" in markdown  # listed as failed
    assert _table(markdown, "Tasks within 0.1 nats")[1] == ["0", "1", "1", "0"]
    assert next(r for r in _table(markdown, "PMI centred RMSE") if r[0] == task)[1] == "0.15"
    assert next(r for r in _table(markdown, "PMI Spearman") if r[0] == task)[1] == "0.55"
