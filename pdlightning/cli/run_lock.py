"""One writer per directory: a process that writes into a run directory (``fit``, ``test``, ``predict``) or a
sweep's output folder holds an exclusive lock on it, so a second process gets an error naming the first instead
of interleaving its logs and checkpoints with it.

The lock is the kernel's (``flock`` on ``<directory>/.pdlightning.lock``): it goes with its process, a
``kill -9`` included, so no stale claim is ever left; the file holds the holder's pid and what it is doing (for
the message of the process that is refused). Without ``fcntl`` (not POSIX) there is no guard.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

__all__ = ["DirectoryBusy", "LOCK_FILE", "acquire", "release", "hold_directory", "holder_of"]

#: the lock file of a run directory.
LOCK_FILE = ".pdlightning.lock"


class DirectoryBusy(RuntimeError):
    """Another live process holds the directory; the message names it (its pid) and the directory."""


def holder_of(handle: IO[str]) -> tuple[str, str]:
    """``(pid, what it is doing)`` as the holder wrote them into the lock file (``"unknown"`` if unreadable)."""
    handle.seek(0)
    lines = handle.read().splitlines()
    pid = lines[0].strip() if lines and lines[0].strip() else "unknown"
    return pid, (lines[1].strip() if len(lines) > 1 else "")


def _busy_message(directory: Path, pid: str, doing: str) -> str:
    doing = f": {doing}" if doing else ""
    return (
        f"{directory}: another pdlightning process (pid {pid}{doing}) is writing into this run directory; wait for it "
        "to finish (or stop it), or write elsewhere (another trainer.logger.init_args.save_dir or version)"
    )


def acquire(
    directory: str | os.PathLike,
    doing: str,
    name: str = LOCK_FILE,
    busy: Optional[Callable[[Path, str, str], str]] = None,
) -> Optional[IO[str]]:
    """Lock ``directory`` (created if missing) for this process, writing its pid and ``doing`` into the lock file.

    Returns the open lock file (pass it to :func:`release`), or ``None`` where locks are not available; raises
    :class:`DirectoryBusy` with ``busy(directory, pid, doing of the holder)`` (default: a message naming the
    holder's pid) when another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard
        return None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / name, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, holder_doing = holder_of(handle)
        handle.close()
        raise DirectoryBusy((busy or _busy_message)(directory, pid, holder_doing)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n{doing}\n")
    handle.flush()
    return handle


def release(handle: Optional[IO[str]]) -> None:
    """Give a lock from :func:`acquire` back (closing the file releases the ``flock``)."""
    if handle is not None and not handle.closed:
        handle.close()


@contextlib.contextmanager
def hold_directory(directory: str | os.PathLike, doing: str, **kwargs) -> Iterator[None]:
    """Hold the lock of ``directory`` for the duration (:func:`acquire`, then :func:`release`)."""
    handle = acquire(directory, doing, **kwargs)
    try:
        yield
    finally:
        release(handle)
