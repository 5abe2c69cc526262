"""Progress for logs: a line every so often instead of a redrawn bar when the output is not a terminal.

Lightning's default progress bar (tqdm, on stdout) redraws itself with carriage returns. Piped into a
file (``pdlightning fit ... > run.log``, ``nohup``, CI) every redraw stays: thousands of bar states for
the training loop, and one more bar per validation or test loop. :class:`LineProgress` writes plain
lines instead: one every ``every_seconds`` of training (step, percent, elapsed, remaining, the
progress-bar metrics), none for validation, test or prediction batches, and a closing line for a
training run that printed any. The CLI uses it when stdout is not a terminal
(:func:`wants_line_progress`); ``--trainer.enable_progress_bar false`` still turns progress off.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

__all__ = ["LineProgress", "wants_line_progress", "format_metric", "format_duration"]


def format_duration(seconds: float) -> str:
    """``75.3`` -> ``'1m15s'``; ``3725`` -> ``'1h02m'``; ``9.4`` -> ``'9s'``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_metric(value: Any) -> str:
    """A progress-bar value as a plain number: a one-element tensor or float with 4 significant digits
    (``tensor(0.2681)`` -> ``0.2681``), anything else as ``str``."""
    if hasattr(value, "numel") and value.numel() == 1:
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


class LineProgress(ProgressBar):
    """Training progress as a plain line every ``every_seconds`` (see the module docstring).

    Args:
        every_seconds: the least time between two lines (> 0).
        stream: where the lines go (default: ``sys.stdout`` at the time of writing).
    """

    def __init__(self, every_seconds: float = 30.0, stream: Optional[TextIO] = None) -> None:
        super().__init__()
        if not every_seconds > 0:
            raise ValueError(f"every_seconds: expected a positive number of seconds, got {every_seconds!r}")
        self.every_seconds = float(every_seconds)
        self._stream = stream
        self._enabled = True
        self._start = self._last = 0.0
        self._printed = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def print(self, *args: Any, **kwargs: Any) -> None:
        print(*args, file=self._stream or sys.stdout, flush=True, **kwargs)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._printed = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        if self._enabled and now - self._last >= self.every_seconds:
            self._last = now
            self._printed += 1
            self.print(self._line(trainer, pl_module, now))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and self._printed:
            self.print(self._line(trainer, pl_module, time.monotonic(), done=True))

    def _line(self, trainer: L.Trainer, pl_module: L.LightningModule, now: float, done: bool = False) -> str:
        step, elapsed = trainer.global_step, now - self._start
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if total is None and math.isfinite(self.total_train_batches) and trainer.max_epochs == 1:
            total = int(self.total_train_batches)
        parts = [f"step {step}/{total}" if total else f"step {step}"]
        if total:
            parts.append(f"({100 * step / total:.0f}%)")
        parts.append(f"{format_duration(elapsed)} elapsed" if not done else f"done in {format_duration(elapsed)}")
        if total and not done and step > 0 and step < total:
            parts.append(f"~{format_duration(elapsed / step * (total - step))} left")
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        line = " ".join(parts)
        if metrics:
            line += ": " + ", ".join(f"{k}={format_metric(v)}" for k, v in metrics.items())
        return line


def wants_line_progress(trainer_config: dict[str, Any], callbacks: list[Any], stdout: Optional[TextIO] = None) -> bool:
    """Whether the CLI adds a :class:`LineProgress`: stdout is not a terminal, the progress bar is not
    turned off, and the config brings no progress bar of its own."""
    stream = sys.stdout if stdout is None else stdout
    is_terminal = bool(getattr(stream, "isatty", lambda: False)())
    if is_terminal or trainer_config.get("enable_progress_bar") is False:
        return False
    return not any(isinstance(callback, ProgressBar) for callback in callbacks)
