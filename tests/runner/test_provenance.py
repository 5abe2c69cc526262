"""Every run a sweep stores knows what produced it (issue 18, item 1): ``run.json`` holds the hash of the resolved
config (after every ``-c`` and override, as the CLI parsed it), the config folder, the package version and git
revision, and the members with their seeds; a sweep never skips a finished run of another resolved config as
"finished earlier", and a damaged ``run.json`` is one error naming it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import pdlightning
from pdlightning.runner import Run, in_process, read_record, read_records, run_all
from pdlightning.runner.provenance import ProtocolMismatch, planned_provenance

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
TINY = (
    "--seed_everything=3",
    "--trainer.max_steps=2",
    "--data.init_args.steps_per_level=2",
    "--data.init_args.mi_schedule=[2.0]",
    "--data.init_args.batch_size=8",
    "--model.init_args.critic.init_args.hidden_dims=[8]",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger.init_args.save_dir={run_dir}",
    "--trainer.enable_checkpointing=false",
)


def tiny_run(configs: Path = CONFIGS, *extra: str, run_id: str = "r") -> Run:
    files = (configs / "mi" / "gaussian.yaml", configs / "mi" / "bounds" / "nwj.yaml")
    return Run(
        run_id,
        tuple(map(str, files)),
        TINY + extra,
        spec={"estimator": "nwj"},
        budget={"steps": 2},
        configs_dir=configs,
    )


def git_head() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def test_run_json_records_the_resolved_config_and_where_it_came_from(tmp_path):
    run = tiny_run()
    record = in_process(run, tmp_path / "runs" / "r")
    provenance = read_record(tmp_path / "runs" / "r").provenance
    assert re.fullmatch(r"[0-9a-f]{16}", provenance["config_hash"])
    assert provenance["configs_dir"] == str(CONFIGS)
    assert provenance["package_version"] == pdlightning.__version__
    assert provenance["git_revision"] == git_head()
    assert [(m["key"], m["seed"]) for m in provenance["members"]] == [("nwj", 3)]
    # the resolved config, not a file name: the critic as the override set it, the run folder as a placeholder
    config = provenance["config"]
    assert config["model"]["init_args"]["critic"]["init_args"]["hidden_dims"] == [8]
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "{run_dir}" and "config" not in config
    # what a sweep computes before running is what the run recorded, wherever the sweep's folder is
    assert planned_provenance(run, tmp_path / "elsewhere" / "r")["config_hash"] == provenance["config_hash"]
    assert record.provenance == provenance
    other = planned_provenance(tiny_run(CONFIGS, "--model.init_args.critic.init_args.hidden_dims=[4]"), tmp_path)
    assert other["config_hash"] != provenance["config_hash"]


def test_a_sweep_refuses_a_finished_run_of_another_resolved_config_naming_the_keys(tmp_path):
    """The issue's repro: --configs pointing at a copy whose critic differs; the finished run of the packaged
    config was skipped as "finished earlier" and its numbers reported under the copy's protocol."""
    out = tmp_path / "out"
    lines: list[str] = []
    run_all([tiny_run()], out, log=lines.append)
    stamp = (out / "runs" / "r" / "run.json").stat().st_mtime_ns

    same = tmp_path / "same"  # a copy of the same configs elsewhere: the same protocol, skipped
    shutil.copytree(CONFIGS, same)
    lines.clear()
    run_all([tiny_run(same)], out, log=lines.append)
    assert any("r: finished earlier" in line for line in lines)

    wider = tmp_path / "wider"
    shutil.copytree(CONFIGS, wider)
    model = wider / "mi" / "protocol" / "model.yaml"
    model.write_text(model.read_text().replace("lr: 5.0e-4", "lr: 1.0e-2"))
    with pytest.raises(ProtocolMismatch) as raised:
        run_all([tiny_run(wider)], out, log=lines.append)
    message = str(raised.value)
    assert "\n" not in message and message.startswith("out: ")
    assert "model.init_args.optimizer.init_args.lr" in message and str(out / "runs" / "r") in message
    assert (out / "runs" / "r" / "run.json").stat().st_mtime_ns == stamp  # nothing ran over it


def test_a_damaged_run_json_is_one_error_naming_the_file(tmp_path):
    out = tmp_path / "out"
    run_all([tiny_run()], out, log=lambda line: None)
    path = out / "runs" / "r" / "run.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: .*(truncated|not JSON)"):
        read_records(out)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        run_all([tiny_run()], out, log=lambda line: None)
