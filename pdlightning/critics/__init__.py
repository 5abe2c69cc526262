"""Critics ``T(x, y)``: joint (concat MLP), separable (inner product), bilinear."""

from .base import Critic, mlp
from .baseline import BaselineShiftedCritic
from .bilinear import BilinearCritic
from .encoded import DotProductCritic, EncodedCritic
from .image_encoder import ImageEncoder
from .joint import JointCritic
from .separable import SeparableCritic

__all__ = ["Critic", "mlp", "JointCritic", "SeparableCritic", "BilinearCritic", "BaselineShiftedCritic",
           "DotProductCritic", "EncodedCritic", "ImageEncoder"]
