"""Image encoder of the SMILE self-consistency experiments (Song & Ermon, ICLR 2020, App. B.2)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from ..nn import activation_by_name, mlp

__all__ = ["ImageEncoder"]


class ImageEncoder(nn.Module):
    """``[n, C, H, W]`` (or ``[n, H, W]`` for one channel) images to ``[n, out_dim]`` features.

    The default is SMILE's discriminative network body: ``conv(64, k5, s2, p2) - ReLU -
    conv(128, k5, s2, p2) - ReLU - FC(1024) - ReLU - Linear(out_dim)``. ``conv_channels=()`` gives an
    MLP on the flattened pixels (cheap on CPU).

    Args:
        in_channels: image channels ``C`` (stacked variables, e.g. ``[X, X]``, count as channels).
        image_size: height = width of the images.
        out_dim: output features (the logits ``f(x)`` for SLB, an embedding otherwise).
        conv_channels: output channels of each ``5 x 5`` stride-2 convolution.
        hidden_dims: widths of the fully connected layers after the convolutions.
        activation: hidden activation name.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        out_dim: int = 128,
        conv_channels: Sequence[int] = (64, 128),
        hidden_dims: Sequence[int] = (1024,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("image_size", image_size), ("out_dim", out_dim)):
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.in_channels, self.image_size, self.out_dim = in_channels, image_size, out_dim
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for width in conv_channels:
            layers += [nn.Conv2d(channels, width, kernel_size=5, stride=2, padding=2), activation_by_name(activation)]
            channels, size = width, (size + 1) // 2
        self.conv = nn.Sequential(*layers)
        self.head = mlp(channels * size * size, hidden_dims, out_dim, activation)

    @property
    def output_dim(self) -> int:
        """The representation size (``out_dim``), as linear evaluation and the SSL probe read it."""
        return self.out_dim

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() == 3 and self.in_channels == 1:
            images = images.unsqueeze(1)
        expected = (self.in_channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images: expected shape [n, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(in_channels, image_size), got {tuple(images.shape)}"
            )
        return self.head(self.conv(images).flatten(1))
