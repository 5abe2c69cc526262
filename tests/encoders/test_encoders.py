"""Encoders: the shallow task's invertible RealNVP, the adapted torchvision ResNets, projection heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pdlightning.encoders import ProjectionHead, RealNVPEncoder, ResNetEncoder


@pytest.mark.parametrize("shift_only", [True, False])
def test_realnvp_is_invertible(shift_only: bool) -> None:
    torch.manual_seed(0)
    encoder = RealNVPEncoder(dim=20, num_couplings=4, hidden_dims=[16], shift_only=shift_only, init_std=0.3)
    x = torch.randn(7, 4, 5)  # flattened to 20 features
    z = encoder(x)
    assert z.shape == (7, 20) and encoder.output_dim == 20
    assert (z - x.reshape(7, -1)).abs().max() > 1e-2, "the couplings should change the input at this init"
    torch.testing.assert_close(encoder.inverse(z), x.reshape(7, -1), atol=1e-5, rtol=1e-5)


def test_realnvp_public_code_init_is_a_pixel_permutation() -> None:
    """With the public code's init (std 1e-4) the encoder starts as a permutation of the inputs."""
    encoder = RealNVPEncoder(dim=392, num_couplings=3, hidden_dims=[32])
    x = torch.rand(5, 14, 28)
    z = encoder(x)
    torch.testing.assert_close(z.sort(dim=1).values, x.reshape(5, -1).sort(dim=1).values, atol=1e-4, rtol=0)
    # the fixed permutations are buffers: a checkpoint restores them
    assert "permutations" in encoder.state_dict()
    other = RealNVPEncoder(dim=392, num_couplings=3, hidden_dims=[32], permutation_seed=1)
    assert not torch.equal(other.permutations, encoder.permutations)


def test_realnvp_rejects_wrong_input_size() -> None:
    with pytest.raises(ValueError, match="dim=392"):
        RealNVPEncoder(dim=392, num_couplings=1, hidden_dims=[8])(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="num_couplings"):
        RealNVPEncoder(dim=8, num_couplings=0)


def test_resnet18_adapted_to_small_grey_images() -> None:
    encoder = ResNetEncoder("resnet18", in_channels=1, small_input=True)
    conv1 = encoder.net.conv1
    assert conv1.kernel_size == (3, 3) and conv1.stride == (1, 1) and conv1.in_channels == 1
    assert isinstance(encoder.net.maxpool, nn.Identity)
    assert encoder.output_dim == 512
    assert encoder(torch.randn(2, 28, 28)).shape == (2, 512)  # [n, H, W] accepted for one channel


def test_cifar_resnet_is_configurable_and_checks_channels() -> None:
    encoder = ResNetEncoder("cifar", in_channels=3, widths=[8, 16], blocks=[1, 2])
    assert encoder.output_dim == 16
    assert encoder(torch.randn(3, 3, 32, 32)).shape == (3, 16)
    with pytest.raises(ValueError, match="in_channels=3"):
        encoder(torch.randn(3, 1, 32, 32))
    with pytest.raises(ValueError, match="arch"):
        ResNetEncoder("vgg11")
    with pytest.raises(ValueError, match="widths / blocks"):
        ResNetEncoder("resnet18", widths=[8])


def test_projection_head_shapes() -> None:
    head = ProjectionHead(in_dim=16, hidden_dims=[32], out_dim=8)
    assert head(torch.randn(4, 16)).shape == (4, 8)
    assert ProjectionHead(16, [], 8)(torch.randn(4, 16)).shape == (4, 8)
