"""torchvision ResNets adapted to 28x28 / 32x32 images (the PD paper's deep SSL task).

For small images the ImageNet stem (7x7 stride-2 conv + max-pool) throws away 3/4 of the resolution
before the first block; the usual CIFAR adaptation (SimCLR, Chen et al. 2020, App. B.9; solo-learn)
replaces it with a 3x3 stride-1 conv and drops the max-pool. ``arch`` is any torchvision ResNet
(``resnet18``, ``resnet34``, ``resnet50``, ...) or ``"cifar"``: a CIFAR-style ResNet (He et al. 2016,
Sec. 4.2) built from torchvision's ``BasicBlock`` with configurable ``widths`` and ``blocks`` (the
default ``[16, 32, 64] x [1, 1, 1]`` is small enough for CPU demos).
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

__all__ = ["ResNetEncoder"]


def _cifar_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    from torchvision.models.resnet import BasicBlock, conv1x1  # torchvision only where a ResNet is built

    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
    layers = [BasicBlock(inplanes, planes, stride, downsample)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetEncoder(nn.Module):
    """Image ``[n, C, H, W]`` (or ``[n, H, W]`` for one channel) -> globally pooled features ``[n, output_dim]``.

    Args:
        arch: a torchvision ResNet name (``resnet18``, ``resnet50``, ...) or ``"cifar"``.
        in_channels: 1 for MNIST / Fashion-MNIST, 3 for CIFAR-10.
        small_input: 3x3 stride-1 stem and no max-pool (for 28x28 / 32x32 inputs).
        widths: channels per stage (``arch="cifar"`` only).
        blocks: ``BasicBlock`` s per stage (``arch="cifar"`` only).

    Attributes:
        output_dim: feature size (512 for resnet18/34, 2048 for resnet50, ``widths[-1]`` for cifar).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        in_channels: int = 3,
        small_input: bool = True,
        widths: Optional[Sequence[int]] = None,
        blocks: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__()
        if not (isinstance(in_channels, int) and in_channels > 0):
            raise ValueError(f"in_channels: expected a positive integer, got {in_channels!r}")
        self.in_channels = in_channels
        if arch == "cifar":
            widths = list(widths) if widths is not None else [16, 32, 64]
            blocks = list(blocks) if blocks is not None else [1] * len(widths)
            if not widths or len(widths) != len(blocks) or min(widths) < 1 or min(blocks) < 1:
                raise ValueError(
                    f"widths / blocks: expected two equally long lists of positive integers, got {widths} and {blocks}"
                )
            stem = nn.Sequential(
                nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
            )
            if not small_input:
                stem.append(nn.MaxPool2d(3, 2, 1))
            stages = [
                _cifar_stage(widths[max(i - 1, 0)], width, count, 1 if i == 0 else 2)
                for i, (width, count) in enumerate(zip(widths, blocks))
            ]
            self.net = nn.Sequential(stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.output_dim = widths[-1]
        else:
            if widths is not None or blocks is not None:
                raise ValueError(f"widths / blocks: only configurable with arch='cifar', not arch={arch!r}")
            if not arch.startswith(("resnet", "wide_resnet", "resnext")):
                raise ValueError(f"arch: expected 'cifar' or a torchvision ResNet name (resnet18, ...), got {arch!r}")
            import torchvision

            try:
                net = torchvision.models.get_model(arch, weights=None)
            except ValueError as error:
                raise ValueError(f"arch: torchvision has no model {arch!r} ({error})") from None
            width = net.conv1.out_channels
            if small_input:
                net.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
                net.maxpool = nn.Identity()
            elif in_channels != 3:
                net.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.output_dim = net.fc.in_features
            net.fc = nn.Identity()
            self.net = net

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x: ResNetEncoder(in_channels={self.in_channels}) expects images [n, {self.in_channels}, H, W], "
                f"got {tuple(x.shape)}"
            )
        return self.net(x)
