"""The sweep's runs as Ray tasks: the same tables as the serial path, a killed worker's run retried (and
nothing else redone), a cluster of two nodes joined by --address, and a sweep restarted after its driver
was killed. Every Ray process a test starts lives under its own temporary directory and is gone when the
test ends (stopped by process id, never by name)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from pdlightning.report import Budget, plan, run_sweep
from pdlightning.report.main import main, parser, render
from pdlightning.report.sweep import RunSpec, default_configs_dir, run_one, to_run
from pdlightning.runner import RaySettings, RunRecord, read_record, read_records, run_all
from pdlightning.runner.ray_executor import parallel_from_args
from tests.conftest import free_port

TOKEN = uuid.uuid4().hex  # one per test session: Ray caches the token it first loads
SMALL = Budget(steps_per_level=50, levels=(2.0, 4.0), batch_size=64, seed=0)
# one fit per estimator (--single-fits): these tests spread runs over workers, which an ensemble fit
# (the report's default, one fit per task x critic) would fold into a single run
SMALL_ARGS = [
    "--steps-per-level",
    "50",
    "--levels",
    "2",
    "4",
    "--batch-size",
    "64",
    "--tasks",
    "gaussian",
    "--critics",
    "joint",
    "--single-fits",
]


# --- the Ray processes of a test ---------------------------------------------------------------------


class RayProcesses:
    """Ray started by a test: everything under ``root`` (``RAY_TMPDIR``, ``--temp-dir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def pids(self) -> list[int]:
        """Live processes that name ``root`` in their command line or environment, or hold a file under it
        open (Ray's agents retitle themselves, which overwrites both), this one excepted."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if (entry / "stat").read_text().split(")")[-1].split()[0] == "Z":
                    continue
                text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
                links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
            except OSError:
                continue
            if str(self.root).encode() in text or any(link.startswith(str(self.root)) for link in links):
                found.append(int(entry.name))
        return found

    def wait_gone(self, timeout: float = 60.0) -> list[int]:
        """The processes still there after up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := self.pids()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def stop(self) -> None:
        """End what is left, by process id: SIGTERM, then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if not self.wait_gone(10.0):
                return


@pytest.fixture
def ray_processes(monkeypatch):
    """A private Ray temp dir (short: Ray's socket paths must fit 107 characters) and token, set for this
    process and the processes it starts; on teardown Ray is shut down and anything left is stopped."""
    ray = pytest.importorskip("ray")
    root = Path(tempfile.mkdtemp(prefix="pdlr", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(root))
    # The nodes of a cluster share a token, as in the README's recipe. RAY_AUTH_MODE stays unset here: Ray
    # reads it once per process (ray.init turns token mode on itself); `ray start` gets it explicitly.
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    processes = RayProcesses(root)
    try:
        yield processes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        processes.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- settings and the command line (no Ray started) ----------------------------------------------------


def test_settings_are_checked_with_the_parameter_named():
    with pytest.raises(ValueError, match="workers: expected an integer >= 1"):
        RaySettings(workers=0)
    with pytest.raises(ValueError, match=r"gpus_per_run: expected a fraction below 1 or a whole number .*1\.5"):
        RaySettings(gpus_per_run=1.5)
    with pytest.raises(ValueError, match="cpus_per_run: expected a number >= 0.01"):
        RaySettings(cpus_per_run=0)
    with pytest.raises(ValueError, match="max_retries"):
        RaySettings(max_retries=-1)
    assert RaySettings(cpus_per_run=0.5).threads_per_run == 1 and RaySettings(cpus_per_run=4).threads_per_run == 4
    assert RaySettings(cpus_per_run=4, threads=2).threads_per_run == 2


def test_one_worker_runs_here_and_without_ray_the_sweep_says_how_to_get_it(monkeypatch):
    from pdlightning.runner import ray_executor

    args = parser().parse_args(["--workers", "1"])
    assert parallel_from_args(args) is None  # the default: no Ray start-up for one run at a time
    args = parser().parse_args(["--workers", "3", "--cpus-per-run", "0.5", "--gpus-per-run", "0.25", "--threads", "2"])
    assert parallel_from_args(args) == RaySettings(3, None, 0.5, 0.25, 2, 2)
    monkeypatch.setattr(ray_executor, "ray_available", lambda: False)
    lines: list[str] = []
    assert parallel_from_args(args, lines.append) is None
    assert lines == [
        "note: Ray is not installed, so the runs go one after another in this process; "
        "pip install 'pdlightning[sweep]' runs 3 at once"
    ]
    with pytest.raises(ValueError, match="address: joining a Ray cluster needs Ray"):
        parallel_from_args(parser().parse_args(["--address", "auto"]))


def test_the_cli_refuses_a_fractional_gpu_above_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--workers", "2", "--gpus-per-run", "1.5", *SMALL_ARGS])
    assert "gpus_per_run" in capsys.readouterr().err


def test_progress_lines_count_failed_and_retried_runs_with_an_eta():
    from pdlightning.runner import Progress, Run

    lines: list[str] = []
    progress = Progress(4, finished_before=1, log=lines.append, bar=False)
    ok = RunRecord(spec={}, budget={}, status="ok", seconds=10.0, steps=100)
    progress.finished(2, Run("a", ("a.yaml",)), ok, attempt=2, where="node-1")
    assert re.fullmatch(
        r"\[2/4\] a: ok in 10s \(10 steps/s\) on node-1, attempt 2 \(its worker died before\); "
        r"2/4 runs done, 1 retried, eta \d\d:\d\d",
        lines[-1],
    )
    progress.crashed(3, Run("b", ("a.yaml",)), "WorkerCrashedError: died", "/o/logs/b.log", attempts=3)
    assert lines[-1].startswith(
        "[3/4] b: did not finish after 3 attempts (WorkerCrashedError: died); "
        "log: /o/logs/b.log; 3/4 runs done, 1 failed, 2 retried, eta"
    )
    progress.finished(4, Run("c", ("a.yaml",)), ok)
    assert lines[-1].endswith("; 4/4 runs done, 1 failed, 2 retried")  # nothing left: no eta
    progress.close()


# --- Ray ----------------------------------------------------------------------------------------------


def _seed_plan(estimators, seeds, budget=SMALL):
    """The report's runs for several seeds in one directory (the report itself has one --seed per sweep:
    the seed goes into the run id here)."""
    configs = default_configs_dir()
    runs = []
    for seed in seeds:
        seeded = dataclasses.replace(budget, seed=seed)
        for spec in plan(estimators, ["gaussian"], ["joint"]):
            run = to_run(spec, seeded, configs)
            runs.append(dataclasses.replace(run, run_id=f"{run.run_id}-seed{seed}"))
    return runs, (lambda run, run_dir: run_one(RunSpec(**run.spec), Budget.from_json(run.budget), configs, run_dir))


def _tables(out: Path) -> str:
    """report.md without the wall-clock seconds of its run list, and with the directory's name out."""
    render(out, log=lambda _: None)
    return (out / "report.md").read_text().split("## Runs")[0].replace(str(out), "<out>")


@pytest.mark.slow
def test_two_ray_workers_give_the_serial_tables_byte_for_byte(tmp_path, ray_processes):
    import ray

    runs, execute = _seed_plan(["infonce", "nwj"], [0, 1])
    serial, parallel = tmp_path / "serial", tmp_path / "ray"
    run_all(runs, serial, execute, log=lambda _: None)
    lines: list[str] = []
    records = run_all(runs, parallel, execute, log=lines.append, parallel=RaySettings(workers=2))
    assert {k: r.status for k, r in records.items()} == {r.run_id: "ok" for r in runs}
    done = [line for line in lines if "runs done" in line]
    assert len(done) == 4 and done[-1].endswith("4/4 runs done") and all(" on " in line for line in done)
    assert any(line.startswith("ray: started Ray here for 2 runs at once") for line in lines)
    workers = {r.extra["worker"]["pid"] for r in read_records(parallel).values()}
    assert len(workers) == 2 and os.getpid() not in workers, "the runs did not go to two Ray workers"

    for run in runs:
        assert (parallel / "runs" / run.run_id / "estimates.csv").read_bytes() == (
            serial / "runs" / run.run_id / "estimates.csv"
        ).read_bytes(), run.run_id
    assert "seed 0" in _tables(serial) and "seed 1" in _tables(serial)
    assert _tables(parallel) == _tables(serial)
    assert (parallel / "results.csv").read_bytes() == (serial / "results.csv").read_bytes()
    assert not ray.is_initialized(), "the sweep did not shut down the Ray it started"
    assert ray_processes.wait_gone() == [], "Ray processes outlived ray.shutdown()"


def _kill_when_training(out: Path, run_id: str, killed: list[int], timeout: float = 600.0) -> None:
    """kill -9 the worker of ``run_id``'s first attempt once its fit has started (its TensorBoard dir)."""
    log, tb = out / "logs" / f"{run_id}.log", out / "runs" / run_id / "tb"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"^=== attempt 1 of .*, pid (\d+),", log.read_text() if log.exists() else "", re.M)
        if found and tb.exists():
            os.kill(int(found.group(1)), signal.SIGKILL)
            killed.append(int(found.group(1)))
            return
        time.sleep(0.05)


def _attempts(out: Path, run_id: str) -> list[str]:
    return [
        line for line in (out / "logs" / f"{run_id}.log").read_text().splitlines() if line.startswith("=== attempt ")
    ]


@pytest.mark.slow
def test_a_run_whose_worker_is_killed_is_retried_and_nothing_else_is_redone(tmp_path, ray_processes):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one Ray for both sweeps below
    specs = plan(["infonce", "nwj", "js"], ["gaussian"], ["joint"])
    victim = specs[1].run_id
    out = tmp_path / "retried"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_training, args=(out, victim, killed), daemon=True)
    killer.start()
    lines: list[str] = []
    records = run_sweep(specs, SMALL, out, log=lines.append, parallel=RaySettings(workers=2, max_retries=2))
    killer.join(timeout=1)
    assert len(killed) == 1, "the victim's worker was never seen training"
    assert {spec.run_id: r.status for spec, r in records.items()} == {spec.run_id: "ok" for spec in specs}
    first, second = _attempts(out, victim)
    assert f"pid {killed[0]}," in first and f"pid {killed[0]}," not in second
    log = (out / "logs" / f"{victim}.log").read_text()
    assert "`Trainer.fit` stopped" not in log.split(second)[0], "the kill came after the fit had finished"
    assert read_record(out / "runs" / victim).extra["worker"]["pid"] != killed[0]
    assert len((out / "runs" / victim / "estimates.csv").read_text().splitlines()) == SMALL.total_steps + 1
    for spec in specs:
        if spec.run_id != victim:
            assert len(_attempts(out, spec.run_id)) == 1, f"{spec.run_id} was redone"
    assert any(line.startswith(f"[2/3] {victim}: ok") and "attempt 2" in line for line in lines)
    assert [line for line in lines if "runs done" in line][-1].endswith("3/3 runs done, 1 retried")

    # No retries left: the run is reported with its log, the rest completes, nothing is written for it,
    # and the sweep started again runs only that one.
    out = tmp_path / "crashed"
    specs = specs[:2]
    killed.clear()
    killer = threading.Thread(target=_kill_when_training, args=(out, victim, killed), daemon=True)
    killer.start()
    lines.clear()
    records = run_sweep(specs, SMALL, out, log=lines.append, parallel=RaySettings(workers=2, max_retries=0))
    killer.join(timeout=1)
    assert len(killed) == 1
    assert records[specs[0]].status == "ok" and records[specs[1]].status == "crashed"
    assert (
        "WorkerCrashedError" in records[specs[1]].error
        and str(out / "logs" / f"{victim}.log") in records[specs[1]].error
    )
    assert any(
        line.startswith(f"[2/2] {victim}: did not finish after 1 attempt (WorkerCrashedError")
        and f"log: {out / 'logs' / victim}.log" in line
        for line in lines
    )
    assert read_record(out / "runs" / victim) is None
    stamp = (out / "runs" / specs[0].run_id / "run.json").stat().st_mtime_ns
    lines.clear()
    records = run_sweep(specs, SMALL, out, log=lines.append)
    assert all(r.status == "ok" for r in records.values())
    assert (out / "runs" / specs[0].run_id / "run.json").stat().st_mtime_ns == stamp
    assert [line for line in lines if ": running ..." in line] == [f"[2/2] {victim}: running ..."]


def _ray_start(args: list[str], log: Path) -> subprocess.Popen:
    """``ray start --block``: stopping it (SIGTERM) stops the node's processes."""
    with open(log, "w") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "RAY_AUTH_MODE": "token"},
        )


def _wait_for(path: Path, text: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        assert process.poll() is None, f"{path.name}: exited early:\n{path.read_text()[-2000:]}"
        time.sleep(0.5)
    raise AssertionError(f"{path.name}: no {text!r} in {timeout:.0f}s:\n{path.read_text()[-2000:]}")


@pytest.mark.slow
def test_a_sweep_submitted_to_a_two_node_cluster_runs_on_both_nodes(tmp_path, ray_processes):
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(
            _ray_start(
                [
                    "--head",
                    "--node-ip-address=127.0.0.1",
                    f"--port={port}",
                    "--num-cpus=1",
                    "--include-dashboard=false",
                    f"--temp-dir={ray_processes.root}",
                ],
                tmp_path / "head.log",
            )
        )
        _wait_for(tmp_path / "head.log", "Ray runtime started", nodes[0])
        nodes.append(
            _ray_start([f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1"], tmp_path / "node.log")
        )
        _wait_for(tmp_path / "node.log", "Ray runtime started", nodes[1])

        out = tmp_path / "out"
        # The sweep as a user submits it: its own process, with the cluster's token mode (an explicit address
        # never turns it on by itself).
        driver = subprocess.run(
            [
                sys.executable,
                "-m",
                "pdlightning.report.main",
                "--out",
                str(out),
                "--address",
                address,
                "--estimators",
                "infonce",
                "nwj",
                *SMALL_ARGS,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "RAY_AUTH_MODE": "token", "OMP_NUM_THREADS": "1"},
        )
        assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
        lines = driver.stdout.splitlines()
        assert any(
            line.startswith(f"ray: joined the Ray cluster at {address}") and "2 node(s), 2 CPUs" in line
            for line in lines
        ), lines
        ran_on = {name: r.extra["worker"]["ray_node"] for name, r in read_records(out).items()}
        assert set(ran_on) == {"gaussian-joint-infonce", "gaussian-joint-nwj"}
        assert len(set(ran_on.values())) == 2, f"both runs went to one node: {ran_on}"
        for name, node in ran_on.items():  # which node ran what, in the run's log too
            assert f"ray node {node}," in (out / "logs" / f"{name}.log").read_text()
        assert "| **Bias (abs)** | CPC (InfoNCE) |" in (out / "report.md").read_text()
    finally:
        for node in reversed(nodes):
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            node.wait(timeout=120)
    assert ray_processes.wait_gone() == [], "Ray processes outlived `ray start --block`"


@pytest.mark.slow
def test_a_sweep_restarted_after_its_driver_was_killed_redoes_only_unfinished_runs(tmp_path, ray_processes, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), "--workers", "2", "--estimators", "infonce", "nwj", "js", "smile_tau5", *SMALL_ARGS]
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen(
            [sys.executable, "-m", "pdlightning.report.main", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    try:
        deadline = time.monotonic() + 600
        while len(read_records(out)) < 2 and time.monotonic() < deadline:
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.1)
    finally:
        driver.kill()
        driver.wait(timeout=60)
    ray_processes.stop()  # its Ray's workers (before they finish more runs) and agents, which may outlive it
    finished = {name: (out / "runs" / name / "run.json").stat().st_mtime_ns for name in read_records(out)}
    assert 2 <= len(finished) < 4, (tmp_path / "first.log").read_text()[-3000:]

    capsys.readouterr()
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert set(read_records(out)) == {f"gaussian-joint-{e}" for e in ("infonce", "nwj", "js", "smile_tau5")}
    assert all(r.status == "ok" for r in read_records(out).values())
    for name, stamp in finished.items():
        assert (out / "runs" / name / "run.json").stat().st_mtime_ns == stamp, f"{name} was redone"
        assert any(f"{name}: finished earlier (ok), skipped" in line for line in lines)
    redone = [line.split("] ")[1].split(":")[0] for line in lines if "runs done" in line]
    assert sorted(redone) == sorted(set(read_records(out)) - set(finished))
    assert json.loads((out / "runs" / redone[0] / "run.json").read_text())["extra"]["worker"]["ray_node"]
    assert ray_processes.wait_gone() == []
