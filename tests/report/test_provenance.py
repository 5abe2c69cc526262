"""The report's numbers know what produced them (issue 18, items 1, 2, 3 and 7): a sweep into an ``--out`` of another
protocol is refused naming the keys, ``--render-only`` prints only the budget the runs recorded, the same fit in two
runs counts once, a damaged run file is one error naming it, and unusable output paths are one line."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from pdlightning.report.main import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
#: the staircase, ensemble fits (the default), at a tiny budget
STAIRCASE = ["--steps-per-level", "3", "--levels", "2", "4", "--batch-size", "16", "--tasks", "gaussian"]
STAIRCASE += ["--critics", "joint", "--threads", "1"]
SUITE = ["--suite", "bmi-v1", "--seeds", "1", "--steps", "4", "--batch-size", "32", "--threads", "1"]
SUITE += ["--tasks", "1v1-normal-0.75"]


def error_line(capsys, raised: pytest.ExceptionInfo, *expected: str) -> str:
    err = capsys.readouterr().err
    assert raised.value.code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("pdlightning-report: error:")]
    assert len(lines) == 1, err[-3000:]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def configs_copy(tmp_path: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """A copy of the packaged configs with ``{file: (old text, new text)}`` replaced."""
    copy = tmp_path / "configs_copy"
    shutil.copytree(CONFIGS, copy)
    for name, (old, new) in edits.items():
        text = (copy / name).read_text()
        assert old in text, (name, old)
        (copy / name).write_text(text.replace(old, new))
    return copy


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory) -> Path:
    """``infonce nwj`` then ``infonce smile_tau5`` into one --out: the InfoNCE fit is in both ensembles."""
    out = tmp_path_factory.mktemp("sweeps") / "out"
    assert main(["--out", str(out), "--estimators", "infonce", "nwj", *STAIRCASE]) == 0
    assert main(["--out", str(out), "--estimators", "infonce", "smile_tau5", *STAIRCASE]) == 0
    return out


def copy_of(out: Path, tmp_path: Path) -> Path:
    target = tmp_path / "out"
    shutil.copytree(out, target)
    return target


def test_the_same_fit_in_two_ensembles_counts_once(two_sweeps, tmp_path):
    """It was pooled as two seeds: "1.99 ± 0.00" under a header saying n = 1."""
    out = copy_of(two_sweeps, tmp_path)
    assert main(["--out", str(out), "--render-only"]) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    infonce = [(r["true_mi"], r["seed"]) for r in rows if r["estimator"] == "infonce"]
    assert sorted(infonce) == [("2.0", "0"), ("4.0", "0")]
    assert {r["estimator"] for r in rows} == {"infonce", "nwj", "smile_tau5"}
    report = (out / "report.md").read_text()
    assert "(one seed: n = 1, no standard errors)" in report and " ± " not in report.split("## Held-out")[0]
    once = [line for line in report.splitlines() if line.startswith("- ") and "counted once" in line]
    assert len(once) == 1 and "gaussian-joint-infonce+nwj" in once[0] and "gaussian-joint-infonce+smile_tau5" in once[0]


def test_every_run_of_the_report_names_its_config_hash_and_revision(two_sweeps, tmp_path):
    out = copy_of(two_sweeps, tmp_path)
    main(["--out", str(out), "--render-only"])
    report = (out / "report.md").read_text()
    runs = report.split("## Runs")[1]
    for run_dir in sorted((out / "runs").iterdir()):
        provenance = json.loads((run_dir / "run.json").read_text())["provenance"]
        assert provenance["config_hash"][:12] in runs
    assert f"Config folder: {CONFIGS}" in report and "unknown provenance" not in report
    assert "d = 20" in report  # read from the runs' recorded configs


def test_a_sweep_of_the_same_protocol_skips_its_finished_ensembles(two_sweeps, tmp_path, capsys):
    """The planned config (parsed, nothing built) hashes as the run recorded it (parsed in the process that ran)."""
    out = copy_of(two_sweeps, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/run.json")}
    capsys.readouterr()
    assert main(["--out", str(out), "--estimators", "infonce", "nwj", *STAIRCASE]) == 0
    assert "gaussian-joint-infonce+nwj: finished earlier (ok), skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/run.json")} == stamps


def test_a_sweep_of_another_protocol_into_the_same_out_is_refused_naming_the_keys(two_sweeps, tmp_path, capsys):
    out = copy_of(two_sweeps, tmp_path)
    copy = configs_copy(tmp_path, {"mi/protocol/model.yaml": ("hidden_dims: [256, 256]", "hidden_dims: [4]")})
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/run.json")}
    with pytest.raises(SystemExit) as raised:
        main(["--out", str(out), "--estimators", "infonce", "nwj", "--configs", str(copy), *STAIRCASE])
    error_line(capsys, raised, "hidden_dims", "gaussian-joint-infonce+nwj")
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/run.json")} == stamps


def test_suite_runs_of_another_protocol_are_refused_and_render_only_prints_the_recorded_budget(tmp_path, capsys):
    """The issue's repro: --configs at a copy whose critic is [4] and N = 600; 3 of 4 runs came from the packaged
    config and one budget line (N = 5000, JointCritic [16, 8]) was printed over all of them."""
    out = tmp_path / "suite"
    copy = configs_copy(tmp_path, {"suite/cpu.yaml": ("hidden_dims: [16, 8]", "hidden_dims: [4]")})  # and N = 600:
    text = (copy / "suite" / "cpu.yaml").read_text().replace("n_samples: 5000", "n_samples: 600")
    (copy / "suite" / "cpu.yaml").write_text(text)
    assert main([*SUITE, "--estimators", "nwj", "--configs", str(copy), "--out", str(out)]) == 0
    assert main([*SUITE, "--estimators", "nwj", "--out", str(out), "--render-only"]) == 0
    budget = next(line for line in (out / "suite.md").read_text().splitlines() if line.startswith("Budget:"))
    assert "N = 600 pairs" in budget and "JointCritic [4]" in budget and "5000" not in budget
    capsys.readouterr()
    with pytest.raises(SystemExit) as raised:  # the packaged protocol into the same --out
        main([*SUITE, "--estimators", "nwj", "--out", str(out)])
    error_line(capsys, raised, "n_samples", "hidden_dims")


def test_the_same_fit_in_two_suite_runs_counts_once(tmp_path):
    out = tmp_path / "suite"
    assert main([*SUITE, "--estimators", "infonce", "nwj", "--out", str(out)]) == 0
    assert main([*SUITE, "--estimators", "infonce", "smile_tau5", "--out", str(out)]) == 0
    with open(out / "suite.csv") as f:
        columns = [r["column"] for r in csv.DictReader(f)]
    assert sorted(columns) == ["cca", "infonce", "ksg", "nwj", "smile_tau5"]
    markdown = (out / "suite.md").read_text()
    assert markdown.count("counted once") == 3  # infonce, and the baselines on the same held-out pairs


def test_runs_of_unknown_provenance_render_marked_as_such(tmp_path):
    fixture = REPO / "tests" / "fixtures" / "report_sweep"
    out = tmp_path / "old"
    shutil.copytree(fixture, out)
    assert main(["--out", str(out), "--render-only"]) == 0
    report = (out / "report.md").read_text()
    assert "unknown provenance" in report and "d not recorded" in report


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _cut_lines(path: Path, drop: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-drop]))


@pytest.mark.parametrize(
    ("file", "damage"),
    [
        ("run.json", lambda p: _truncate(p, 0.5)),
        ("results.json", lambda p: _truncate(p, 0.5)),
        ("estimates.csv", lambda p: _truncate(p, 0.77)),  # mid-line
        ("estimates.csv", lambda p: _cut_lines(p, 3)),  # at a line boundary: the last member loses its last level
        ("estimates.csv", lambda p: _cut_lines(p, 6)),  # the last member gone entirely
    ],
)
def test_a_damaged_run_file_is_one_error_naming_it(two_sweeps, tmp_path, capsys, file, damage):
    """A table that quietly lacked an estimator, or level statistics from fewer steps than the header says."""
    out = copy_of(two_sweeps, tmp_path)
    path = next(iter(sorted(out.glob(f"runs/*/**/{file}"))))
    damage(path)
    with pytest.raises(SystemExit) as raised:
        main(["--out", str(out), "--render-only"])
    error_line(capsys, raised, str(path))


def test_an_out_that_is_a_file_and_an_output_that_is_a_folder_are_one_line(two_sweeps, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as raised:
        main(["--out", str(tmp_path / "afile"), "--render-only"])
    assert re.search("afile.*(not a folder|file)", error_line(capsys, raised, str(tmp_path / "afile")))
    out = copy_of(two_sweeps, tmp_path)
    (out / "report.md").unlink(missing_ok=True)
    (out / "report.md").mkdir()
    with pytest.raises(SystemExit) as raised:
        main(["--out", str(out), "--render-only"])
    error_line(capsys, raised, str(out / "report.md"))
