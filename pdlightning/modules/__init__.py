"""LightningModules."""

from .contrastive_ssl import ContrastiveSSLModule
from .finite import NonFiniteBoundError
from .linear_eval import LinearEvalModule
from .members import Member
from .mi_estimation import MIEstimationModule

__all__ = [
    "MIEstimationModule",
    "Member",
    "NonFiniteBoundError",
    "ContrastiveSSLModule",
    "LinearEvalModule",
]
