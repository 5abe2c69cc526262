"""The probabilistic classifier's two parametrizations: the critic's score as the classifier's logit (the PD
paper's code) or as the log ratio. The same objective of ``r_hat`` with the same optimum, shifted by the prior ratio
``log k``; only the start differs, and a fresh critic under ``"log_ratio"`` starts at independence."""

from __future__ import annotations

import math

import pytest
import torch

from pdlightning.bounds import PairScores, ProbabilisticClassifier
from pdlightning.critics import JointCritic
from pdlightning.tasks import get_task


def scores(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, n, generator=torch.Generator().manual_seed(seed)) * 2.0


def test_log_ratio_scores_are_logit_scores_shifted_by_the_prior_ratio():
    matrix, log_k = scores(), math.log(15)
    logit, log_ratio = ProbabilisticClassifier(), ProbabilisticClassifier(parametrization="log_ratio")
    logit.train(), log_ratio.train()
    assert log_ratio(matrix).loss.item() == pytest.approx(logit(matrix - log_k).loss.item(), rel=1e-6)
    assert torch.allclose(log_ratio.pmi(matrix), logit.pmi(matrix - log_k), atol=1e-5)
    assert torch.allclose(log_ratio.pmi(matrix), matrix)  # the score is log r_hat
    assert log_ratio(matrix).mi.item() == pytest.approx(matrix.diagonal().mean().item(), rel=1e-6)
    # a batch of another size: the logit version uses the remembered training prior ratio, log_ratio none
    small = scores(4, seed=1)
    assert torch.allclose(log_ratio.pmi(small), small)
    assert torch.allclose(logit.pmi(small - log_k), small, atol=1e-5)


def test_a_fresh_critic_reads_independence_under_log_ratio_and_log_k_under_logit():
    zero = torch.zeros(128, 128)
    assert ProbabilisticClassifier(parametrization="log_ratio")(zero).mi.item() == pytest.approx(0.0)
    assert ProbabilisticClassifier()(zero).mi.item() == pytest.approx(math.log(127))


def test_balanced_classes_make_the_two_parametrizations_one():
    matrix = scores()
    plain, log_ratio = ProbabilisticClassifier(balanced=True), ProbabilisticClassifier(True, "log_ratio")
    assert plain(matrix).loss.item() == pytest.approx(log_ratio(matrix).loss.item())
    assert torch.equal(plain.pmi(matrix), log_ratio.pmi(matrix))


def test_labels_and_bad_settings():
    label = ProbabilisticClassifier(parametrization="log_ratio").label
    assert label == "ProbabilisticClassifier(parametrization=log_ratio)"
    assert ProbabilisticClassifier().label == "ProbabilisticClassifier"
    with pytest.raises(ValueError, match="parametrization: expected 'logit' or 'log_ratio'"):
        ProbabilisticClassifier(parametrization="ratio")


def _train(parametrization: str, steps: int = 300, batch: int = 128) -> float:
    """Held-out plug-in MI after ``steps`` Adam steps on fresh pairs of a 2 x 2 Gaussian task (MI 0.294)."""
    task = get_task("multinormal-dense-2-2-0.5")
    torch.manual_seed(0)
    critic, bound = JointCritic(2, 2, (32, 32)), ProbabilisticClassifier(parametrization=parametrization)
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        sample = task.sample(batch, generator)
        loss = bound(critic(sample.x, sample.y)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    held_out = task.sample(2000, generator)
    bound.eval()
    with torch.no_grad():
        return bound(PairScores.from_pairs(critic.pointwise(held_out.x, held_out.y), torch.zeros(2000))).mi.item()


@pytest.mark.slow
def test_the_pooled_classifier_starting_at_independence_is_closer_after_a_short_budget():
    """Under "logit" the fresh critic says r_hat = k = 127 (4.8 nats) on every pair, and after 300 steps of
    removing that offset it still misreads (0.00 nats here); under "log_ratio" it starts at 0 and reads 0.29."""
    mi = get_task("multinormal-dense-2-2-0.5").mi
    logit, log_ratio = _train("logit"), _train("log_ratio")
    assert abs(log_ratio - mi) < 0.15 < abs(logit - mi)
