"""``marginal_pairs: derangement``: one product-of-marginals pair per row, ``(x_i, y_σ(i))`` with ``σ`` a random
derangement drawn every training step (f-DIME's sampling), for any bound that reads explicit pairs."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pdlightning.bounds import FDIME, NWJ, L1Out
from pdlightning.critics import ConditionalGaussianCritic, JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.data.gaussian import sample_correlated_gaussian
from pdlightning.modules import Member, MIEstimationModule


def test_the_marginal_scores_are_the_deranged_pairs_and_none_is_a_joint_pair():
    torch.manual_seed(0)
    module = MIEstimationModule(JointCritic(2, 2, [8]), NWJ(), marginal_pairs="derangement", summary=False)
    x, y = torch.randn(16, 2), torch.randn(16, 2)
    torch.manual_seed(3)
    joint, marginal = module.stacked_scores({"x": x, "y": y}, derangement=True)
    assert joint.shape == (1, 16) and marginal.shape == (1, 16, 1)
    critic = module.member_critic(module.member_names[0])
    with torch.no_grad():
        scores = critic(x, y)  # [n, n]: row i scores x_i against every y_j
    matches = (marginal[0, :, 0].unsqueeze(1) - scores).abs() < 1e-6
    columns = matches.float().argmax(1)
    assert bool(matches.any(1).all()) and not bool((columns == torch.arange(16)).any())  # σ(i) != i
    assert sorted(columns.tolist()) == list(range(16))  # a permutation of the batch


def test_replica_streams_are_deranged_along_the_pairs_not_the_members():
    torch.manual_seed(0)
    module = MIEstimationModule(
        JointCritic(2, 2, [8]),
        members=[Member(bound=NWJ(), seed=0), Member(bound=NWJ(), seed=1)],
        data="replicas",
        marginal_pairs="derangement",
        summary=False,
    )
    joint, marginal = module.stacked_scores({"x": torch.randn(2, 10, 2), "y": torch.randn(2, 10, 2)}, derangement=True)
    assert joint.shape == (2, 10) and marginal.shape == (2, 10, 1)


def test_an_f_dime_fit_with_derangement_pairs_estimates_the_gaussian_mi():
    torch.manual_seed(0)
    module = MIEstimationModule(
        JointCritic(2, 2, [64]), FDIME(divergence="kl"), marginal_pairs="derangement", summary=False
    )
    L.Trainer(
        max_steps=400,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
    ).fit(module, CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0], steps_per_level=400, batch_size=128, seed=3))
    x, y = sample_correlated_gaussian(4096, 2, 1.0, torch.Generator().manual_seed(9))
    estimate = float(module.member_pmi(x, y, 1.0).mean())
    assert abs(estimate - 1.0) < 0.25, estimate


def test_bad_marginal_pairs_name_the_parameter():
    with pytest.raises(ValueError, match="marginal_pairs: expected 'all' or 'derangement'"):
        MIEstimationModule(JointCritic(2, 2, [8]), NWJ(), marginal_pairs="some")
    with pytest.raises(ValueError, match="marginal_pairs: 'derangement' gives one product pair per row"):
        MIEstimationModule(ConditionalGaussianCritic(2, 2, [8]), L1Out(), marginal_pairs="derangement")
