"""LightningModules."""

from .finite import NonFiniteBoundError
from .mi_estimation import MIEstimationModule

__all__ = ["MIEstimationModule", "NonFiniteBoundError"]
