"""MI bounds and PD / PMI objectives over a critic's scores (see :mod:`.base` for the interface)."""

from .base import Bound, BoundOutput, PairScores, log_mean_exp
from .density_matching import DensityMatchingI, DensityMatchingII
from .density_ratio_fitting import DensityRatioFitting
from .dv import DV, MINE
from .fdime import FDIME
from .infonce import InfoNCE
from .js import JS
from .nwj import NWJ, TUBA, EtaDV, ShiftedExponentialBound
from .plug_in import PlugInBound, VariationalPlugIn
from .probabilistic_classifier import ProbabilisticClassifier
from .regularized import Regularized
from .smile import SMILE
from .tre import TRE
from .upper import CLUB, L1Out

__all__ = [
    "Bound",
    "BoundOutput",
    "PairScores",
    "ShiftedExponentialBound",
    "log_mean_exp",
    "NWJ",
    "TUBA",
    "DV",
    "MINE",
    "JS",
    "InfoNCE",
    "SMILE",
    "EtaDV",
    "PlugInBound",
    "VariationalPlugIn",
    "ProbabilisticClassifier",
    "DensityRatioFitting",
    "DensityMatchingI",
    "DensityMatchingII",
    "Regularized",
    "FDIME",
    "TRE",
    "CLUB",
    "L1Out",
]
