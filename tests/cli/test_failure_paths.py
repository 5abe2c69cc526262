"""Failure paths of ``pdlightning`` (issue 18, items 4 and 7): a full disk during a checkpoint write, a log
directory that cannot be written, an output path that is a directory, and a second process writing into a run
directory that another process holds each end with one line naming the path and the problem, never a stack."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pdlightning.cli.main import main

REPO = Path(__file__).resolve().parents[2]
GAUSSIAN = str(REPO / "configs" / "mi" / "gaussian.yaml")


def small(save_dir: Path, steps: int = 4, per_level: int = 4) -> list[str]:
    return [
        "-c",
        GAUSSIAN,
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--trainer.enable_progress_bar=false",
        "--data.init_args.mi_schedule=[1.0]",
        f"--data.init_args.steps_per_level={per_level}",
        f"--trainer.max_steps={steps}",
        "--data.init_args.eval_batches_per_level=1",
        "--model.init_args.critic.init_args.hidden_dims=[8]",
        "--threads=1",
    ]


def one_line_error(capsys, raised: pytest.ExceptionInfo, status: int, *expected: str) -> str:
    err = capsys.readouterr().err
    assert raised.value.code == status, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("pdlightning: error:")]
    assert len(lines) == 1, err[-3000:]
    for text in expected:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_a_full_disk_during_a_checkpoint_write_is_one_line_naming_the_checkpoint(tmp_path, monkeypatch, capsys):
    """torch.save into a full disk raises ``RuntimeError: unexpected pos ...`` with the ``OSError(ENOSPC)`` only
    as its context: the message must name the checkpoint and the disk, and no temporary file may be left."""
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and "state_dict" in obj:
            try:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")  # noqa: B904 - as torch raises it: the OSError only as its context
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as raised:
        main(["fit", *small(tmp_path)])
    line = one_line_error(capsys, raised, 1, "last.ckpt", "No space left on device")
    assert str(tmp_path) in line
    checkpoints = tmp_path / "mi" / "version_0" / "checkpoints"
    assert not [p for p in checkpoints.iterdir() if "partial" in p.name] if checkpoints.is_dir() else True


@pytest.fixture
def read_only(tmp_path):
    """A directory nobody may create files in: ``chattr +i`` for root (who ignores permission bits), else a
    mode without write permission."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("no way to make a directory read-only for root here")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)])
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_a_log_directory_that_cannot_be_written_is_one_line_naming_it(read_only, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["fit", *small(read_only)])
    one_line_error(capsys, raised, 2, str(read_only))


def test_an_output_path_that_is_a_directory_is_one_line_naming_it(tmp_path, capsys):
    main(["fit", *small(tmp_path)])
    ckpt = tmp_path / "mi" / "version_0" / "checkpoints" / "last.ckpt"
    target = tmp_path / "pmi.csv"
    target.mkdir()
    capsys.readouterr()
    with pytest.raises(SystemExit) as raised:
        main(
            [
                "predict",
                *small(tmp_path),
                f"--ckpt_path={ckpt}",
                "--trainer.callbacks+=pdlightning.callbacks.PMIWriter",
                f"--trainer.callbacks.output_path={target}",
            ]
        )
    one_line_error(capsys, raised, 2, str(target), "directory")


def test_checkpoint_temporary_files_are_unique_per_process(tmp_path, monkeypatch):
    """Two processes writing one checkpoint used the same ``.last.ckpt.partial``: one renamed it under the other."""
    from pdlightning.cli import checkpoint_io

    sources = []
    real_replace = os.replace
    monkeypatch.setattr(checkpoint_io.os, "replace", lambda a, b: (sources.append(a), real_replace(a, b)))
    checkpoint_io.write_atomically({"state_dict": {}}, str(tmp_path / "last.ckpt"))
    assert str(os.getpid()) in os.path.basename(sources[0]) and os.listdir(tmp_path) == ["last.ckpt"]


HOLD = """
import sys, time
from pdlightning.cli.run_lock import hold_directory
with hold_directory(sys.argv[1], "test"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_process_evaluating_into_a_held_run_directory_is_refused_naming_the_holder(tmp_path, capsys):
    main(["fit", *small(tmp_path)])
    ckpt = tmp_path / "mi" / "version_0" / "checkpoints" / "last.ckpt"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "mi" / "version_0" / "test")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        with pytest.raises(SystemExit) as raised:
            main(["test", *small(tmp_path), f"--ckpt_path={ckpt}"])
        one_line_error(capsys, raised, 2, f"pid {holder.pid}", str(tmp_path / "mi" / "version_0" / "test"))
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_resumes_of_one_run_at_once_the_second_is_refused_naming_the_first(tmp_path, capsys):
    """Both ``fit --ckpt_path last`` processes exited 0 and logged the same steps into version_0."""
    args = ["fit", *small(tmp_path, steps=4, per_level=100000)]
    main(args)
    first = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "pdlightning"), *args, "--ckpt_path=last"]
        + ["--trainer.max_steps=100000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        lock = tmp_path / "mi" / "version_0" / ".pdlightning.lock"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (lock.is_file() and lock.read_text().startswith(str(first.pid))):
            assert first.poll() is None, first.stderr.read()[-3000:]
            time.sleep(0.2)
        capsys.readouterr()
        with pytest.raises(SystemExit) as raised:  # (without the lock it trained steps 4-7 into version_0, exit 0)
            main([*args, "--ckpt_path=last", "--trainer.max_steps=8"])
        one_line_error(capsys, raised, 2, f"pid {first.pid}", str(tmp_path / "mi" / "version_0"))
        assert first.poll() is None  # the first goes on
    finally:
        first.kill()
        first.wait()


def test_the_table_runners_end_a_failure_on_a_path_as_one_line(tmp_path, capsys):
    """The same mechanism for every console script: ``pdlightning-mi-benchmark`` into an output folder that is a
    file ended in a traceback."""
    from pdlightning.applications.mi_benchmark import main as table

    (tmp_path / "afile").write_text("")
    losses = '{"NWJ": {"original": {"class_path": "pdlightning.bounds.NWJ"}}}'
    base = str(REPO / "configs" / "slb" / "mnist.yaml")
    with pytest.raises(SystemExit) as raised:
        table(["--base", f"[{base}]", "--losses", losses, "--output_dir", str(tmp_path / "afile")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("pdlightning-mi-benchmark: error:")]
    assert raised.value.code == 2 and "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert str(tmp_path / "afile") in lines[0]
