"""Encoders for contrastive SSL: the PD paper's shallow task (RealNVP-style invertible network) and
deep task (torchvision ResNet adapted to 28x28 / 32x32 inputs), plus projection heads."""

from .heads import ProjectionHead, linear_probe
from .realnvp import AdditiveCoupling, RealNVPEncoder
from .resnet import ResNetEncoder

__all__ = ["AdditiveCoupling", "RealNVPEncoder", "ResNetEncoder", "ProjectionHead", "linear_probe"]
