"""Checkpoint files that are either complete or absent, and one clear error for a file that is not a checkpoint.

Lightning's default ``TorchCheckpointIO`` writes through an fsspec transaction: the bytes go to a
temporary file in the system's temp directory and are then *moved* over the target. When the target
is on another filesystem (a log directory on ``/dev/shm``, a network mount) the move is a copy into
the existing ``last.ckpt``, so a process killed during the copy leaves a truncated file and no
earlier checkpoint. :class:`AtomicCheckpointIO` writes a temporary file *beside* the target, flushes
and fsyncs it, and renames it over the target with ``os.replace`` (atomic within one filesystem): at
every moment the target is the previous complete checkpoint or the new complete one.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointError",
    "CheckpointWriteError",
    "CheckpointInfo",
    "PARTIAL_SUFFIX",
    "read_checkpoint",
    "write_atomically",
]

#: suffix of the temporary file a checkpoint is written to before it replaces the target.
PARTIAL_SUFFIX = ".partial"


class CheckpointError(ValueError):
    """A file given or found as a checkpoint cannot be used; the message names the file and why."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed on the disk's side (full, read-only, an I/O error): the message names the
    checkpoint, the reason, and that the previous checkpoint at that path (if any) is intact."""

    def __init__(self, code: int, path: str, reason: str) -> None:
        super().__init__(code, reason, path)

    def __str__(self) -> str:
        return (
            f"checkpoint: could not write {self.filename}: {self.strerror} (errno {self.errno}); the previous "
            "checkpoint at that path, if any, is intact"
        )


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _partial_path(path: str, pid: int) -> str:
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{name}.{pid}{PARTIAL_SUFFIX}")


def _remove_stale_partials(path: str) -> None:
    """Remove temporary files of ``path`` left by processes that are gone (killed while writing)."""
    directory, name = os.path.split(os.path.abspath(path))
    prefix = f".{name}."
    for entry in os.listdir(directory):
        if not (entry.startswith(prefix) and entry.endswith(PARTIAL_SUFFIX)):
            continue
        pid = entry[len(prefix) : -len(PARTIAL_SUFFIX)]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.remove(os.path.join(directory, entry))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _os_error_in(error: BaseException) -> Optional[OSError]:
    """The ``OSError`` behind ``error``: itself, or the one torch's zip writer turned into a ``RuntimeError``
    (``unexpected pos ...``, with the ``OSError`` as its context)."""
    seen: Optional[BaseException] = error
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def write_atomically(checkpoint: dict[str, Any], path: str) -> None:
    """``torch.save(checkpoint)`` to ``path`` so that ``path`` is never a partial file.

    The bytes go to ``.<name>.<pid>.partial`` in the same directory (one per process: two processes never write
    one temporary file), are flushed and fsynced, and the temporary file is renamed over ``path``
    (``os.replace``); a write that fails or is interrupted leaves ``path`` as it was. A failure of the disk
    (full, read-only, I/O error) is a :class:`CheckpointWriteError` naming ``path``; temporary files of processes
    that are gone are removed before each write.
    """
    directory = os.path.dirname(os.path.abspath(path))
    partial = _partial_path(path, os.getpid())
    try:
        os.makedirs(directory, exist_ok=True)
        _remove_stale_partials(path)
        with open(partial, "wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(partial)
        cause = _os_error_in(error) if isinstance(error, Exception) else None
        if cause is not None:
            raise CheckpointWriteError(cause.errno or 0, path, cause.strerror or str(cause)) from error
        raise
    _fsync_directory(directory)


def _is_local(path: _PATH) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


def _local(path: _PATH) -> str:
    text = str(path)
    return text[len("file://") :] if text.startswith("file://") else text


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic (:func:`write_atomically`) and whose loads
    fail with a :class:`CheckpointError` naming the file instead of a zip, pickle or EOF error.
    Remote paths (``s3://`` ...) keep Lightning's fsspec behaviour."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_atomically(checkpoint, _local(path))

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Optional[Callable] = lambda storage, loc: storage,
        weights_only: Optional[bool] = None,
    ) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except FileNotFoundError:
            raise
        except Exception as error:  # noqa: BLE001 - every way torch fails to read the file gets one message
            raise CheckpointError(_unreadable(str(path), error)) from error


def _unreadable(path: str, error: BaseException) -> str:
    """One sentence for every way a file fails to load as a checkpoint."""
    size = os.path.getsize(path) if os.path.isfile(path) else None
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    if size == 0:
        reason = "the file is empty (0 bytes)"
    elif size is not None and not zipfile.is_zipfile(path):
        reason = (
            f"the file is truncated or was not written by torch.save ({size} bytes without the zip archive's "
            "end record that every torch checkpoint has)"
        )
    elif isinstance(error, (pickle.UnpicklingError, EOFError, KeyError)) or "weights_only" in str(error):
        reason = (
            "its contents cannot be unpickled with weights_only=True: the file is damaged, or it holds Python "
            f"objects other than tensors and plain data ({type(error).__name__}: {first_line})"
        )
    else:
        reason = f"{type(error).__name__}: {first_line}"
    return (
        f"ckpt_path: {path!r} is not a loadable checkpoint: {reason}. A checkpoint of a run killed while "
        "writing it with an older pdlightning can be incomplete: use another checkpoint or start the run again"
    )


@dataclass(frozen=True)
class CheckpointInfo:
    """What the CLI reads from a checkpoint before using it."""

    path: str
    global_step: int
    epoch: int
    hyper_parameters: dict[str, Any]
    run: Optional[dict[str, Any]]  # the run identity record (``pdlightning.cli.identity``); None if absent
    state_shapes: dict[str, tuple]  # ``{parameter name: shape}`` of the state dict
    member_names: tuple[str, ...] = ()  # the members of an estimation module's checkpoint, in order
    member_layout: Optional[dict[str, Any]] = None  # where each member's weights are (``member_layout()``)


def read_checkpoint(path: str) -> CheckpointInfo:
    """Open ``path`` without reading its tensors (``mmap``) and return its step, hyper-parameters and run
    record; :class:`CheckpointError` if it is not a complete, loadable torch checkpoint."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ckpt_path: no checkpoint file at {path!r}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - see AtomicCheckpointIO.load_checkpoint
        raise CheckpointError(_unreadable(path, error)) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"ckpt_path: {path!r} is a torch file but not a Lightning checkpoint (no 'state_dict')")
    state = checkpoint.get("state_dict") or {}
    return CheckpointInfo(
        path=path,
        global_step=int(checkpoint.get("global_step", 0)),
        epoch=int(checkpoint.get("epoch", 0)),
        hyper_parameters=dict(checkpoint.get("hyper_parameters") or {}),
        run=checkpoint.get("pdlightning_run"),
        state_shapes={k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")},
        member_layout=checkpoint.get("member_layout"),
        member_names=tuple(m["name"] for m in checkpoint.get("members") or [] if isinstance(m, dict) and "name" in m),
    )
