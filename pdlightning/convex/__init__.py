"""η-MINE-convex (Mroueh et al., AAAI 2021, Sec. 3): the η-DV bound with a linear witness on a fixed feature map,
solved to its optimum. :mod:`.features`: the maps (random Fourier features, a trained critic's feature layer);
:mod:`.eta_dv`: the convex fit, its η-DV value, KALE reading and pointwise ``log r``."""

from .eta_dv import ConvexSolution, EtaDVConvex, eta_dv_loss, fit_eta_dv_convex, shifted_pairs, solve_eta_dv
from .features import CriticFeatures, FeatureMap, RandomFourierFeatures, median_distance, output_layer

__all__ = [
    "ConvexSolution",
    "EtaDVConvex",
    "eta_dv_loss",
    "fit_eta_dv_convex",
    "shifted_pairs",
    "solve_eta_dv",
    "CriticFeatures",
    "FeatureMap",
    "RandomFourierFeatures",
    "median_distance",
    "output_layer",
]
