"""Fault injection: a fit that checkpoints every step is SIGKILLed at many moments, including inside a
checkpoint write, with its log directory on another filesystem than the temp directory (a tmpfs:
Lightning's fsspec write then copies into ``last.ckpt`` in place). Every time, ``--ckpt_path last``
finds a loadable checkpoint and the resumed run logs exactly what an uninterrupted run logs.
Also: a damaged checkpoint is skipped with a warning naming it, or, given explicitly, is one clear error."""

from __future__ import annotations

import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

from pdlightning.cli.checkpoint_io import CheckpointError, read_checkpoint
from pdlightning.cli.main import build_cli
from tests.modules.test_resume import read_scalars

REPO = Path(__file__).resolve().parents[2]
STEPS = 10
SHM = "/dev/shm"

#: Imported by the killed fit (``python runner.py fit ...``): SIGKILLs the process at the moment the
#: environment names. Checkpoint files are recognised by their folder (``.../checkpoints/...``), whatever
#: way they are written: Python file writes (``open``), ``os.sendfile`` (shutil's cross-device copy) and
#: ``os.replace``.
FAULTS = '''
import builtins, os, signal, sys

MOMENT = os.environ.get("FAULT", "")          # "write:<k>:<bytes>" | "close:<k>" | "replace:<k>"
KIND, K, LIMIT = (MOMENT.split(":") + ["", "", ""])[:3]
K = int(K) if K else 0
LIMIT = int(LIMIT) if LIMIT else 0
_opened = 0
_replaced = 0


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _is_checkpoint(path):
    return (os.sep + "checkpoints" + os.sep) in os.path.abspath(str(path))


class _Watched:
    """A checkpoint file being written: dies after LIMIT bytes (KIND write) or at close (KIND close)."""

    def __init__(self, handle, armed):
        self._handle, self._armed, self._written = handle, armed, 0

    def count(self, n):
        if self._armed and KIND == "write" and self._written + n > LIMIT:
            return max(0, LIMIT - self._written)
        self._written += n
        return None

    def write(self, data):
        cut = self.count(len(data))
        if cut is not None:
            self._handle.write(bytes(data)[:cut])
            self._handle.flush()
            _die()
        return self._handle.write(data)

    def close(self):
        if self._armed and KIND == "close":
            self._handle.flush()
            _die()
        return self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


_open, _sendfile, _replace = builtins.open, os.sendfile, os.replace
_by_fd = {}


def open(file, mode="r", *args, **kwargs):
    global _opened
    handle = _open(file, mode, *args, **kwargs)
    if isinstance(file, (str, os.PathLike)) and "w" in mode and _is_checkpoint(file):
        _opened += 1
        watched = _Watched(handle, _opened == K)
        _by_fd[handle.fileno()] = watched
        return watched
    return handle


def sendfile(out_fd, in_fd, offset, count):
    watched = _by_fd.get(out_fd)
    if watched is not None:
        cut = watched.count(count)
        if cut is not None:
            if cut:
                _sendfile(out_fd, in_fd, offset, cut)
            _die()
    return _sendfile(out_fd, in_fd, offset, count)


def replace(src, dst, *args, **kwargs):
    global _replaced
    if _is_checkpoint(dst):
        _replaced += 1
        if KIND == "replace" and _replaced == K:
            _die()
    return _replace(src, dst, *args, **kwargs)


builtins.open, os.sendfile, os.replace = open, sendfile, replace

if __name__ == "__main__":
    from pdlightning.cli.main import main
    main(sys.argv[1:])
'''

KILL_AT_STEP = """
import os, signal
from lightning.pytorch.callbacks import Callback

class KillAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
"""


def write_config(directory: Path, log_dir: Path) -> Path:
    config = directory / "config.yaml"
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
            init_args: {{save_dir: {log_dir}, name: mi}}
        checkpoint:
          every_n_train_steps: 1
        model:
          class_path: pdlightning.modules.MIEstimationModule
          init_args:
            critic: {{class_path: pdlightning.critics.JointCritic, init_args: {{x_dim: 3, y_dim: 3, hidden_dims: [64, 64]}}}}
            bound: {{class_path: pdlightning.bounds.MINE}}
            optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.01}}}}
        data:
          class_path: pdlightning.data.CorrelatedGaussianDataModule
          init_args: {{dim: 3, mi_schedule: [0.5, 1.0], steps_per_level: 5, batch_size: 16, seed: 5}}
        """)
    )
    return config


def _other_filesystem_dir() -> Path:
    if not os.path.isdir(SHM) or not os.access(SHM, os.W_OK):
        pytest.skip(f"{SHM} is not available: no second filesystem to log to")
    if os.stat(SHM).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip(f"{SHM} is on the temp directory's filesystem")
    return Path(tempfile.mkdtemp(prefix="pdlightning-faults-", dir=SHM))


@pytest.fixture
def shm_dir():
    path = _other_filesystem_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, dict[int, float]]:
    """The uninterrupted run's TensorBoard scalars."""
    directory = tmp_path_factory.mktemp("reference")
    build_cli(["fit", "-c", str(write_config(directory, directory / "logs"))])
    return read_scalars(str(directory / "logs" / "mi" / "version_0"))


def _killed_fit(
    tmp_path: Path, log_dir: Path, fault: str = "", extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    (tmp_path / "faults.py").write_text(FAULTS)
    (tmp_path / "killer.py").write_text(KILL_AT_STEP)
    config = write_config(tmp_path, log_dir)
    env = {
        **os.environ,
        "FAULT": fault,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
    }
    return subprocess.run(
        [sys.executable, str(tmp_path / "faults.py"), "fit", "-c", str(config), *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


#: (fault, the step of the newest complete checkpoint when it strikes). Checkpoint k is written after step k.
MOMENTS = [
    pytest.param("write:4:0", 3, id="write-opened-nothing-written", marks=pytest.mark.slow),
    pytest.param("write:3:2000", 2, id="inside-write-2kB", marks=pytest.mark.slow),
    pytest.param("write:6:60000", 5, id="inside-write-60kB", marks=pytest.mark.slow),
    pytest.param("close:5", 4, id="written-not-closed", marks=pytest.mark.slow),
    pytest.param("replace:7", 6, id="before-rename", marks=pytest.mark.slow),
    pytest.param("step:8", 8, id="between-steps", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("fault,last_good", MOMENTS)
def test_kill_at_any_moment_leaves_a_checkpoint_that_resumes_exactly(fault, last_good, shm_dir, tmp_path, reference):
    extra = ()
    if fault.startswith("step:"):
        extra = ("--trainer.callbacks+=killer.KillAtStep", f"--trainer.callbacks.step={fault.split(':')[1]}")
        fault = ""
    killed = _killed_fit(tmp_path, shm_dir, fault, extra)
    assert killed.returncode == -9, f"the fault did not kill the fit:\n{killed.stderr[-3000:]}"
    last = shm_dir / "mi" / "version_0" / "checkpoints" / "last.ckpt"
    assert read_checkpoint(str(last)).global_step == last_good  # complete, and the newest complete one

    config = write_config(tmp_path, shm_dir)
    build_cli(["fit", "-c", str(config), "--ckpt_path", "last"])
    assert sorted(os.listdir(shm_dir / "mi")) == ["version_0"]
    resumed = read_scalars(str(shm_dir / "mi" / "version_0"))
    for tag in ("train/loss", "mi/estimate", "bound/log_partition_ema"):
        assert sorted(resumed[tag]) == list(range(STEPS)), tag
        for step in range(STEPS):
            a, b = resumed[tag][step], reference[tag][step]
            assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6), (tag, step, a, b)
    assert read_checkpoint(str(last)).global_step == STEPS
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"], "no temporary file is left behind"


def test_last_skips_a_damaged_checkpoint_with_a_warning_naming_it(tmp_path):
    config = write_config(tmp_path, tmp_path / "logs")
    checkpoints = tmp_path / "logs" / "mi" / "version_0" / "checkpoints"
    build_cli(["fit", "-c", str(config), "--trainer.max_steps=4"])
    shutil.copy(checkpoints / "last.ckpt", checkpoints / "step4.ckpt")
    build_cli(["fit", "-c", str(config), "--trainer.max_steps=7", "--ckpt_path=last"])
    data = (checkpoints / "last.ckpt").read_bytes()
    (checkpoints / "last.ckpt").write_bytes(data[: len(data) // 2])  # as an interrupted in-place copy leaves it
    with pytest.warns(UserWarning, match=r"skipping .*last\.ckpt.*not a loadable checkpoint"):
        cli = build_cli(["fit", "-c", str(config), "--ckpt_path=last"])
    assert cli.config.fit.ckpt_path == str(checkpoints / "step4.ckpt")
    assert cli.trainer.global_step == STEPS


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncated"])
def test_an_explicit_damaged_checkpoint_is_one_clear_error(content, tmp_path):
    config = write_config(tmp_path, tmp_path / "logs")
    bad = tmp_path / "bad.ckpt"
    if content == "truncated":
        build_cli(["fit", "-c", str(config), "--trainer.max_steps=2"])
        content = (tmp_path / "logs" / "mi" / "version_0" / "checkpoints" / "last.ckpt").read_bytes()[:3000]
    bad.write_bytes(content)
    for subcommand in ("fit", "test"):
        with pytest.raises(CheckpointError, match=rf"ckpt_path: '{bad}' is not a loadable checkpoint"):
            build_cli([subcommand, "-c", str(config), f"--ckpt_path={bad}"])


def test_the_checkpoint_is_replaced_atomically_through_a_temporary_file_beside_it(tmp_path, monkeypatch):
    """The bytes reach a temporary file in the checkpoint's own directory, which is fsynced and then
    renamed over the target: never an in-place write of the target."""
    from pdlightning.cli import checkpoint_io

    seen = []
    real_replace, real_fsync = os.replace, os.fsync
    monkeypatch.setattr(checkpoint_io.os, "replace", lambda a, b: (seen.append(("replace", a, b)), real_replace(a, b)))
    monkeypatch.setattr(checkpoint_io.os, "fsync", lambda fd: (seen.append(("fsync",)), real_fsync(fd)))
    target = tmp_path / "run" / "last.ckpt"
    checkpoint_io.write_atomically({"state_dict": {"w": torch.ones(3)}}, str(target))
    assert seen[0] == ("fsync",) and seen[1][0] == "replace"
    assert os.path.dirname(seen[1][1]) == str(target.parent) and seen[1][2] == str(target)
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert os.listdir(target.parent) == ["last.ckpt"]
    with pytest.raises(
        (AttributeError, TypeError, pickle.PicklingError)
    ):  # a failing write (a lambda does not pickle) leaves the previous checkpoint
        checkpoint_io.write_atomically({"bad": lambda: 0}, str(target))
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert os.listdir(target.parent) == ["last.ckpt"]
