"""Critics ``T(x, y)``: joint (concat MLP), separable (inner product), bilinear, encoded."""

from .._deprecation import moved_names
from .base import Critic
from .baseline import BaselineShiftedCritic
from .bilinear import BilinearCritic
from .encoded import DotProductCritic, EncodedCritic
from .joint import JointCritic
from .separable import SeparableCritic

__all__ = [
    "Critic",
    "JointCritic",
    "SeparableCritic",
    "BilinearCritic",
    "BaselineShiftedCritic",
    "DotProductCritic",
    "EncodedCritic",
]

__getattr__ = moved_names(__name__, {"ImageEncoder": "pdlightning.encoders", "mlp": "pdlightning.nn"})
