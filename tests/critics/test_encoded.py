import pytest
import torch
from torch import nn

from pdlightning.critics import DotProductCritic, EncodedCritic, JointCritic
from pdlightning.encoders import ImageEncoder


@pytest.mark.parametrize("conv_channels", [(8, 16), ()])
def test_image_encoder_shapes_and_single_channel_input(conv_channels):
    encoder = ImageEncoder(in_channels=1, image_size=28, out_dim=5, conv_channels=conv_channels, hidden_dims=[32])
    assert encoder(torch.rand(3, 1, 28, 28)).shape == (3, 5)
    assert encoder(torch.rand(3, 28, 28)).shape == (3, 5)  # [n, H, W] for one channel
    with pytest.raises(ValueError, match="in_channels"):
        encoder(torch.rand(3, 2, 28, 28))


def test_image_encoder_odd_sizes_and_bad_args():
    assert ImageEncoder(3, 32, 4, (8, 8, 8), [16])(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    assert ImageEncoder(1, 7, 4, (8,), [16])(torch.rand(2, 1, 7, 7)).shape == (2, 4)
    with pytest.raises(ValueError, match="out_dim"):
        ImageEncoder(out_dim=0)


def test_encoded_critic_pointwise_is_the_diagonal_of_the_score_matrix():
    torch.manual_seed(0)
    critic = EncodedCritic(ImageEncoder(1, 8, 6, (), [16]), JointCritic(6, 6, [16]), ImageEncoder(1, 8, 6, (4,), [16]))
    x, y = torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)
    scores = critic(x, y)
    assert scores.shape == (5, 5)
    assert torch.allclose(critic.pointwise(x, y), scores.diagonal(), atol=1e-5)
    with pytest.raises(ValueError, match="batch size"):
        critic(x, y[:3])


def test_slb_critic_is_logit_of_the_label_and_clb_critic_is_symmetric():
    torch.manual_seed(0)
    f = ImageEncoder(1, 8, 4, (), [16])
    slb = EncodedCritic(f, DotProductCritic(4), y_encoder=nn.Identity())
    x = torch.rand(6, 1, 8, 8)
    onehot = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1])]
    assert torch.allclose(slb(x, onehot), f(x)[:, [0, 1, 2, 3, 0, 1]], atol=1e-6)
    clb = EncodedCritic(f, DotProductCritic(4))  # shared encoder
    scores = clb(x, x)
    assert torch.allclose(scores, scores.T, atol=1e-5)


def test_dot_product_cross_scores_batches_of_different_sizes():
    head = DotProductCritic(3, temperature=0.5)
    x, y = torch.randn(4, 3), torch.randn(7, 3)
    assert torch.allclose(head.cross(x, y), 2 * x @ y.T)
    with pytest.raises(ValueError, match="temperature"):
        DotProductCritic(3, temperature=0.0)
