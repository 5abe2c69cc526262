"""A sweep's runs as Ray tasks: one task per :class:`~pdlightning.runner.Run` with an explicit resource
request (CPUs, a fraction of a GPU), on a Ray started inside this process (``--workers``) or on a
running cluster (``--address``).

Why Ray Core tasks and not Ray Tune: a run is a finished unit of work with a fixed config and its own
record (``run.json``) that the report renders from disk. Tasks give exactly what a sweep lacks in one
process (placement by resources, GPU fractions, retries of a run whose worker died, a cluster) and
nothing to reconcile with that record; Tune would add trial directories, an experiment state that
duplicates the resume rule, a reporting API inside training, and heavy dependencies, all for search
and early stopping the benchmark does not do.

What a task does (:func:`_run_task`): its output goes to ``<out>/logs/<run_id>.log`` (one header line
per attempt), it runs in the sweep's working directory with one torch thread per requested CPU and, when
it asked for no GPU, sees none; then the sweep's executor runs it and writes ``run.json`` as in the
serial path. The driver (:func:`run_on_ray`) checks that ``run.json`` is there on its own filesystem:
on a cluster ``--out`` must be a filesystem every node shares.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from .plan import Run
from .progress import Progress
from .record import RunRecord, read_record

__all__ = ["RaySettings", "ray_available", "run_on_ray", "add_parallel_arguments", "parallel_from_args", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'pdlightning[sweep]'"
ATTEMPT_HEADER = "=== attempt "


def ray_available() -> bool:
    """Whether Ray can be imported (the ``sweep`` extra)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _resource(name: str, value: float, low: float) -> float:
    """A Ray resource quantity: a fraction below 1 or a whole number (Ray's rule), at least ``low``."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
        raise ValueError(f"{name}: expected a number >= {low:g}, got {value!r}")
    if value > 1 and value != int(value):
        raise ValueError(f"{name}: expected a fraction below 1 or a whole number (Ray's rule), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RaySettings:
    """Where and how the runs go on Ray.

    Attributes:
        workers: runs at once on a Ray started in this process (it gets ``ceil(workers * cpus_per_run)``
            CPUs and the GPUs it finds); ignored with ``address``.
        address: ``"auto"`` or ``"host:port"`` of a running Ray cluster to submit to instead
            (``RAY_ADDRESS`` in the environment does the same).
        cpus_per_run: CPUs each run asks for (fractions below 1 allowed).
        gpus_per_run: GPUs each run asks for; ``0.25`` puts four runs on one GPU. A run that asks for none
            sees none (``CUDA_VISIBLE_DEVICES`` empty).
        max_retries: times a run is started again after its worker process died (killed, out of
            memory, node lost); a run that raises is not retried.
        threads: torch threads per run; ``None``: one per requested CPU (at least one).
    """

    workers: int = 2
    address: Optional[str] = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 2
    threads: Optional[int] = None

    def __post_init__(self) -> None:
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ValueError(f"workers: expected an integer >= 1, got {self.workers!r}")
        if self.address is not None and not str(self.address).strip():
            raise ValueError("address: expected 'auto' or host:port, got an empty string")
        object.__setattr__(self, "cpus_per_run", _resource("cpus_per_run", self.cpus_per_run, 0.01))
        object.__setattr__(self, "gpus_per_run", _resource("gpus_per_run", self.gpus_per_run, 0.0))
        if not (isinstance(self.max_retries, int) and self.max_retries >= 0):
            raise ValueError(f"max_retries: expected an integer >= 0, got {self.max_retries!r}")
        if self.threads is not None and not (isinstance(self.threads, int) and self.threads >= 1):
            raise ValueError(f"threads: expected an integer >= 1, got {self.threads!r}")

    @property
    def threads_per_run(self) -> int:
        return self.threads or max(1, math.floor(self.cpus_per_run))

    def describe(self) -> str:
        return (
            f"each run asks for {self.cpus_per_run:g} CPU and {self.gpus_per_run:g} GPU, "
            f"{self.threads_per_run} torch thread(s), up to {self.max_retries} retries"
        )


# --- inside the Ray task ---------------------------------------------------------------------------


def _attempt(log_path: Path, run_id: str) -> int:
    """Append this attempt's header to the run's log; its number (1 for the first)."""
    import ray

    previous = 0
    if log_path.exists():
        previous = sum(line.startswith(ATTEMPT_HEADER) for line in log_path.read_text(errors="replace").splitlines())
    node = ray.get_runtime_context().get_node_id()
    with open(log_path, "a") as f:
        f.write(
            f"{ATTEMPT_HEADER}{previous + 1} of {run_id}: host {socket.gethostname()}, pid {os.getpid()}, "
            f"ray node {node}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        )
    return previous + 1


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2: C code and crashes included) into
    ``path`` for the duration."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _run_task(
    execute: Callable[[Run, Path], RunRecord],
    run: Run,
    run_dir: str,
    log_path: str,
    cwd: str,
    threads: int,
    gpus: float,
) -> dict[str, Any]:
    """The body of one run's Ray task: the run's record, the attempt number and where it ran."""
    import ray
    import torch

    log = Path(log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    attempt = _attempt(log, run.run_id)
    with _output_to(log):
        if not os.path.isdir(cwd):
            raise FileNotFoundError(
                f"the sweep's working directory {cwd} does not exist on {socket.gethostname()}: "
                "run the sweep from a filesystem every node shares"
            )
        os.chdir(cwd)  # relative paths of the plan mean what they mean to the driver
        if not gpus:  # Ray leaves CUDA_VISIBLE_DEVICES alone for a task that asked for no GPU
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.set_num_threads(threads)
        record = execute(run, Path(run_dir))
    return {
        "record": record,
        "attempt": attempt,
        "node": ray.get_runtime_context().get_node_id(),
        "host": socket.gethostname(),
    }


# --- the driver ------------------------------------------------------------------------------------


def _start(settings: RaySettings, log: Callable[[str], None]) -> bool:
    """Connect to Ray (start one here, join a cluster, or use the one this process already has); whether
    this call started the connection (and so must end it)."""
    import logging

    import ray

    if ray.is_initialized():
        log("ray: using the Ray this process already runs")
        return False
    address = settings.address or os.environ.get("RAY_ADDRESS")
    start = time.perf_counter()
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        what = f"joined the Ray cluster at {address}"
    else:
        cpus = math.ceil(settings.workers * settings.cpus_per_run)
        ray.init(
            num_cpus=cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            object_store_memory=128 * 1024**2,
        )  # records only go through it
        what = f"started Ray here for {settings.workers} runs at once"
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    log(
        f"ray: {what} in {time.perf_counter() - start:.1f}s: {len(nodes)} node(s), {total.get('CPU', 0):g} CPUs, "
        f"{total.get('GPU', 0):g} GPUs; {settings.describe()}"
    )
    fits = any(
        n["Resources"].get("CPU", 0) >= settings.cpus_per_run and n["Resources"].get("GPU", 0) >= settings.gpus_per_run
        for n in nodes
    )
    if not fits:
        message = (
            f"no Ray node has {settings.cpus_per_run:g} CPU and {settings.gpus_per_run:g} GPU for a run "
            "(--cpus-per-run, --gpus-per-run)"
        )
        if not address:
            ray.shutdown()
            raise ValueError(f"gpus_per_run / cpus_per_run: {message}")
        log(f"warning: {message}; the runs wait until the cluster grows")
    return True


def run_on_ray(
    todo: Sequence[tuple[int, Run]],
    out: Path,
    execute: Callable[[Run, Path], RunRecord],
    settings: RaySettings,
    progress: Progress,
) -> dict[str, RunRecord]:
    """Run ``todo`` (``(index in the plan, run)`` pairs) as Ray tasks; the records, by run id, of those
    that finished (written to ``out/runs/<run_id>/run.json``) and of those that did not (status
    ``crashed``, not written: the run raised, or its worker died ``max_retries + 1`` times; a sweep
    started again retries them). Each run's output is in ``out/logs/<run_id>.log``."""
    import ray

    out = Path(out).resolve()
    started = _start(settings, progress.say)
    records: dict[str, RunRecord] = {}
    try:
        task = ray.remote(_run_task)
        resources = dict(
            num_cpus=settings.cpus_per_run,
            num_gpus=settings.gpus_per_run,
            max_retries=settings.max_retries,
            retry_exceptions=False,
        )
        executor = ray.put(execute)
        pending: dict[Any, tuple[int, Run, Path]] = {}
        for index, run in todo:
            log_path = out / "logs" / f"{run.run_id}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text("")  # a new sweep: attempts are counted afresh
            ref = task.options(name=f"pdlightning:{run.run_id}", **resources).remote(
                executor,
                run,
                str(out / "runs" / run.run_id),
                str(log_path),
                os.getcwd(),
                settings.threads_per_run,
                settings.gpus_per_run,
            )
            pending[ref] = (index, run, log_path)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            index, run, log_path = pending.pop(ref)
            attempts = _attempts(log_path)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the run raised: no retry
                error = f"{type(exc.cause).__name__}: {exc.cause}" if exc.cause is not None else str(exc)
                records[run.run_id] = _crashed(run, error, log_path, str(exc))
                progress.crashed(index, run, error, str(log_path), attempts)
                continue
            except ray.exceptions.RayError as exc:  # the worker (or its node) died on every attempt
                error = f"{type(exc).__name__}: {str(exc).strip()}"
                records[run.run_id] = _crashed(run, error, log_path, str(exc))
                progress.crashed(index, run, error, str(log_path), attempts)
                continue
            record = read_record(out / "runs" / run.run_id)
            if record is None:
                error = (
                    f"no run.json in {out / 'runs' / run.run_id} on this machine, though the run finished on "
                    f"{result['host']}: --out must be a filesystem every node shares"
                )
                records[run.run_id] = _crashed(run, error, log_path)
                progress.crashed(index, run, error, str(log_path), result["attempt"])
                continue
            records[run.run_id] = record
            progress.finished(index, run, record, result["attempt"], f"{result['host']}, node {result['node'][:8]}")
    finally:
        if started:
            ray.shutdown()
    return records


def _attempts(log_path: Path) -> int:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return 0
    return sum(line.startswith(ATTEMPT_HEADER) for line in text.splitlines())


def _crashed(run: Run, error: str, log_path: Path, details: str = "") -> RunRecord:
    """The record of a run that did not finish; the driver adds why to the run's log."""
    with open(log_path, "a") as f:
        f.write(f"=== the sweep's driver: the run did not finish: {details or error}\n")
    return RunRecord(
        spec=run.spec,
        budget=run.budget,
        status="crashed",
        seconds=0.0,
        steps=0,
        command=run.command,
        error=f"{error} (log: {log_path})",
    )


# --- the command line ------------------------------------------------------------------------------


def add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--address``, ``--cpus-per-run``, ``--gpus-per-run``, ``--max-retries``."""
    group = parser.add_argument_group(
        "parallel runs (Ray)",
        f"Runs go one at a time in this process unless --workers > 1 or --address (needs Ray: {INSTALL_HINT}).",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=1,
        help="runs at once on a Ray started in this process (default 1: no Ray, one after another)",
    )
    group.add_argument(
        "--address", default=None, help="submit the runs to a running Ray cluster: 'auto' (this node's) or host:port"
    )
    group.add_argument(
        "--cpus-per-run",
        type=float,
        default=1.0,
        help="CPUs a run asks Ray for; also its torch threads unless --threads (default 1)",
    )
    group.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="GPUs a run asks Ray for; fractions share a GPU, e.g. 0.25 = four runs per GPU (default 0)",
    )
    group.add_argument(
        "--max-retries", type=int, default=2, help="restarts of a run whose worker process died (default 2)"
    )


def parallel_from_args(args: argparse.Namespace, log: Callable[[str], None] = print) -> Optional[RaySettings]:
    """The :class:`RaySettings` the arguments ask for; ``None``: one run after another in this process
    (``--workers 1`` and no ``--address``, or Ray missing, which is said with how to get it)."""
    settings = RaySettings(
        args.workers,
        args.address,
        args.cpus_per_run,
        args.gpus_per_run,
        args.max_retries,
        getattr(args, "threads", None),
    )
    if settings.address is None and settings.workers == 1:
        return None
    if not ray_available():
        if settings.address is not None:
            raise ValueError(f"address: joining a Ray cluster needs Ray ({INSTALL_HINT})")
        log(
            f"note: Ray is not installed, so the runs go one after another in this process; {INSTALL_HINT} "
            f"runs {settings.workers} at once"
        )
        return None
    return settings
