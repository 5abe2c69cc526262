"""Where diagnostics go: the run directory, PNG files, and TensorBoard images.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered with the Agg canvas, so no
pyplot state or GUI backend is touched.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["logging_step", "is_logging_step", "log_scalars", "run_directory", "figure_to_array",
           "tensorboard_writers", "publish_figure"]


def logging_step(trainer: L.Trainer) -> int:
    """The step index Lightning logs the current training batch at (from ``on_train_batch_end``).

    That is the fit loop's count of batches that stepped so far, which, unlike ``global_step - 1``,
    stays right when an optimiser step is skipped (a ``None`` loss) or with several optimisers.
    """
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    count = getattr(epoch_loop, "_batches_that_stepped", None)
    return int(count) if count is not None else int(trainer.global_step) - 1


def is_logging_step(trainer: L.Trainer, step: int) -> bool:
    """Whether Lightning hands the metrics of training step ``step`` to the loggers
    (``log_every_n_steps`` cadence; from ``on_train_batch_end`` or inside ``training_step``)."""
    every = trainer.log_every_n_steps
    return bool(every) and (step + 1) % every == 0


def log_scalars(trainer: Optional[L.Trainer], scalars: Mapping[str, Tensor | float], step: Optional[int] = None) -> None:
    """Hand ``scalars`` to every logger at the step Lightning logs the current training batch at, on
    its cadence, with one host transfer for all of them. ``LightningModule.log`` costs about a
    millisecond per scalar (more than the training step of a small critic); this is the fast path for
    many per-step scalars (ensemble members, drift statistics). Non-finite values are never handed over."""
    if trainer is None or not trainer.loggers or not scalars:
        return
    step = logging_step(trainer) if step is None else step
    if not is_logging_step(trainer, step):
        return
    names = list(scalars)
    values = [scalars[n] for n in names]
    tensors = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
    if tensors:
        host = torch.stack([values[i].detach().float().reshape(()).cpu() for i in tensors]).tolist()
        for i, value in zip(tensors, host):
            values[i] = value
    finite = {n: float(v) for n, v in zip(names, values) if math.isfinite(float(v))}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # its log_metrics costs 3x add_scalar
            if trainer.is_global_zero:
                for tag, value in finite.items():
                    logger.experiment.add_scalar(tag, value, step)
        else:
            logger.log_metrics(finite, step=step)


def run_directory(trainer: L.Trainer, output_dir: Optional[str] = None) -> str:
    """``output_dir`` if given, else the first logger's ``log_dir``, else the trainer's root dir."""
    if output_dir is not None:
        return output_dir
    for logger in trainer.loggers:
        log_dir = getattr(logger, "log_dir", None)
        if log_dir:
            return log_dir
    return trainer.default_root_dir


def figure_to_array(figure: Figure) -> np.ndarray:
    """RGB ``[H, W, 3]`` uint8 pixels of ``figure`` (Agg)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def tensorboard_writers(trainer: L.Trainer) -> list:
    """The ``SummaryWriter`` of every TensorBoard logger of the trainer (rank zero only)."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def publish_figure(trainer: L.Trainer, figure: Figure, tag: str, path: str, step: int) -> None:
    """Save ``figure`` as a PNG at ``path`` and log it as image ``tag`` to TensorBoard."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=figure.dpi)
    writers = tensorboard_writers(trainer)
    if writers:
        pixels = figure_to_array(figure)
        for writer in writers:
            writer.add_image(tag, pixels, step, dataformats="HWC")
