"""How every console script (``pdlightning``, ``pdlightning-report``) ends on a failure that is not a bug: one
line, ``<prog>: error: <message>``, naming the parameter or path and the problem, and an exit status; the
traceback only with ``PDLIGHTNING_DEBUG=1``. A bug keeps its traceback.

What counts, in :func:`failure`:

- the script's own errors, whose message is the whole story (a damaged checkpoint, a run of another experiment,
  a busy run directory, ...), whenever they are raised: exit 2;
- errors about the input (``ValueError``, ``FileNotFoundError``, ...), while the script is still reading its
  input (``setting_up``): exit 2;
- an ``OSError`` about a path, whenever it is raised (a log directory that cannot be written, an output path that
  is a directory, an ``--out`` that is a file, a full disk): the path and the system's reason. Exit 2 when the
  path the user gave is unusable (permissions, read-only, a file where a folder belongs or the reverse), 1 when
  the machine failed (:data:`ENVIRONMENT_ERRNOS`: a full disk, a quota, an I/O error).

Of an error's chain of causes (``raise ... from``), the innermost error that counts speaks: jsonargparse wraps a
component's ``ValueError`` in its own error, and ours keep the library's error as their cause.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable, NoReturn, Optional, TypeVar

__all__ = ["DEBUG_ENV", "ENVIRONMENT_ERRNOS", "failure", "report_and_exit", "run_console"]

#: set to 1 to see the traceback instead of the one line.
DEBUG_ENV = "PDLIGHTNING_DEBUG"
#: errnos of an ``OSError`` that say the machine failed, not the user's input (exit status 1, not 2).
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.ENOMEM})

T = TypeVar("T")


def _chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    return chain


def _path_message(error: OSError) -> str:
    """``<path>: <reason>`` of an ``OSError`` (the error's own text when it is one of ours, with a full message)."""
    if type(error).__str__ is not OSError.__str__:  # ours (e.g. CheckpointWriteError): the message says it all
        return str(error)
    path = str(error.filename)
    if getattr(error, "filename2", None):
        path += f" -> {error.filename2}"
    reason = error.strerror or str(error)
    return f"{path}: {reason}"


def failure(
    error: BaseException,
    own: tuple[type[BaseException], ...] = (),
    inputs: tuple[type[BaseException], ...] = (),
    setting_up: bool = True,
) -> Optional[tuple[str, int]]:
    """``(message, exit status)`` when ``error`` is not a bug (see the module docstring), else ``None``.

    Args:
        error: what was raised.
        own: the script's errors whose message is the whole story, at any time.
        inputs: errors that are about the input only while ``setting_up``.
        setting_up: the script has not started its work yet (for ``pdlightning``: no batch has run).
    """
    chain = _chain(error)
    speaking = [e for e in chain if isinstance(e, own) or (setting_up and isinstance(e, inputs))]
    if speaking:
        inner = speaking[-1]
        if isinstance(inner, OSError) and inner.filename is not None:
            return _path_message(inner), 1 if inner.errno in ENVIRONMENT_ERRNOS else 2
        return str(inner).strip() or type(inner).__name__, 2
    paths = [e for e in chain if isinstance(e, OSError) and e.filename is not None]
    if paths:
        inner_path = paths[-1]
        assert isinstance(inner_path, OSError)
        return _path_message(inner_path), 1 if inner_path.errno in ENVIRONMENT_ERRNOS else 2
    return None


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def report_and_exit(prog: str, message: str, status: int) -> NoReturn:
    """Print the one line (and how to see the traceback) to stderr and exit with ``status``."""
    print(f"{prog}: error: {message}\n(set {DEBUG_ENV}=1 to see the traceback)", file=sys.stderr)
    raise SystemExit(status) from None


def run_console(
    prog: str,
    function: Callable[[], T],
    own: tuple[type[BaseException], ...] = (),
    inputs: tuple[type[BaseException], ...] = (),
    setting_up: Callable[[], bool] = lambda: True,
) -> T:
    """``function()``, with every failure that is not a bug (:func:`failure`) ending as one line and its exit
    status; a bug (and anything with ``PDLIGHTNING_DEBUG=1``) raises as it is."""
    try:
        return function()
    except Exception as error:  # noqa: BLE001 - re-raised unless it is a failure the user can act on
        found = failure(error, own, inputs, setting_up())
        if found is None or debugging():
            raise
        report_and_exit(prog, *found)
