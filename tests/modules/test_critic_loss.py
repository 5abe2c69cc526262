"""Bounds that learn through a loss of the critic's own (``Bound.critic_loss``: TRE's bridge loss) train inside the
one module like any member; L1Out's per-``y`` ("column") PMI normaliser reads a fixed reference sample."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from pdlightning.bounds import CLUB, NWJ, TRE, L1Out
from pdlightning.critics import ConditionalGaussianCritic, JointCritic, TelescopingCritic
from pdlightning.data import CorrelatedGaussianDataModule, random_derangement
from pdlightning.data.gaussian import sample_correlated_gaussian
from pdlightning.modules import Member, MIEstimationModule
from pdlightning.modules.pmi_reference import ReferenceSample


def _fit(module: MIEstimationModule, steps: int, mi: float, dim: int = 2, batch: int = 128) -> L.Trainer:
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    data = CorrelatedGaussianDataModule(dim=dim, mi_schedule=[mi], steps_per_level=steps, batch_size=batch, seed=3)
    trainer.fit(module, data)
    return trainer


def _tre_critic(dim: int) -> TelescopingCritic:
    return TelescopingCritic(x_dim=dim, y_dim=dim, num_waymarks=2, hidden_dims=[32], quadratic_features="full")


def test_a_tre_member_learns_through_its_bridge_loss_and_estimates_the_gaussian_mi():
    torch.manual_seed(0)
    module = MIEstimationModule(_tre_critic(2), TRE(), summary=False)
    before = module.critic_losses({"x": torch.randn(64, 2), "y": torch.randn(64, 2)})
    assert before is not None and before.shape == (1,) and float(before[0]) > 0
    _fit(module, 400, mi=1.0)
    x, y = sample_correlated_gaussian(4096, 2, 1.0, torch.Generator().manual_seed(9))
    estimate = float(module.member_pmi(x, y, 1.0).mean())
    assert abs(estimate - 1.0) < 0.2, estimate


def test_without_the_bridge_loss_tre_would_not_train():
    """TRE's own objective on the scores is zero: the gradient reaching the critic is the bridge loss's."""
    torch.manual_seed(0)
    module = MIEstimationModule(_tre_critic(2), TRE(), summary=False)
    batch = {"x": torch.randn(32, 2), "y": torch.randn(32, 2)}
    joint, marginal = module.stacked_scores(batch)
    assert float(module.bounds(joint, marginal).loss.abs().sum()) == 0.0
    module.critic_losses(batch).sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in module.parameters() if p.requires_grad)


def test_tre_members_of_two_seeds_are_each_their_own_fit():
    torch.manual_seed(0)
    critic = _tre_critic(2)
    module = MIEstimationModule(
        critic, members=[Member(bound=TRE(), seed=1), Member(bound=TRE(), seed=2)], summary=False
    )
    batch = {"x": torch.randn(32, 2), "y": torch.randn(32, 2)}
    torch.manual_seed(5)
    losses = module.critic_losses(batch)
    for k, name in enumerate(module.member_names):
        torch.manual_seed(5)  # the same derangement
        order = random_derangement(32)
        alone = module.member_critic(name).bridge_loss(batch["x"], batch["y"], batch["y"][order])
        assert torch.allclose(losses[k], alone, atol=1e-5)


def test_a_bridge_loss_member_beside_a_bound_sharing_its_architecture_is_refused():
    critic = _tre_critic(2)

    with pytest.raises(ValueError, match="share a critic architecture but not how it learns"):
        MIEstimationModule(critic, members=[Member(bound=TRE()), Member(bound=NWJ())], summary=False)


def test_a_critic_without_the_method_the_bound_names_is_a_clear_error():
    with pytest.raises(ValueError, match=r"learns through critic.bridge_loss\(x, y, y_marginal\)"):
        MIEstimationModule(JointCritic(2, 2, [8]), TRE(), summary=False)


def test_a_non_finite_bridge_loss_is_caught_by_the_guard():
    from pdlightning.modules.finite import NonFiniteBoundError

    critic = _tre_critic(2)
    module = MIEstimationModule(critic, TRE(), summary=False)
    with torch.no_grad():
        module.critic_stacks[0].flat.fill_(float("nan"))
    with pytest.raises(NonFiniteBoundError, match="non-finite"):
        _fit(module, 3, mi=1.0, batch=16)


def test_l1out_pmi_from_a_reference_sample_is_the_column_statistic():
    """With a fixed reference sample, L1Out's PMI of (x_i, y_i) is log q(y_i|x_i) - log mean_k q(y_i|x_ref_k)."""
    torch.manual_seed(0)
    module = MIEstimationModule(
        ConditionalGaussianCritic(x_dim=2, y_dim=2, hidden_dims=[16]), L1Out(), summary=False, pmi_reference_size=64
    )
    _fit(module, 30, mi=1.0, batch=32)
    reference_x, reference_y = sample_correlated_gaussian(64, 2, 1.0, torch.Generator().manual_seed(4))
    module.pmi_reference = ReferenceSample({1.0: (reference_x, reference_y)})
    x, y = torch.randn(10, 2), torch.randn(10, 2)
    critic = module.member_critic(module.member_names[0])
    with torch.no_grad():
        own = critic.pointwise(x, y)
        columns = critic.cross(reference_x, y)  # [m, n]: q(y_i | x_ref_k)
        expected = own - (torch.logsumexp(columns, dim=0) - math.log(columns.shape[0]))
        assert torch.allclose(module.member_pmi(x, y, 1.0)[0], expected, atol=1e-5)


def test_club_and_l1out_bracket_the_gaussian_mi_from_above():
    """CLUB and L1Out are upper bounds (under their conditions): fitted briefly on a 1-nat Gaussian, both lie above the
    truth (less sampling noise), and L1Out, the tighter, not far above it."""
    torch.manual_seed(0)
    module = MIEstimationModule(
        ConditionalGaussianCritic(x_dim=2, y_dim=2, hidden_dims=[32]),
        members=[Member(bound=CLUB(), name="club"), Member(bound=L1Out(), name="l1out")],
        summary=False,
    )
    _fit(module, 300, mi=1.0)
    x, y = sample_correlated_gaussian(512, 2, 1.0, torch.Generator().manual_seed(9))
    with torch.no_grad():
        joint, marginal = module.stacked_scores({"x": x, "y": y})
        values = module.bounds(joint, marginal).estimate
    assert CLUB.is_upper_bound and L1Out.is_upper_bound
    club, l1out = (float(v) for v in values)
    assert club > 0.9 and 0.9 < l1out < 1.6, (club, l1out)


def test_fragment_keys_with_their_own_critic_take_the_dims_of_the_module_critic():
    """``members: [infonce, tre, club, l1out]``: the tre / club / l1out fragments set their critic without ``x_dim`` /
    ``y_dim`` (the CLI fills the module critic's from the data); each member's critic takes the module critic's dims,
    and stacks apart from the module's architecture."""
    module = MIEstimationModule(JointCritic(3, 5, [8]), members=["infonce", "tre", "club", "l1out"], summary=False)
    kinds = {name: type(module.member_critic(name)).__name__ for name in module.member_names}
    assert kinds == {
        "infonce": "JointCritic",
        "tre": "TelescopingCritic",
        "club": "ConditionalGaussianCritic",
        "l1out": "ConditionalGaussianCritic",
    }
    assert all((module.member_critic(n).x_dim, module.member_critic(n).y_dim) == (3, 5) for n in module.member_names)
    assert sorted(len(indices) for indices in module._critic_members) == [1, 1, 2]  # club and l1out stack together
    batch = {"x": torch.randn(16, 3), "y": torch.randn(16, 5)}
    joint, marginal = module.stacked_scores(batch)
    assert joint.shape == (4, 16) and module.critic_losses(batch) is not None


def test_a_fragment_critic_without_dims_and_no_module_critic_is_an_error_naming_the_member():
    with pytest.raises(ValueError, match=r"members\[0\]\.critic \(tre\): .*x_dim"):
        MIEstimationModule(None, members=["tre"], summary=False)


def test_a_training_step_scores_a_tre_stack_on_its_joint_pairs_only(monkeypatch):
    """TRE's objective is zero and its estimate the mean joint score: with in-batch negatives for the other members
    (marginal_pairs: all), a training step does not score the telescoping critic on the n x n matrix (n^2 pairs
    forward and backward, 40x a TRE step's own cost at n = 256), and every member's loss and estimate are as before."""
    torch.manual_seed(0)
    module = MIEstimationModule(
        JointCritic(2, 2, [8]),
        members=[Member(bound=NWJ(), name="nwj"), Member(bound=TRE(), name="tre", critic=_tre_critic(2))],
        summary=False,
    )
    tre_stack = module.critic_stacks[module._critic_members.index([1])]
    batch = {"x": torch.randn(16, 2), "y": torch.randn(16, 2)}
    matrix_calls = []
    original = tre_stack.forward
    monkeypatch.setattr(tre_stack, "forward", lambda *a, **k: matrix_calls.append(1) or original(*a, **k))
    _fit(module, 2, mi=1.0, batch=16)
    assert matrix_calls == []
    joint, marginal = module.stacked_scores(batch, training=True)
    assert matrix_calls == []
    full_joint, full_marginal = module.stacked_scores(batch)  # evaluation: every member on the whole matrix
    assert matrix_calls == [1] and marginal.shape == full_marginal.shape
    reference = module.bounds(full_joint, full_marginal)
    torch.testing.assert_close(joint, full_joint)
    torch.testing.assert_close(marginal[0], full_marginal[0])  # NWJ's in-batch negatives are unchanged
    out = module.bounds(joint, marginal)
    torch.testing.assert_close(out.loss, reference.loss)
    torch.testing.assert_close(out.estimate, reference.estimate)
