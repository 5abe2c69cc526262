"""Diagnostics callbacks (installed as ``pdlightning.callbacks``). They observe; they never change
training."""

from .bias_variance import BiasVarianceMSE, LevelStatistics, level_statistics

__all__ = ["BiasVarianceMSE", "LevelStatistics", "level_statistics"]
