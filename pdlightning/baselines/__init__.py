"""Classical MI baselines run on the same samples as the neural estimators: KSG and CCA."""

from .base import BaselineEstimate
from .cca import CCA, canonical_correlations, cca_mi
from .ksg import KSG, ksg_mi

__all__ = ["BaselineEstimate", "KSG", "ksg_mi", "CCA", "cca_mi", "canonical_correlations"]
