"""eta-MINE's Algorithm 1 (Mroueh et al., AAAI 2021): ``critic_updates_per_aux_step = n_c`` critic steps per step of
the bounds' own scalars (eta of eta-DV), ``aux_lr`` their own learning rate; the default moves both together."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from pdlightning.bounds import EtaDV
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.data.gaussian import sample_correlated_gaussian
from pdlightning.modules import MIEstimationModule
from pdlightning.modules.members import resolve_members


class _Watch(L.Callback):
    def __init__(self) -> None:
        self.eta: list[float] = []
        self.critic: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.eta.append(float(module.bound.eta))
        self.critic.append(module.critic_stacks[0].flat.detach().clone())


def _fit(module: MIEstimationModule, steps: int, callbacks=(), batch: int = 128) -> None:
    L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        callbacks=list(callbacks),
    ).fit(
        module, CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0], steps_per_level=steps, batch_size=batch, seed=2)
    )


def test_eta_moves_once_every_n_c_steps_and_the_critic_at_every_step():
    torch.manual_seed(0)
    module = MIEstimationModule(JointCritic(2, 2, [16]), EtaDV(), critic_updates_per_aux_step=3, aux_lr=0.05)
    watch = _Watch()
    _fit(module, 9, [watch], batch=32)
    eta = [0.0, *watch.eta]
    moved = [step for step in range(9) if eta[step + 1] != eta[step]]
    assert moved == [2, 5, 8]  # after critic steps 1-3, 4-6, 7-9
    assert all(not torch.equal(a, b) for a, b in zip(watch.critic, watch.critic[1:]))
    assert abs(eta[3] - eta[2]) > 0.01  # aux_lr = 0.05: Adam's first step moves eta by about its learning rate


def _eta_optimum(module: MIEstimationModule) -> float:
    """``argmin_eta`` of eta-DV for the trained critic: ``log E_{p(x)p(y)}[e^f]`` (on a large product sample)."""
    x, y = sample_correlated_gaussian(4096, 2, 1.0, torch.Generator().manual_seed(5))
    critic = module.member_critic(module.member_names[0])
    with torch.no_grad():
        marginal = critic.pointwise(x, y.roll(1, 0))
    return float(torch.logsumexp(marginal, 0) - math.log(marginal.numel()))


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param({}, marks=pytest.mark.slow, id="joint"),
        pytest.param({"critic_updates_per_aux_step": 5, "aux_lr": 5e-3}, id="bcd"),
    ],
)
def test_block_coordinate_descent_reaches_the_joint_steps_optimum(schedule):
    """On a 1-nat Gaussian, both schedules end at eta = log E_Q[e^f] (eta-DV's closed-form optimum for the critic:
    there eta-DV equals DV) and at the true MI."""
    torch.manual_seed(0)
    module = MIEstimationModule(
        JointCritic(2, 2, [64]), EtaDV(), optimizer=lambda p: torch.optim.Adam(p, lr=2e-3), **schedule
    )
    _fit(module, 800)
    assert abs(float(module.bound.eta) - _eta_optimum(module)) < 0.1
    x, y = sample_correlated_gaussian(4096, 2, 1.0, torch.Generator().manual_seed(9))
    with torch.no_grad():
        joint, marginal = module.stacked_scores({"x": x[:512], "y": y[:512]})
        estimate = float(module.bounds(joint, marginal).estimate[0])
    assert abs(estimate - 1.0) < 0.2, estimate


def test_bad_schedules_name_the_parameter():
    with pytest.raises(ValueError, match="critic_updates_per_aux_step: expected an integer n_c >= 1"):
        MIEstimationModule(JointCritic(2, 2, [8]), EtaDV(), critic_updates_per_aux_step=0)
    with pytest.raises(ValueError, match="aux_lr: expected a learning rate > 0"):
        MIEstimationModule(JointCritic(2, 2, [8]), EtaDV(), aux_lr=-1.0)


def test_the_bcd_fragment_is_a_module_setting_no_member_can_carry():
    with pytest.raises(ValueError, match="eta_mine_bcd.*settings of the whole module"):
        resolve_members(["nwj", "eta_mine_bcd"])
