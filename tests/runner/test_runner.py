"""The runner layer shared by every sweep: a plan of runs, the in-process executor and its record,
the resumable scheduler's budget guard, and the table writers."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

from pdlightning.runner import (
    BudgetMismatch,
    Run,
    RunRecord,
    in_process,
    markdown_table,
    read_record,
    read_records,
    run_all,
    run_id,
    write_csv,
    write_record,
)

REPO = Path(__file__).resolve().parents[2]
GAUSSIAN = str(REPO / "configs" / "mi" / "gaussian.yaml")
TINY = (
    "--trainer.max_steps=4",
    "--data.init_args.steps_per_level=4",
    "--data.init_args.mi_schedule=[2.0]",
    "--data.init_args.batch_size=8",
    "--model.init_args.critic.init_args.hidden_dims=[8]",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger.init_args.save_dir={run_dir}",
    "--trainer.enable_checkpointing=false",
)


def test_a_run_is_a_command_with_its_directory():
    run = Run(run_id("SMILE (tau=5)", "additivity", "t7"), ("a.yaml",), ("--x={run_dir}/y", "--name=a b"))
    assert run.run_id == "SMILE_tau_5-additivity-t7"
    assert run.args(Path("/r")) == ["--config=a.yaml", "--trainer.default_root_dir=/r", "--x=/r/y", "--name=a b"]
    assert run.command_in(Path("/r")) == "pdlightning fit -c a.yaml --x=/r/y '--name=a b'"
    with pytest.raises(ValueError, match="run_id"):
        Run("a/b", ("a.yaml",))


def test_the_executor_records_the_run_and_a_diverged_run_is_a_failed_record_not_a_crash(tmp_path):
    ok = Run("ok", (GAUSSIAN,), TINY, spec={"name": "ok"}, budget={"steps": 4}, test=True)
    record = in_process(ok, tmp_path / "ok")
    assert record.status == "ok" and record.steps == 4 and record.label == "SMILE(τ=5)" and record.ceiling is None
    assert record.candidates == 8 and "test/mi_estimate@2" in record.metrics and "mi/estimate" in record.metrics
    assert record.command == ok.command_in(tmp_path / "ok") and record.versions["lightning"]
    assert read_record(tmp_path / "ok") == record and record.extra["worker"]["pid"] == os.getpid()
    assert "ray_node" not in record.extra["worker"]  # not a Ray task

    diverging = Run(
        "nwj",
        (GAUSSIAN, str(REPO / "configs" / "mi" / "bounds" / "nwj.yaml")),
        TINY + ("--model.init_args.optimizer.init_args.lr=1e6",),
        budget={"steps": 4},
    )
    failed = in_process(diverging, tmp_path / "nwj")
    assert failed.status == "failed" and "non-finite" in failed.error and failed.steps < 4
    assert failed.label == "NWJ" and read_record(tmp_path / "nwj").status == "failed"


def test_infonce_records_its_log_k_ceiling(tmp_path):
    run = Run("cpc", (GAUSSIAN, str(REPO / "configs" / "mi" / "bounds" / "infonce.yaml")), TINY)
    record = in_process(run, tmp_path / "cpc")
    assert record.label == "InfoNCE" and record.ceiling == pytest.approx(math.log(8))


def test_the_scheduler_refuses_another_budget_and_skips_finished_runs(tmp_path):
    calls = []

    def execute(run, run_dir):
        calls.append(run.run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        record = RunRecord(spec=run.spec, budget=run.budget, status="ok", seconds=1.0, steps=1)
        write_record(run_dir, record)
        return record

    runs = [Run(f"r{i}", ("a.yaml",), budget={"steps": 4}) for i in range(3)]
    lines = []
    assert set(run_all(runs, tmp_path, execute, max_runs=2, log=lines.append)) == {"r0", "r1"}
    assert lines[-1] == "stopping after 2 new runs (--max-runs); run again to continue"
    assert set(run_all(runs, tmp_path, execute, log=lines.append)) == {"r0", "r1", "r2"} and calls == ["r0", "r1", "r2"]
    other = [Run("r9", ("a.yaml",), budget={"steps": 5})]
    with pytest.raises(BudgetMismatch, match="out: .* holds run r0 with budget {'steps': 4}"):
        run_all(other, tmp_path, execute)
    with pytest.raises(ValueError, match="unique"):
        run_all(runs + runs[:1], tmp_path / "x", execute)


def test_records_of_older_and_newer_versions_load(tmp_path):
    (tmp_path / "runs" / "old").mkdir(parents=True)
    (tmp_path / "runs" / "old" / "run.json").write_text(
        json.dumps(
            {
                "spec": {"estimator": "cpc"},
                "budget": {},
                "status": "ok",
                "seconds": 1.0,
                "steps": 3,
                "candidates": 64,
                "error": None,
                "extra": {"a": 1},
                "field_of_a_newer_release": 2,
            }
        )
    )
    (tmp_path / "runs" / "unfinished").mkdir()
    records = read_records(tmp_path)
    assert list(records) == ["old"] and records["old"].candidates == 64 and records["old"].label is None
    assert records["old"].extra == {"a": 1, "field_of_a_newer_release": 2}


def test_one_csv_and_markdown_writer(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Row:
        name: str
        value: float

    write_csv([Row("a", 1.5), Row("b", 2.0)], tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv") as f:
        assert list(csv.DictReader(f)) == [{"name": "a", "value": "1.5"}, {"name": "b", "value": "2.0"}]
    write_csv([{"x": 1, "y": 2}], tmp_path / "d.csv", fields=["y"])
    assert (tmp_path / "d.csv").read_text().split() == ["y", "2"]
    assert markdown_table(["", "a"], [["**b**", 1]]) == "|  | a |\n|---|---|\n| **b** | 1 |\n"


def test_a_killed_run_resumes_from_its_checkpoint_and_streams_every_step_once(tmp_path, monkeypatch):
    """A sweep killed mid-run loses at most ``CHECKPOINT_EVERY`` steps: started again, the run continues from its
    ``last.ckpt`` (same resolved config only) and its per-step stream equals an uninterrupted run's."""
    import lightning as L

    from pdlightning.runner import execute

    monkeypatch.setattr(execute, "CHECKPOINT_EVERY", 4)
    longer = TINY + (
        "--trainer.max_steps=12",
        "--data.init_args.steps_per_level=6",
        "--data.init_args.mi_schedule=[2.0, 4.0]",
        "--model.init_args.stream_path={run_dir}/estimates.csv",
    )
    run = Run("r", (GAUSSIAN,), longer, budget={"steps": 12})
    reference = in_process(run, tmp_path / "reference")
    assert "resumed_from_step" not in reference.extra

    class Killed(RuntimeError):
        pass

    class KillAt10(L.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.global_step == 10:
                raise Killed("the machine went away")

    def killed(run: Run, run_dir: Path) -> RunRecord:
        return execute.execute_in_process(run, run_dir, [KillAt10()])

    with pytest.raises(Killed):
        in_process(run, tmp_path / "r", killed)
    assert (tmp_path / "r" / "checkpoints" / "last.ckpt").is_file() and not (tmp_path / "r" / "run.json").exists()
    resumed = in_process(run, tmp_path / "r")
    assert resumed.status == "ok" and resumed.steps == 12 and resumed.extra["resumed_from_step"] == 8
    stream = (tmp_path / "r" / "estimates.csv").read_text().splitlines()
    assert stream == (tmp_path / "reference" / "estimates.csv").read_text().splitlines() and len(stream) == 13

    # another config in the same directory starts afresh: a checkpoint is resumed only by the fit it belongs to
    with pytest.raises(Killed):
        in_process(run, tmp_path / "other", killed)
    other = Run("r", (GAUSSIAN,), longer + ("--model.init_args.optimizer.init_args.lr=0.002",), budget={"steps": 12})
    fresh = in_process(other, tmp_path / "other")
    assert fresh.steps == 12 and "resumed_from_step" not in fresh.extra
