"""Ctrl-C during an in-process Lightning fit stops pytest (tests/interrupts.py), instead of failing one
test and carrying on with SIGINT ignored (Lightning's graceful shutdown).

The end-to-end checks send SIGINT to a child pytest; each imports Lightning (~5 s of CPU), so they are
marked slow; the in-process check of the mechanism is fast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerStatus

REPO = Path(__file__).resolve().parents[1]

# A fit that would run for hours, and a test after it that must not run once the fit is interrupted.
_SUITE = """
import pathlib

import lightning as L
import torch

HERE = pathlib.Path(__file__).parent


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        if batch_idx == 2:
            (HERE / "fitting").touch()  # the parent sends SIGINT once it sees this
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_long_fit():
    data = torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=4)
    trainer = L.Trainer(
        max_steps=10**9, max_epochs=-1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(Model(), data)


def test_after_the_fit():
    (HERE / "carried_on").touch()
"""


def interrupted_run(tmp_path: Path, plugin: bool) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``_SUITE`` in a child pytest (with or without tests.interrupts), send SIGINT during the fit;
    the finished process and the seconds it took to exit after the signal."""
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(_SUITE))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "test_suite.py"]
    if plugin:
        command[3:3] = ["-p", "tests.interrupts"]
    # A pytest started in the background by a non-interactive shell (`cmd &`) inherits SIGINT as ignored, and so
    # would the child; a reader's Ctrl-C reaches a pytest with the default disposition, which the child gets back.
    child = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300  # imports under load
    while not (tmp_path / "fitting").exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the child never started fitting:\n{child.communicate()[0][-3000:]}")
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        output, _ = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail(f"pytest did not exit within 120 s of SIGINT:\n{child.communicate()[0][-3000:]}")
    return subprocess.CompletedProcess(command, child.returncode, output), time.monotonic() - sent


class _InterruptedModel(L.LightningModule):
    """Raises KeyboardInterrupt at its third training step, as Ctrl-C would."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if batch_idx == 2:
            raise KeyboardInterrupt
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Exceptions(L.Callback):
    def __init__(self) -> None:
        self.seen: list[BaseException] = []

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.seen.append(exception)


def test_a_keyboard_interrupt_in_a_fit_reaches_the_caller_after_lightnings_teardown():
    handler = signal.getsignal(signal.SIGINT)
    exceptions = _Exceptions()
    trainer = L.Trainer(
        max_steps=100,
        callbacks=[exceptions],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(_InterruptedModel(), torch.utils.data.DataLoader(torch.randn(64, 2), batch_size=4))
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's own handling would have ignored SIGINT
    assert trainer.state.status == TrainerStatus.INTERRUPTED and trainer.global_step == 2
    assert len(exceptions.seen) == 1  # Lightning's on_exception hooks still ran


@pytest.mark.slow
def test_ctrl_c_during_a_fit_stops_pytest_with_its_interrupted_status(tmp_path):
    result, seconds = interrupted_run(tmp_path, plugin=True)
    assert result.returncode == pytest.ExitCode.INTERRUPTED, result.stdout[-3000:]
    assert "KeyboardInterrupt" in result.stdout
    assert not (tmp_path / "carried_on").exists(), "the test after the interrupted fit ran"
    assert seconds < 60


@pytest.mark.slow
def test_without_the_plugin_lightning_swallows_ctrl_c_and_pytest_carries_on(tmp_path):
    """The cause, shown: Lightning turns the interrupt into sys.exit(1), a failure of one test."""
    result, _ = interrupted_run(tmp_path, plugin=False)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout[-3000:]
    assert (tmp_path / "carried_on").exists()
    assert "1 failed, 1 passed" in result.stdout
