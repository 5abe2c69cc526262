"""LightningModules."""

from .contrastive_ssl import ContrastiveSSLModule
from .finite import NonFiniteBoundError
from .linear_eval import LinearEvalModule
from .ensemble import EnsembleMember, MIEnsembleModule
from .mi_estimation import MIEstimationModule

__all__ = ["MIEstimationModule", "MIEnsembleModule", "EnsembleMember", "NonFiniteBoundError", "ContrastiveSSLModule",
           "LinearEvalModule"]
