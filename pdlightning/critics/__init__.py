"""Critics ``T(x, y)``: joint (concat MLP), separable (inner product), bilinear, encoded, a conditional Gaussian
``log q(y | x)`` (CLUB, L1Out) and TRE's telescoping critic."""

from .._deprecation import moved_names
from .base import Critic
from .baseline import BaselineShiftedCritic
from .bilinear import BilinearCritic
from .conditional import ConditionalGaussianCritic
from .encoded import DotProductCritic, EncodedCritic
from .joint import JointCritic
from .separable import SeparableCritic
from .telescoping import TelescopingCritic

__all__ = [
    "Critic",
    "JointCritic",
    "SeparableCritic",
    "BilinearCritic",
    "BaselineShiftedCritic",
    "DotProductCritic",
    "EncodedCritic",
    "ConditionalGaussianCritic",
    "TelescopingCritic",
]

__getattr__ = moved_names(__name__, {"ImageEncoder": "pdlightning.encoders", "mlp": "pdlightning.nn"})
