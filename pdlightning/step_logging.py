"""Per-step scalars straight to the loggers: one host transfer per logging step.

``LightningModule.log`` costs about a millisecond per scalar (its result collection walks each
metric's state on every call), more than the training step of a small critic, and a vectorised
ensemble logs five scalars per member per step. :func:`log_scalars` hands a whole step's scalars to
every logger at once, at the step and cadence Lightning itself uses for the batch being trained
(``log_every_n_steps``), and keeps the trainer's ``callback_metrics`` / ``logged_metrics`` /
progress bar in step, so callbacks (``ModelCheckpoint(monitor=...)``) and scripts see the same values
as with ``self.log``. Non-finite values are never handed over.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

__all__ = ["logging_step", "is_logging_step", "log_scalars"]


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


def log_scalars(
    trainer: Optional[L.Trainer],
    scalars: Mapping[str, Tensor | float],
    step: Optional[int] = None,
    progress_bar: Iterable[str] = (),
) -> None:
    """Log one training step's ``scalars`` (see the module docstring); ``progress_bar`` names the ones
    the progress bar shows."""
    if trainer is None or not scalars:
        return
    connector = getattr(trainer, "_logger_connector", None)
    tensors = {
        name: (value.detach() if isinstance(value, Tensor) else torch.tensor(float(value)))
        for name, value in scalars.items()
    }
    if connector is not None:  # no host sync: the values stay on the device until read
        # as with self.log, these read the latest step's values whatever the logging cadence
        connector._callback_metrics.update(tensors)
        connector._logged_metrics.update(tensors)
        connector._progress_bar_metrics.update({name: tensors[name] for name in progress_bar if name in tensors})
    step = logging_step(trainer) if step is None else step
    if not trainer.loggers or not is_logging_step(trainer, step):
        return
    names = list(tensors)
    host = torch.stack([tensors[n].float().reshape(()).cpu() for n in names]).tolist()
    finite = {n: v for n, v in zip(names, host) if math.isfinite(v)}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # its log_metrics costs 3x add_scalar
            if trainer.is_global_zero:
                for tag, value in finite.items():
                    logger.experiment.add_scalar(tag, value, step)
        else:
            logger.log_metrics(finite, step=step)
