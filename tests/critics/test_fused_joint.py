"""The joint critic's blocked CPU grid (``JointReluGrid``) against autograd's plain path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pdlightning.critics import JointCritic, fused_joint
from pdlightning.critics.fused_joint import JointReluGrid, fused_grid_applies, linear_parameters
from pdlightning.modules.stacking import StackedCritic


def _scores_and_grads(critic: nn.Module, x, y, upstream, fused: bool, monkeypatch) -> tuple[torch.Tensor, list]:
    monkeypatch.setattr(fused_joint, "ENABLED", fused)
    critic.zero_grad(set_to_none=True)
    scores = critic.cross(x, y)
    ran_blocked = any("JointReluGrid" in type(f).__name__ for f, _ in scores.grad_fn.next_functions if f is not None)
    assert ran_blocked == fused, "the blocked grid must run exactly when enabled"
    (scores * upstream).sum().backward()
    return scores.detach(), [p.grad.clone() for p in critic.parameters()]


@pytest.mark.parametrize("hidden", [[16], [16, 8], [12, 16, 8]])
@pytest.mark.parametrize("block", [1, 40, 1 << 18])  # one row per block, uneven blocks with a remainder, one block
def test_the_blocked_grid_gives_the_plain_paths_scores_and_gradients(hidden, block, monkeypatch) -> None:
    torch.manual_seed(0)
    critic = JointCritic(3, 4, hidden)
    x, y = torch.randn(7, 3), torch.randn(5, 4)  # n != m
    upstream = torch.randn(7, 5)
    monkeypatch.setattr(fused_joint, "BLOCK_ELEMENTS", block)
    plain_scores, plain_grads = _scores_and_grads(critic, x, y, upstream, False, monkeypatch)
    scores, grads = _scores_and_grads(critic, x, y, upstream, True, monkeypatch)
    torch.testing.assert_close(scores, plain_scores)
    for (name, _), got, expected in zip(critic.named_parameters(), grads, plain_grads):
        torch.testing.assert_close(got, expected, msg=f"gradient of {name}")


def test_gradcheck_in_float64_across_several_blocks(monkeypatch) -> None:
    monkeypatch.setattr(fused_joint, "BLOCK_ELEMENTS", 2 * 3 * 6)  # two rows of three columns per block
    torch.manual_seed(0)
    critic = JointCritic(2, 2, [6, 5]).double()
    hx, hy = torch.randn(5, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    parameters = [p.detach().clone().requires_grad_(True) for p in linear_parameters(critic.rest)]
    inputs = (hx.requires_grad_(True), hy.requires_grad_(True), *parameters)
    assert torch.autograd.gradcheck(lambda *t: JointReluGrid.apply(*t), inputs)


def test_the_inputs_gradient_reaches_x_and_y(monkeypatch) -> None:
    torch.manual_seed(0)
    critic = JointCritic(3, 3, [8, 8])
    x0, y0 = torch.randn(4, 3), torch.randn(6, 3)
    for fused in (False, True):
        monkeypatch.setattr(fused_joint, "ENABLED", fused)
        x, y = x0.clone().requires_grad_(True), y0.clone().requires_grad_(True)
        critic.cross(x, y).square().sum().backward()
        if not fused:
            expected = (x.grad, y.grad)
    torch.testing.assert_close((x.grad, y.grad), expected)


def test_a_stack_of_members_looped_on_the_cpu_gives_the_plain_gradients(monkeypatch) -> None:
    torch.manual_seed(0)
    stack = StackedCritic([JointCritic(3, 3, [8, 8]) for _ in range(3)])
    x, y = torch.randn(6, 3), torch.randn(6, 3)
    grads = []
    for fused in (False, True):
        monkeypatch.setattr(fused_joint, "ENABLED", fused)
        stack.flat.grad = None
        stack(x, y).square().sum().backward()
        grads.append(stack.flat.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def test_the_plain_path_is_kept_where_the_blocked_grid_does_not_apply() -> None:
    critic = JointCritic(3, 3, [8])
    hx = torch.randn(4, 8, requires_grad=True)
    assert fused_grid_applies(critic.first_activation, critic.rest, hx, hx)
    with torch.no_grad():  # nothing to differentiate: no saved activations needed
        assert not fused_grid_applies(critic.first_activation, critic.rest, hx, hx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused_grid_applies(critic.first_activation, critic.rest, hx, hx)
    elu = JointCritic(3, 3, [8], activation="elu")
    assert not fused_grid_applies(elu.first_activation, elu.rest, hx, hx)
    assert not fused_grid_applies(critic.first_activation, critic.rest, hx.half(), hx.half())
    seen = []
    torch.vmap(lambda h: seen.append(fused_grid_applies(critic.first_activation, critic.rest, h, h)) or h)(
        hx.unsqueeze(0)
    )
    assert seen == [False]


def test_a_critic_under_vmap_and_autocast_still_scores(monkeypatch) -> None:
    """The paths the blocked grid leaves alone still run (a vmapped stack, bfloat16 autocast)."""
    torch.manual_seed(0)
    stack = StackedCritic([JointCritic(3, 3, [8, 8]) for _ in range(2)], chunk_size=2)
    x, y = torch.randn(5, 3), torch.randn(5, 3)
    looped = StackedCritic([stack.member(k) for k in range(2)], chunk_size=1)
    torch.testing.assert_close(stack.vmap(lambda c, a, b: c.cross(a, b), x, y), looped(x, y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert looped(x, y).dtype == torch.bfloat16
