"""Metrics of estimated pointwise dependency against an exact reference (torchmetrics, DDP-safe)."""

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
]
