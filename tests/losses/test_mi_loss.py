"""MILoss: a bound and its critic as one module inside any LightningModule. It trains with the host's optimiser or
its own, the MI term climbs to a known MI, its own-optimiser mode sends the host's gradient to the inputs only, the
package's non-finite guard raises or skips, its optimiser state checkpoints, and a critic that does not fit the
inputs is an error naming the parameter."""

from __future__ import annotations

import functools
import statistics

import lightning as L
import pytest
import torch
from torch import nn

from pdlightning.bounds import DV, EtaDV, InfoNCE
from pdlightning.critics import JointCritic, SeparableCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.losses import MILoss
from pdlightning.modules import NonFiniteBoundError

STEPS = 300
TRUE_MI = 1.0


class Host(L.LightningModule):
    """A model whose loss is its MI term: a linear encoder of x, and the MI between its output and y."""

    def __init__(self, own_optimizer: bool) -> None:
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        own = functools.partial(torch.optim.Adam, lr=3e-3) if own_optimizer else None
        self.mi = MILoss(JointCritic(2, 2, [32]), EtaDV(), optimizer=own)
        self.estimates: list[float] = []

    def training_step(self, batch, batch_idx):
        term = self.mi(self.encoder(batch["x"]), batch["y"])
        self.estimates.append(float(term.mi))
        return term.loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def _fit(module: L.LightningModule, steps: int = STEPS) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    data = CorrelatedGaussianDataModule(dim=2, mi_schedule=[TRUE_MI], steps_per_level=steps, batch_size=128)
    trainer.fit(module, data)
    return trainer


@pytest.mark.parametrize("own_optimizer", [False, True], ids=["host-optimizer", "own-optimizer"])
def test_the_mi_term_climbs_to_the_true_mi_inside_a_lightning_module(own_optimizer):
    torch.manual_seed(0)
    host = Host(own_optimizer)
    critic_before = [p.detach().clone() for p in host.mi.critic.parameters()]
    trainer = _fit(host)
    assert trainer.global_step == STEPS
    start, end = statistics.mean(host.estimates[:20]), statistics.mean(host.estimates[-50:])
    assert start < 0.3 and abs(end - TRUE_MI) < 0.2, (start, end)  # I(Wx; y) = I(x; y) for an invertible W
    assert all(not torch.equal(a, b) for a, b in zip(critic_before, host.mi.critic.parameters()))
    host_state = trainer.optimizers[0].state
    critic_ids = {id(p) for p in host.mi.parameters()}
    moved_by_host = [p for p in host.parameters() if id(p) in critic_ids and p in host_state]
    if own_optimizer:  # the critic and η moved by their own optimiser only; the host's never saw a gradient of them
        assert moved_by_host == [] and len(host.mi.optimizer().state) == len(critic_ids)
        assert float(host.mi.bound.eta.detach()) != 0.0
    else:
        assert len(moved_by_host) == len(critic_ids)


def test_with_its_own_optimizer_the_hosts_gradient_reaches_the_inputs_only():
    torch.manual_seed(0)
    mi = MILoss(JointCritic(2, 2, [8]), EtaDV(), optimizer=functools.partial(torch.optim.SGD, lr=0.1), critic_steps=3)
    x, y = torch.randn(16, 2, requires_grad=True), torch.randn(16, 2)
    before = [p.detach().clone() for p in mi.parameters()]
    term = mi(x, y)
    assert term is not None
    term.loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in mi.parameters()) and all(p.requires_grad for p in mi.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, mi.parameters()))  # three critic steps were taken
    mi.eval()  # evaluation: no critic step
    frozen = [p.detach().clone() for p in mi.parameters()]
    with torch.no_grad():
        mi(x, y)
    assert all(torch.equal(a, b) for a, b in zip(frozen, mi.parameters()))


def test_explicit_marginal_pairs_and_in_batch_pairs_give_the_bound_of_the_package():
    torch.manual_seed(0)
    critic = JointCritic(3, 2, [8])
    mi = MILoss(critic, DV())
    x, y, xm, ym = torch.randn(10, 3), torch.randn(10, 2), torch.randn(10, 3), torch.randn(10, 2)
    in_batch = mi(x, y)
    explicit = mi(x, y, xm, ym)
    assert in_batch is not None and explicit is not None
    torch.testing.assert_close(in_batch.mi, DV()(critic(x, y)).mi)
    torch.testing.assert_close(explicit.mi, DV()(joint=critic.pointwise(x, y), marginal=critic.pointwise(xm, ym)).mi)
    with pytest.raises(ValueError, match="x_marginal and y_marginal"):
        mi(x, y, xm, None)


def test_a_critic_that_does_not_fit_the_inputs_is_an_error_naming_the_parameter():
    mi = MILoss(SeparableCritic(3, 2, [8]), InfoNCE())
    with pytest.raises(ValueError, match=r"^critic: SeparableCritic expects x_dim=3 .*\(5 features per sample\)"):
        mi(torch.randn(8, 5), torch.randn(8, 2))
    with pytest.raises(ValueError, match=r"^critic: .*y_dim=2"):
        mi(torch.randn(8, 3), torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"^critic: .*y_dim=2 .*marginal"):
        mi(torch.randn(8, 3), torch.randn(8, 2), torch.randn(8, 3), torch.randn(8, 7))
    with pytest.raises(ValueError, match="^critic: "):
        MILoss(nn.Linear(2, 1), EtaDV())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^critic_steps: "):
        MILoss(JointCritic(2, 2, [4]), EtaDV(), critic_steps=2)  # extra steps need the own optimiser
    with pytest.raises(ValueError, match="^non_finite: "):
        MILoss(JointCritic(2, 2, [4]), EtaDV(), non_finite="ignore")  # type: ignore[arg-type]


@pytest.mark.parametrize("own_optimizer", [False, True], ids=["host-optimizer", "own-optimizer"])
def test_the_guard_raises_or_skips_on_a_non_finite_term(own_optimizer):
    own = functools.partial(torch.optim.SGD, lr=0.1) if own_optimizer else None
    x, y = torch.randn(8, 2), torch.randn(8, 2)
    x_bad = x.clone()
    x_bad[0, 0] = float("nan")
    loud = MILoss(JointCritic(2, 2, [4]), EtaDV(), optimizer=own)
    with pytest.raises(NonFiniteBoundError, match="EtaDV: non-finite .*loss"):
        loud(x_bad, y)
    quiet = MILoss(JointCritic(2, 2, [4]), EtaDV(), optimizer=own, non_finite="skip", max_consecutive_skips=3)
    weights = [p.detach().clone() for p in quiet.parameters()]
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert quiet(x_bad, y) is None
    assert all(torch.equal(a, b) for a, b in zip(weights, quiet.parameters()))  # no step on a NaN
    assert quiet.guard.skipped_steps == 1
    assert quiet(x, y) is not None and quiet.guard.consecutive_skips == 0  # a finite call goes through
    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteBoundError, match="diverged"):
        for _ in range(3):
            quiet(x_bad, y)


def test_the_own_optimizer_and_the_guard_are_saved_with_the_state_dict():
    torch.manual_seed(0)
    own = functools.partial(torch.optim.Adam, lr=1e-2)
    mi = MILoss(JointCritic(2, 2, [4]), EtaDV(), optimizer=own, non_finite="skip")
    x, y = torch.randn(8, 2), torch.randn(8, 2)
    for _ in range(3):
        mi(x, y)
    mi.guard.skipped_steps = 2
    state = mi.state_dict()
    restored = MILoss(JointCritic(2, 2, [4]), EtaDV(), optimizer=own, non_finite="skip")
    restored.load_state_dict(state)
    assert restored.calls == 3 and restored.guard.skipped_steps == 2
    saved = mi.optimizer().state_dict()["state"]
    loaded = restored.optimizer().state_dict()["state"]
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k]["exp_avg"], loaded[k]["exp_avg"]) for k in saved)
    for a, b in zip(mi.parameters(), restored.parameters()):
        torch.testing.assert_close(a, b)


def test_shuffled_marginal_pairs_are_one_per_row_and_never_a_joint_pair():
    critic = JointCritic(1, 1, [8])
    mi = MILoss(critic, DV(), negatives="shuffle")
    x = torch.arange(12.0).unsqueeze(1)
    y = 100 + x  # y_i = 100 + x_i: a marginal pair (x_a, y_b) is joint exactly when b = a
    pairs = []
    original = critic.pointwise

    def spy(a, b):
        pairs.append((a.squeeze(1), b.squeeze(1)))
        return original(a, b)

    critic.pointwise = spy  # type: ignore[method-assign]
    torch.manual_seed(0)
    term = mi(x, y)
    assert term is not None and term.scores.marginal.shape == (12, 1)
    assert len(pairs) == 2
    joint = [p for p in pairs if torch.equal(p[1] - p[0], torch.full((12,), 100.0))]
    assert len(joint) == 1 and torch.equal(joint[0][0], x.squeeze(1))  # the joint pairs, in order
    marginal_x, marginal_y = next(p for p in pairs if p is not joint[0])
    assert sorted(marginal_x.tolist()) == x.squeeze(1).tolist()  # every x once
    assert sorted(marginal_y.tolist()) == y.squeeze(1).tolist()  # every y once
    assert bool((marginal_y - marginal_x != 100).all())  # no joint pair among them
    with pytest.raises(ValueError, match="^negatives: "):
        MILoss(critic, DV(), negatives="all")  # type: ignore[arg-type]
