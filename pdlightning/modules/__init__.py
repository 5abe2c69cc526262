"""LightningModules."""

from .contrastive_ssl import ContrastiveSSLModule
from .ensemble import EnsembleMember, MIEnsembleModule
from .finite import NonFiniteBoundError
from .linear_eval import LinearEvalModule
from .mi_estimation import MIEstimationModule

__all__ = [
    "MIEstimationModule",
    "MIEnsembleModule",
    "EnsembleMember",
    "NonFiniteBoundError",
    "ContrastiveSSLModule",
    "LinearEvalModule",
]
