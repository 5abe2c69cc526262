"""LightningModules."""

from .mi_estimation import MIEstimationModule, NonFiniteBoundError

__all__ = ["MIEstimationModule", "NonFiniteBoundError"]
