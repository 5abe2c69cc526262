import pytest
import torch
from torch import nn

from pdlightning.critics import BaselineShiftedCritic, BilinearCritic, JointCritic, SeparableCritic


def naive_tiled(critic: JointCritic, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The textbook concat critic: n^2 tiled [x_i; y_j] through the same layers."""
    n = x.shape[0]
    pairs = torch.cat([x.unsqueeze(1).expand(n, n, -1), y.unsqueeze(0).expand(n, n, -1)], dim=-1)
    return nn.Sequential(critic.first, critic.first_activation, *critic.rest)(pairs).squeeze(-1)


@pytest.mark.parametrize("activation", ["relu", "elu", "tanh"])
def test_joint_critic_equals_the_tiled_concat_mlp_with_its_gradients(activation):
    torch.manual_seed(0)
    critic = JointCritic(5, 3, hidden_dims=[16, 8], activation=activation)
    x, y = torch.randn(7, 5), torch.randn(7, 3)
    fast, slow = critic(x, y), naive_tiled(critic, x, y)
    assert fast.shape == (7, 7)
    assert torch.allclose(fast, slow, atol=1e-5)
    grads_fast = torch.autograd.grad(fast.sum(), list(critic.parameters()))
    grads_slow = torch.autograd.grad(slow.sum(), list(critic.parameters()))
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads_fast, grads_slow))


@pytest.mark.parametrize(
    "critic",
    [
        JointCritic(4, 6, [8]),
        SeparableCritic(4, 6, [8], embed_dim=5),
        SeparableCritic(4, 6, [8], normalize=True, temperature=0.1),
        BilinearCritic(4, 6),
        BaselineShiftedCritic(JointCritic(4, 6, [8])),
    ],
)
def test_pointwise_is_the_diagonal_of_the_score_matrix(critic):
    x, y = torch.randn(9, 4), torch.randn(9, 6)
    assert torch.allclose(critic.pointwise(x, y), critic(x, y).diagonal(), atol=1e-5)


def test_inputs_of_any_shape_are_flattened():
    critic = JointCritic(12, 12, [8])
    x, y = torch.randn(5, 3, 4), torch.randn(5, 2, 6)
    assert critic(x, y).shape == (5, 5)


def test_normalised_separable_scores_are_bounded_by_the_temperature():
    critic = SeparableCritic(4, 4, [8], normalize=True, temperature=0.5)
    scores = critic(torch.randn(10, 4) * 100, torch.randn(10, 4))
    assert scores.abs().max().item() <= 2.0 + 1e-5


def test_bilinear_critic_is_x_w_y():
    critic = BilinearCritic(3, 2)
    x, y = torch.randn(4, 3), torch.randn(4, 2)
    assert torch.allclose(critic(x, y), x @ critic.weight @ y.T, atol=1e-6)


def test_baseline_shift_subtracts_a_function_of_y_only():
    inner = JointCritic(3, 3, [8])
    shifted = BaselineShiftedCritic(inner)
    x, y = torch.randn(6, 3), torch.randn(6, 3)
    delta = inner(x, y) - shifted(x, y)
    assert torch.allclose(delta, delta[0:1].expand(6, 6), atol=1e-6)


def test_feature_size_mismatch_names_the_dimension():
    with pytest.raises(ValueError, match=r"x: the critic expects 20 features .*x_dim.* got 19"):
        JointCritic(20, 20)(torch.randn(4, 19), torch.randn(4, 20))
    with pytest.raises(ValueError, match="y_dim"):
        SeparableCritic(20, 20)(torch.randn(4, 20), torch.randn(4, 21))


def test_batch_size_mismatch_is_rejected():
    with pytest.raises(ValueError, match="same batch size"):
        BilinearCritic(2, 2)(torch.randn(4, 2), torch.randn(5, 2))


@pytest.mark.parametrize(
    "factory, parameter",
    [
        (lambda: JointCritic(0, 3), "x_dim"),
        (lambda: JointCritic(3, 3, []), "hidden_dims"),
        (lambda: JointCritic(3, 3, activation="swish"), "activation"),
        (lambda: SeparableCritic(3, 3, temperature=0.0), "temperature"),
    ],
)
def test_bad_critic_arguments_name_the_parameter(factory, parameter):
    with pytest.raises(ValueError, match=parameter):
        factory()
