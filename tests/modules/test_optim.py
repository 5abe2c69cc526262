"""The member-aware optimisers: on stacked parameters, each member's rows follow exactly torch's optimiser run on
that member alone, including the steps it was left out of (no update, no moment change, no step count), its own
learning rate, and non-finite gradients of a member left out."""

from __future__ import annotations

import functools

import pytest
import torch

from pdlightning.modules.optim import MemberAdam, MemberSGD, RestoreLeftOut, member_optimizer

STEPS = 25


def _run(ours: torch.optim.Optimizer, stacked: torch.nn.Parameter, make_alone, scales=(1.0, 1.0, 1.0)):
    """Drive ``ours`` on ``stacked [3, 5, 4]`` and three torch optimisers on the members' slices with the same
    gradients; member 1 is left out of every third step (its gradient then NaN)."""
    torch.manual_seed(0)
    alone = [torch.nn.Parameter(stacked.detach()[k].clone()) for k in range(3)]
    theirs = [make_alone([p], scale) for p, scale in zip(alone, scales)]
    for step in range(STEPS):
        gradient = torch.randn(3, 5, 4) * (1 + step % 4)
        mask = torch.tensor([True, step % 3 != 0, True])
        stacked.grad = torch.where(mask.view(3, 1, 1), gradient, torch.tensor(float("nan")))
        ours.update_mask = mask  # type: ignore[attr-defined]
        ours.step()
        for k in range(3):
            if mask[k]:
                alone[k].grad = gradient[k].clone()
                theirs[k].step()
    return alone


@pytest.mark.parametrize(
    "ours, torch_class, options",
    [
        (MemberAdam, torch.optim.Adam, {"lr": 0.05}),
        (MemberAdam, torch.optim.Adam, {"lr": 0.05, "weight_decay": 0.1, "betas": (0.8, 0.99)}),
        (functools.partial(MemberAdam, decoupled=True), torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.1}),
        # the masked passes a GPU runs (no host read of the mask), checked here on the CPU too
        (functools.partial(MemberAdam, fused=False), torch.optim.Adam, {"lr": 0.05}),
        (functools.partial(MemberAdam, fused=False), torch.optim.Adam, {"lr": 0.05, "weight_decay": 0.1}),
        (
            functools.partial(MemberAdam, decoupled=True, fused=False),
            torch.optim.AdamW,
            {"lr": 0.05, "weight_decay": 0.1},
        ),
        (MemberSGD, torch.optim.SGD, {"lr": 0.05}),
        (MemberSGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
        (MemberSGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ],
)
def test_each_member_follows_torch_s_optimiser_alone_with_skipped_steps(ours, torch_class, options):
    torch.manual_seed(1)
    stacked = torch.nn.Parameter(torch.randn(3, 5, 4))
    optimizer = ours([stacked], **options)
    optimizer.set_members({stacked: torch.arange(3)})
    alone = _run(optimizer, stacked, lambda params, scale: torch_class(params, **options))
    for k in range(3):
        torch.testing.assert_close(stacked.detach()[k], alone[k].detach(), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(stacked).all()


@pytest.mark.parametrize("fused", [None, False])
def test_per_member_learning_rates_are_a_stacked_scale(fused):
    torch.manual_seed(2)
    stacked = torch.nn.Parameter(torch.randn(3, 5, 4))
    scales = (1.0, 0.5, 2.0)
    optimizer = MemberAdam([stacked], lr=0.02, fused=fused)
    optimizer.set_members({stacked: torch.arange(3)}, torch.tensor(scales))
    alone = _run(optimizer, stacked, lambda params, scale: torch.optim.Adam(params, lr=0.02 * scale), scales)
    for k in range(3):
        torch.testing.assert_close(stacked.detach()[k], alone[k].detach(), rtol=1e-5, atol=1e-5)


def test_the_config_s_optimiser_becomes_its_member_aware_version():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adam = member_optimizer(functools.partial(torch.optim.Adam, lr=0.1, foreach=True), params)
    assert isinstance(adam, MemberAdam) and adam.defaults["lr"] == 0.1
    adamw = member_optimizer(torch.optim.AdamW, params)
    assert isinstance(adamw, MemberAdam) and adamw.defaults["decoupled"] and adamw.defaults["weight_decay"] == 0.01
    assert isinstance(member_optimizer(functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9), params), MemberSGD)
    amsgrad = member_optimizer(functools.partial(torch.optim.Adam, amsgrad=True), params)
    assert type(amsgrad) is torch.optim.Adam  # no member-aware version: used as it is (RestoreLeftOut)
    assert type(member_optimizer(torch.optim.RMSprop, params)) is torch.optim.RMSprop


def test_restore_left_out_puts_a_left_out_member_back_for_any_optimiser():
    torch.manual_seed(3)
    stacked = torch.nn.Parameter(torch.randn(3, 4))
    optimizer = torch.optim.RMSprop([stacked], lr=0.1)
    restore = RestoreLeftOut({stacked: torch.arange(3)})
    for _ in range(3):
        before = stacked.detach().clone()
        stacked.grad = torch.randn(3, 4)
        restore.before(optimizer, torch.tensor([True, False, True]))
        optimizer.step()
        restore.after()
        assert torch.equal(stacked.detach()[1], before[1]) and not torch.equal(stacked.detach()[0], before[0])
    assert torch.equal(optimizer.state[stacked]["square_avg"][1], torch.zeros(4))


def test_bad_learning_rates_are_named():
    with pytest.raises(ValueError, match="lr: expected a learning rate >= 0"):
        MemberAdam([torch.nn.Parameter(torch.zeros(1))], lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        MemberSGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, nesterov=True)


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")
def test_the_cli_s_optimiser_becomes_its_member_aware_version_too(tmp_path):
    """The CLI hands the module jsonargparse's wrapper of the configured class (partial(call_without_instantiate_context,
    instantiator, torch.optim.Adam, lr=..., every other default)), not the class: it is still member-aware Adam."""
    from pdlightning.cli.main import build_cli

    cli = build_cli(
        [
            "-c",
            "mi/gaussian.yaml",
            "--model.init_args.optimizer.init_args.lr=0.02",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    params = [torch.nn.Parameter(torch.zeros(2))]
    adam = member_optimizer(cli.model.optimizer_factory, params)
    assert isinstance(adam, MemberAdam) and adam.defaults["lr"] == 0.02 and not adam.defaults["decoupled"]
    sgd = build_cli(
        [
            "-c",
            "mi/gaussian.yaml",
            "--model.init_args.optimizer=torch.optim.SGD",
            "--model.init_args.optimizer.init_args.lr=0.1",
        ],
        run=False,
    )
    assert isinstance(member_optimizer(sgd.model.optimizer_factory, params), MemberSGD)
