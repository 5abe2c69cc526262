"""Ctrl-C stops the test run, even in the middle of a Lightning fit (loaded by ``tests/conftest.py``).

Lightning's trainer entry points (``fit`` / ``validate`` / ``test`` / ``predict``) catch
``KeyboardInterrupt`` for a "graceful shutdown": they set SIGINT to *ignored* for the rest of the
process and call ``sys.exit(1)``. Inside pytest the ``SystemExit`` is recorded as one failed test and
the run carries on, now deaf to further Ctrl-C. :func:`install` wraps Lightning's handler so that a
``KeyboardInterrupt`` raised by the fit passes it as another exception (Lightning still runs its
``on_exception`` hooks and teardown for it, as for any error), and is raised again as
``KeyboardInterrupt`` once outside: pytest then stops with its "interrupted" status (2), and SIGINT keeps
its handler. Usable as a plugin on its own: ``python -m pytest -p tests.interrupts``.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["install"]


class _FitInterrupted(BaseException):
    """Carries a KeyboardInterrupt past Lightning's ``except KeyboardInterrupt`` (not a subclass of it)."""


def install() -> None:
    """Make Lightning's trainer entry points let Ctrl-C through (idempotent)."""
    from lightning.pytorch.trainer import call

    original = call._call_and_handle_interrupt
    if getattr(original, "_lets_ctrl_c_through", False):
        return

    def call_and_let_ctrl_c_through(trainer: Any, trainer_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run(*inner_args: Any, **inner_kwargs: Any) -> Any:
            try:
                return trainer_fn(*inner_args, **inner_kwargs)
            except KeyboardInterrupt as interrupt:
                raise _FitInterrupted() from interrupt

        try:
            return original(trainer, run, *args, **kwargs)
        except _FitInterrupted as carried:
            raise KeyboardInterrupt() from carried.__cause__

    call_and_let_ctrl_c_through._lets_ctrl_c_through = True  # type: ignore[attr-defined]
    call._call_and_handle_interrupt = call_and_let_ctrl_c_through


def pytest_configure(config: Any) -> None:
    install()
