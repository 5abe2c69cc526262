"""Metrics of estimated pointwise dependency against an exact reference (torchmetrics, DDP-safe), and the mode
coverage of a generator on a Gaussian mixture (:mod:`.modes`)."""

from .modes import ModeCoverage, grid_centres, mode_coverage
from .pointwise import (
    LogMeanRatio,
    PlugInMIBias,
    PMIMeanAbsoluteError,
    PMIRootMeanSquaredError,
    PMISpearmanCorrCoef,
    average_ranks,
    pointwise_pmi_metrics,
)

__all__ = [
    "PMIRootMeanSquaredError",
    "PMIMeanAbsoluteError",
    "PlugInMIBias",
    "PMISpearmanCorrCoef",
    "LogMeanRatio",
    "average_ranks",
    "pointwise_pmi_metrics",
    "ModeCoverage",
    "mode_coverage",
    "grid_centres",
]
