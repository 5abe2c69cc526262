"""Per-step scalars straight to the loggers, on logging steps only, with the values already on the host.

``LightningModule.log`` costs about a millisecond per scalar (its result collection walks each metric's
state on every call), more than the training step of a small critic, and a fit of ``K`` members logs a few
scalars per member. The modules therefore move a logging step's values to the host in one transfer
themselves (:mod:`pdlightning.modules.engine`) and hand them here as floats: :func:`log_host_scalars` writes
them to every logger at Lightning's step and cadence (``log_every_n_steps``), and keeps the trainer's
``callback_metrics`` / ``logged_metrics`` / progress bar in step, so callbacks and scripts see the same values
as with ``self.log``. Non-finite values are never handed over. :func:`log_scalars` does the same for values
still on the device (one transfer), for callbacks.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

__all__ = ["logging_step", "is_logging_step", "log_scalars", "log_host_scalars"]


def logging_step(trainer: L.Trainer) -> int:
    """The step index Lightning logs the current training batch at (from ``training_step`` or
    ``on_train_batch_end``).

    That is the fit loop's count of batches that stepped so far, which, unlike ``global_step - 1``,
    stays right when an optimiser step is skipped (a ``None`` loss) or with several optimisers.
    """
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    count = getattr(epoch_loop, "_batches_that_stepped", None)
    return int(count) if count is not None else int(trainer.global_step) - 1


def is_logging_step(trainer: L.Trainer, step: int) -> bool:
    """Whether Lightning hands the metrics of training step ``step`` to the loggers
    (``log_every_n_steps`` cadence, as its logger connector decides)."""
    every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # Lightning sets it at run time, undeclared
    return bool(every) and (step + 1) % every == 0


def log_host_scalars(
    trainer: Optional[L.Trainer],
    scalars: Mapping[str, float],
    step: Optional[int] = None,
    progress_bar: Iterable[str] = (),
    single: bool = True,
    to_loggers: bool = True,
) -> None:
    """Log one training step's ``scalars`` (Python floats; see the module docstring). ``progress_bar`` names
    the ones the progress bar shows (as plain numbers). ``single``: the trainer's ``callback_metrics`` get 0-d
    tensors (what ``ModelCheckpoint(monitor=...)`` compares); otherwise floats (many members' scalars).
    ``to_loggers=False`` only updates the trainer's metrics (the last step of a fit that was no logging step)."""
    if trainer is None or not scalars:
        return
    finite = {name: float(value) for name, value in scalars.items() if math.isfinite(value)}
    connector = getattr(trainer, "_logger_connector", None)
    if connector is not None:
        metrics = {n: torch.tensor(v) for n, v in finite.items()} if single else dict(finite)
        connector._callback_metrics.update(metrics)
        connector._logged_metrics.update(metrics)
        connector._progress_bar_metrics.update({name: finite[name] for name in progress_bar if name in finite})
    step = logging_step(trainer) if step is None else step
    if not (trainer.loggers and to_loggers):
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # its log_metrics costs 3x add_scalar
            if trainer.is_global_zero:
                for tag, value in finite.items():
                    logger.experiment.add_scalar(tag, value, step)
        else:
            logger.log_metrics(finite, step=step)
        logger.save()  # as Lightning's own logging: flushed, so a killed run keeps every step it logged


def log_scalars(
    trainer: Optional[L.Trainer],
    scalars: Mapping[str, Tensor | float],
    step: Optional[int] = None,
    progress_bar: Iterable[str] = (),
) -> None:
    """Log ``scalars`` (tensors or floats) on logging steps: one host transfer, then :func:`log_host_scalars`."""
    if trainer is None or not scalars:
        return
    step = logging_step(trainer) if step is None else step
    if not is_logging_step(trainer, step):
        return
    names = list(scalars)
    tensors = [v for v in scalars.values() if isinstance(v, Tensor)]
    host = iter(torch.stack([t.detach().float().reshape(()).cpu() for t in tensors]).tolist() if tensors else [])
    values = {n: next(host) if isinstance(v, Tensor) else float(v) for n, v in zip(names, scalars.values())}
    log_host_scalars(trainer, values, step, progress_bar)
