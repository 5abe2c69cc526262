"""Exact resume: a CLI fit killed mid-run and resumed with ``--ckpt_path last`` logs the same metrics
as an uninterrupted run, in the same TensorBoard version directory."""

from __future__ import annotations

import csv
import glob
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from pdlightning.bounds import MINE, EtaDV
from pdlightning.cli.main import ResumeCheckpoint, build_cli, find_last_checkpoint
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import MIEstimationModule

REPO = Path(__file__).resolve().parents[2]
STEPS = 30  # 3 levels x 10 steps
EVERY = 4  # checkpoint period; the kill lands between two checkpoints
KILL_AT = 14  # killed before step 14 runs: the last checkpoint is at step 12


def write_config(tmp_path: Path, bound: str = "pdlightning.bounds.MINE") -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        seed_everything: 3
        trainer:
          max_epochs: 1
          max_steps: {STEPS}
          log_every_n_steps: 1
          enable_progress_bar: false
          enable_model_summary: false
          num_sanity_val_steps: 0
          limit_val_batches: 0
          accelerator: cpu
          devices: 1
          logger:
            class_path: lightning.pytorch.loggers.TensorBoardLogger
            init_args: {{save_dir: {tmp_path / "logs"}, name: mi}}
        checkpoint:
          every_n_train_steps: {EVERY}
        model:
          class_path: pdlightning.modules.MIEstimationModule
          init_args:
            critic: {{class_path: pdlightning.critics.JointCritic, init_args: {{x_dim: 3, y_dim: 3, hidden_dims: [16]}}}}
            bound: {{class_path: {bound}}}
            optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.01}}}}
        data:
          class_path: pdlightning.data.CorrelatedGaussianDataModule
          init_args: {{dim: 3, mi_schedule: [0.5, 1.0, 2.0], steps_per_level: 10, batch_size: 16, seed: 5}}
        """)
    )
    return config


def read_scalars(log_dir: str) -> dict[str, dict[int, float]]:
    """All scalars of a TensorBoard run directory, ``{tag: {step: value}}``; a step written again by
    a later event file (the resumed run re-doing the steps after the checkpoint) wins."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

    files = sorted(
        glob.glob(os.path.join(log_dir, "events.out.tfevents.*")),
        key=lambda p: (int(os.path.basename(p).split(".")[3]), p),
    )
    scalars: dict[str, dict[int, float]] = {}
    for path in files:
        for event in LegacyEventFileLoader(path).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


CRASH_MODULE = """
import os
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

class KillAtStep(Callback):
    '''Dies like a SIGKILL (no exception handling, no final checkpoint) before step ``step`` runs.'''
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os._exit(17)
"""


@pytest.mark.slow
def test_cli_fit_killed_mid_run_resumes_exactly(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "killer.py").write_text(CRASH_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdlightning.cli.main",
            "fit",
            "-c",
            str(config),
            "--trainer.callbacks+=killer.KillAtStep",
            f"--trainer.callbacks.step={KILL_AT}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 17, killed.stderr[-3000:]
    root = tmp_path / "logs" / "mi"
    found = find_last_checkpoint(str(root))
    assert found is not None and found[0] == 0, "the default checkpoint should be in version_0/checkpoints"
    assert torch.load(found[1], weights_only=True)["global_step"] == (KILL_AT // EVERY) * EVERY
    before = read_scalars(str(root / "version_0"))
    # the checkpoint flushed the logs: every step up to the checkpoint is on disk despite the kill
    assert set(range((KILL_AT // EVERY) * EVERY)) <= set(before["mi/estimate"])

    build_cli(["fit", "-c", str(config), "--ckpt_path", "last"])
    assert sorted(os.listdir(root)) == ["version_0"], "the resumed fit must log into the run it resumes"
    resumed = read_scalars(str(root / "version_0"))

    (tmp_path / "reference").mkdir()
    reference_config = write_config(tmp_path / "reference")
    build_cli(["fit", "-c", str(reference_config)])
    reference = read_scalars(str(tmp_path / "reference" / "logs" / "mi" / "version_0"))

    tags = {"train/loss", "mi/estimate", "mi/true", "bound/first_term", "bound/second_term", "bound/log_partition_ema"}
    assert tags <= set(reference)
    for tag in tags:
        assert sorted(resumed[tag]) == list(range(STEPS)), tag  # logged step numbers line up
        for step in range(STEPS):
            a, b = resumed[tag][step], reference[tag][step]
            assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), (tag, step, a, b)
    assert torch.load(str(root / "version_0" / "checkpoints" / "last.ckpt"), weights_only=True)["global_step"] == STEPS


class _Stop(RuntimeError):
    pass


class _Interrupt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise _Stop(f"stopped before step {self.step}")  # no checkpoint of its own


class _Record(Callback):
    """What each step saw: the step, the batch index, the batch's first entry, the learned state."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bound = pl_module.bound
        state = float(bound.eta) if isinstance(bound, EtaDV) else float(bound.log_partition_ema)
        self.rows[trainer.global_step - 1] = (
            batch_idx,
            float(batch["x"][0, 0]),
            float(outputs["loss"]),
            state,
            trainer.fit_loop.epoch_loop._batches_that_stepped,
        )


def _fit(tmp_path: Path, bound_cls: type, ckpt_path=None, interrupt=None) -> _Record:
    L.seed_everything(1)
    record = _Record()
    callbacks = [
        record,
        ResumeCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0, every_n_train_steps=EVERY),
    ]
    if interrupt is not None:
        callbacks.append(_Interrupt(interrupt))
    module = MIEstimationModule(JointCritic(2, 2, [8]), bound_cls(), optimizer=torch.optim.Adam)
    data = CorrelatedGaussianDataModule(dim=2, mi_schedule=[0.5, 1.0], steps_per_level=8, batch_size=8, seed=2)
    trainer = L.Trainer(
        max_epochs=1,
        max_steps=16,
        logger=False,
        callbacks=callbacks,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    if interrupt is None:
        trainer.fit(module, data, ckpt_path=ckpt_path, weights_only=True)
    else:
        with pytest.raises(_Stop):
            trainer.fit(module, data, ckpt_path=ckpt_path, weights_only=True)
    return record


@pytest.mark.parametrize("bound_cls", [MINE, EtaDV], ids=["mine-ema", "eta-dv"])
@pytest.mark.parametrize("interrupt", [6, 13], ids=["early", "late"])
def test_resume_restores_stream_schedule_and_bound_state(tmp_path: Path, bound_cls: type, interrupt: int) -> None:
    """In-process: stop at ``interrupt``, resume from ``last.ckpt``; every later step sees the same
    batch index, batch, loss, EMA / eta and logging step as the uninterrupted run. An early stop
    (before half the epoch) guards against the stream's length ending the resumed epoch early."""
    reference = _fit(tmp_path / "ref", bound_cls)
    _fit(tmp_path / "run", bound_cls, interrupt=interrupt)
    resumed = _fit(tmp_path / "run", bound_cls, ckpt_path=str(tmp_path / "run" / "ckpt" / "last.ckpt"))
    start = (interrupt // EVERY) * EVERY
    assert sorted(resumed.rows) == list(range(start, 16))
    for step in range(start, 16):
        got, want = resumed.rows[step], reference.rows[step]
        assert got[0] == want[0] == step and got[4] == want[4], (step, got, want)
        for a, b in zip(got[1:4], want[1:4]):
            assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), (step, got, want)


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    """The module's hparams hold no classes (torch>=2.6 loads checkpoints with weights_only=True)."""
    module = MIEstimationModule(JointCritic(2, 2, [4]), MINE(), optimizer=torch.optim.SGD)
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0], steps_per_level=2, batch_size=4))
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["optimizer"] == "torch.optim.sgd.SGD"
    assert "log_partition_ema" in "".join(checkpoint["state_dict"])


def _tiny(tmp_path: Path, logger: str = "TensorBoardLogger", steps: int = 7) -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        seed_everything: 0
        trainer:
          max_steps: {steps}
          log_every_n_steps: 1
          enable_progress_bar: false
          enable_model_summary: false
          limit_val_batches: 0
          accelerator: cpu
          logger:
            class_path: lightning.pytorch.loggers.{logger}
            init_args: {{save_dir: {tmp_path / "logs"}, name: run}}
        model:
          class_path: pdlightning.modules.MIEstimationModule
          init_args:
            critic: {{class_path: pdlightning.critics.JointCritic, init_args: {{x_dim: 2, y_dim: 2, hidden_dims: [4]}}}}
            bound: {{class_path: pdlightning.bounds.DV}}
        data:
          class_path: pdlightning.data.CorrelatedGaussianDataModule
          init_args: {{dim: 2, mi_schedule: [1.0], steps_per_level: {steps}, batch_size: 4}}
        """)
    )
    return ["fit", "-c", str(config)]


def test_default_checkpoint_is_last_ckpt_in_the_version_dir_at_the_final_step(tmp_path: Path) -> None:
    """7 steps with a checkpoint every 3: last.ckpt still holds step 7."""
    cli = build_cli([*_tiny(tmp_path), "--checkpoint.every_n_train_steps=3"])
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(checkpoints) == 1 and isinstance(checkpoints[0], ResumeCheckpoint)
    path = tmp_path / "logs" / "run" / "version_0" / "checkpoints" / "last.ckpt"
    assert os.listdir(path.parent) == ["last.ckpt"]
    assert torch.load(path, weights_only=True)["global_step"] == 7


def test_no_default_checkpoint_when_disabled_or_configured(tmp_path: Path) -> None:
    cli = build_cli([*_tiny(tmp_path / "off"), "--trainer.enable_checkpointing=false"])
    assert not any(isinstance(c, ModelCheckpoint) for c in cli.trainer.callbacks)
    own = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"dirpath": str(tmp_path / "own"), "save_top_k": 0, "save_last": True},
    }
    cli = build_cli([*_tiny(tmp_path / "own"), f"--trainer.callbacks={[own]}"])
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(checkpoints) == 1 and not isinstance(checkpoints[0], ResumeCheckpoint)
    assert (tmp_path / "own" / "last.ckpt").is_file()


def test_resume_with_a_csv_logger_keeps_the_interrupted_rows(tmp_path: Path) -> None:
    build_cli([*_tiny(tmp_path, "CSVLogger", steps=6), "--trainer.max_steps=4"])
    build_cli([*_tiny(tmp_path, "CSVLogger", steps=6), "--ckpt_path=last"])
    run = tmp_path / "logs" / "run"
    assert sorted(os.listdir(run)) == ["version_0"]

    def training_steps(path: Path) -> list[int]:  # rows of training metrics (not the end-of-fit summary's)
        with open(path, newline="") as f:
            return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]

    assert training_steps(run / "version_0" / "metrics.part0.csv") == [0, 1, 2, 3]
    assert training_steps(run / "version_0" / "metrics.csv") == [4, 5]


def test_ckpt_path_last_with_nothing_to_resume_starts_fresh(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="no last checkpoint"):
        cli = build_cli([*_tiny(tmp_path), "--ckpt_path=last"])
    assert cli.trainer.global_step == 7
    assert sorted(os.listdir(tmp_path / "logs" / "run")) == ["version_0"]
