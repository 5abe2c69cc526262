"""``pdlightning fit`` with ``--trainer.strategy ddp`` on two CPU processes, and the collectives every rank must join.

``Trainer.log_dir`` is a broadcast under DDP: code that reads it on rank 0 only leaves rank 0 waiting forever in the
broadcast while the other ranks go on (a two-process CLI fit hung that way in ``RunIdentity.on_fit_start``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pdlightning.callbacks import CrossModalRetrieval
from pdlightning.cli.main import RunIdentity

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class _RankOneTrainer(SimpleNamespace):
    """A trainer on rank 1 that records whether ``log_dir`` (the broadcast) was read."""

    read_log_dir = False

    @property
    def log_dir(self) -> str:
        self.read_log_dir = True
        return "unused"


@pytest.mark.parametrize(
    "call",
    [
        lambda trainer: RunIdentity({"run": 1}).on_fit_start(trainer, None),
        lambda trainer: CrossModalRetrieval()._write(trainer, {}, ""),
    ],
    ids=["run-identity", "retrieval"],
)
def test_every_rank_joins_the_log_dir_broadcast(call) -> None:
    trainer = _RankOneTrainer(is_global_zero=False, logger=object())
    call(trainer)
    assert trainer.read_log_dir, "rank 1 skipped the broadcast that rank 0 waits in"


@pytest.mark.slow
def test_a_two_process_ddp_fit_through_the_cli_finishes_and_keeps_its_checkpoint(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    command = [
        *(sys.executable, "-m", "pdlightning.cli.entry", "fit", "-c", str(CONFIGS / "mi" / "gaussian.yaml")),
        *("--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"),
        *("--trainer.max_steps", "4", "--trainer.default_root_dir", str(tmp_path)),
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "mi" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "run_identity.yaml").is_file()
    console = result.stdout + result.stderr
    assert "| 2 | 4 |" in console, "the fit's summary table (true MI 2, 4 steps)"
    assert console.count("| true MI |") == 1, "printed once, by rank 0"
