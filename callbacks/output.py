"""Where diagnostics go: the run directory, PNG files, and TensorBoard images.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered with the Agg canvas, so no
pyplot state or GUI backend is touched.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pdlightning.results import run_directory
from pdlightning.step_logging import is_logging_step, log_scalars, logging_step

__all__ = [
    "logging_step",
    "is_logging_step",
    "log_scalars",
    "run_directory",
    "figure_to_array",
    "tensorboard_writers",
    "publish_figure",
]


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
