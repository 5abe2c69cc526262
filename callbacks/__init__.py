"""Callbacks (installed as ``pdlightning.callbacks``). They observe; they never change training.

Diagnostics of training:

- :class:`DriftMonitor`: the bound's first/second terms and the critic's outputs on joint vs
  marginal pairs (ReMINE, Figs. 1-5).
- :class:`BiasVarianceMSE`: bias, variance and MSE of the estimates per true-MI level (SMILE, Table 2).
- :class:`StaircaseFigure`: estimate, EWM and true MI per step (PD paper, Fig. 1).

Evaluation of a trained critic:

- :class:`ClassifierAccuracy`, :class:`NearestNeighbourAccuracy`: SLB / CLB test accuracy (ReMINE Sec. 5.1).
- :class:`CrossModalRetrieval`: 1:5 matching by PMI (PD paper, Sec. 6).
- :class:`PMIWriter`: the PMI of every predicted pair as CSV (``pdlightning predict``).
- :class:`PointwiseAccuracy`: estimated vs exact PMI of held-out pairs (RMSE, MAE, Spearman, plug-in
  bias, calibration on product pairs, the PMI profile) at validation / test (the task suite).
"""

from .accuracy import ClassifierAccuracy, NearestNeighbourAccuracy, cross_scores
from .bias_variance import BiasVarianceMSE, LevelStatistics, level_statistics, markdown_table
from .drift import DriftMonitor
from .pmi_writer import PMIWriter
from .pointwise import PointwiseAccuracy
from .retrieval import (
    CrossModalRetrieval,
    least_squares_scores,
    matching_trials,
    ranked_listing,
    retrieval_accuracy,
)
from .smoothing import ewm
from .staircase import StaircaseFigure
from .stream import EstimateStream

__all__ = [
    "BiasVarianceMSE",
    "ClassifierAccuracy",
    "CrossModalRetrieval",
    "DriftMonitor",
    "EstimateStream",
    "LevelStatistics",
    "NearestNeighbourAccuracy",
    "PMIWriter",
    "PointwiseAccuracy",
    "StaircaseFigure",
    "cross_scores",
    "ewm",
    "least_squares_scores",
    "level_statistics",
    "markdown_table",
    "matching_trials",
    "ranked_listing",
    "retrieval_accuracy",
]
