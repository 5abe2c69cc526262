"""Encoders for contrastive SSL: the PD paper's shallow task (RealNVP-style invertible network) and
deep task (torchvision ResNet adapted to 28x28 / 32x32 inputs), a small conv encoder for image critics,
plus projection heads and the linear probe."""

from .heads import ProjectionHead, linear_probe
from .image import ImageEncoder
from .realnvp import AdditiveCoupling, RealNVPEncoder
from .resnet import ResNetEncoder

__all__ = ["AdditiveCoupling", "ImageEncoder", "RealNVPEncoder", "ResNetEncoder", "ProjectionHead", "linear_probe"]
