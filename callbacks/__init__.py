"""Diagnostics callbacks (installed as ``pdlightning.callbacks``). They observe; they never change
training.

- :class:`DriftMonitor`: the bound's first/second terms and the critic's outputs on joint vs
  marginal pairs (ReMINE, Figs. 1-5).
- :class:`BiasVarianceMSE`: bias, variance and MSE of the estimates per true-MI level (SMILE, Table 2).
- :class:`StaircaseFigure`: estimate, EWM and true MI per step (PD paper, Fig. 1).
"""

from .bias_variance import BiasVarianceMSE, LevelStatistics, level_statistics, markdown_table
from .drift import DriftMonitor
from .smoothing import ewm
from .staircase import StaircaseFigure
from .stream import EstimateStream

__all__ = [
    "BiasVarianceMSE",
    "DriftMonitor",
    "EstimateStream",
    "LevelStatistics",
    "StaircaseFigure",
    "ewm",
    "level_statistics",
    "markdown_table",
]
