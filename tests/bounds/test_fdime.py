"""f-DIME (Letizia, Novello & Tonello, NeurIPS 2024) on derangement marginal pairs: the closed-form optimal critic
of a Gaussian gives the true MI and each divergence's value at the optimum;
a short training run on derangement pairs learns the MI; vmap; bad input. (Each objective is maximised at the
optimal critic: tests/bounds/test_closed_form.py, on the in-batch pairs.)"""

from __future__ import annotations

import math

import pytest
import torch

from pdlightning.bounds import FDIME, PairScores
from pdlightning.bounds.fdime import fdime_objective
from pdlightning.critics import JointCritic
from pdlightning.data import gaussian_log_ratio, sample_correlated_gaussian, with_derangement_pairs
from pdlightning.modules.bound_stack import BoundStack

DIVERGENCES = ("kl", "gan", "hd")


def aligned_log_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """Closed-form log r(x_i, y_i) of aligned pairs (the diagonal of :func:`gaussian_log_ratio`)."""
    x, y = x.double(), y.double()
    quadratic = rho**2 * (x * x + y * y).sum(-1) - 2.0 * rho * (x * y).sum(-1)
    return -0.5 * x.shape[-1] * math.log(1.0 - rho**2) - quadratic / (2.0 * (1.0 - rho**2))


def deranged_optimal_scores(n: int, mi: float, dim: int = 20, seed: int = 0) -> tuple[PairScores, float]:
    """The closed-form log r of n joint pairs and of one derangement pair (x_i, y_sigma(i)) per row; the
    per-coordinate correlation rho."""
    generator = torch.Generator().manual_seed(seed)
    x, y = sample_correlated_gaussian(n, dim, mi, generator)
    batch = with_derangement_pairs({"x": x, "y": y}, generator)
    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
    joint, marginal = aligned_log_ratio(x, y, rho), aligned_log_ratio(batch["x_marginal"], batch["y_marginal"], rho)
    torch.testing.assert_close(joint[:50], gaussian_log_ratio(x[:50].double(), y[:50].double(), mi).diagonal())
    return PairScores.from_pairs(joint.float(), marginal.float()), rho


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_the_optimal_critic_on_derangement_pairs_reports_the_true_mi(divergence):
    pairs, _ = deranged_optimal_scores(4000, 1.0)
    output = FDIME(divergence)(joint=pairs.joint, marginal=pairs.marginal)
    standard_error = pairs.joint.std().item() / math.sqrt(4000)
    assert abs(output.mi.item() - 1.0) < 4 * standard_error
    assert output.scores.negatives_per_row == 1 and output.second_term.item() == 0.0  # a plug-in, not a bound


def test_the_value_functions_at_the_optimum_are_the_divergences():
    """KL: J(r) = E_p[log r] - E_q[r] + 1 = I. Squared Hellinger: J = 2 - E_p[r^-1/2] - E_q[r^1/2] = 2 (1 - BC) with
    the Bhattacharyya coefficient of N(0, Sigma_rho) and N(0, I), BC = prod_i (1 - rho^2)^(1/4) / (1 - rho^2/4)^(1/2).
    Both within 4 standard errors of their Monte Carlo on 4,000 joint and 4,000 derangement pairs."""
    mi, n, dim = 1.0, 4000, 20
    pairs, rho = deranged_optimal_scores(n, mi, dim, seed=1)
    kl = fdime_objective(pairs, "kl").item()
    kl_error = (pairs.joint.std().item() + math.sqrt(math.expm1(2 * mi))) / math.sqrt(n)
    assert abs(kl - mi) < 4 * kl_error
    bc = ((1 - rho**2) ** 0.25 / (1 - rho**2 / 4) ** 0.5) ** dim
    hd = fdime_objective(pairs, "hd").item()
    hd_error = 2 * math.sqrt(1 - bc**2) / math.sqrt(n)
    assert abs(hd - 2 * (1 - bc)) < 4 * hd_error, (hd, 2 * (1 - bc))


@pytest.mark.parametrize("divergence", ["kl", "gan"])
def test_a_short_fit_on_derangement_pairs_learns_the_mi(divergence):
    """400 Adam steps of a small joint critic on batches of 128 joint pairs and their derangement pairs (the paper's
    "deranged" setting: n joint and n marginal scores a step): the plug-in reaches I = 2 nats (d = 5) within 15%."""
    torch.manual_seed(0)
    dim, mi = 5, 2.0
    critic, bound = JointCritic(dim, dim, (64, 64)), FDIME(divergence)
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        x, y = sample_correlated_gaussian(128, dim, mi, generator)
        batch = with_derangement_pairs({"x": x, "y": y}, generator)
        output = bound(
            joint=critic.pointwise(x, y), marginal=critic.pointwise(batch["x_marginal"], batch["y_marginal"])
        )
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    x, y = sample_correlated_gaussian(4000, dim, mi, torch.Generator().manual_seed(9))
    with torch.no_grad():
        estimate = critic.pointwise(x, y).mean().item()
    assert abs(estimate - mi) < 0.15 * mi, estimate


def test_labels_and_bad_divergences():
    assert [FDIME(d).label for d in DIVERGENCES] == [
        "f-DIME(divergence=KL)",
        "f-DIME(divergence=GAN)",
        "f-DIME(divergence=HD)",
    ]
    assert not FDIME.is_lower_bound and not FDIME.is_upper_bound and not FDIME.has_partition_term
    with pytest.raises(ValueError, match=r"^divergence: expected one of \('kl', 'gan', 'hd'\), got 'js'"):
        FDIME("js")  # type: ignore[arg-type]


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_members_evaluate_together_under_vmap_as_alone(divergence):
    bounds = [FDIME(divergence) for _ in range(3)]
    joint, marginal = torch.randn(3, 8), torch.randn(3, 8, 1)
    stack = BoundStack(bounds, [None] * len(bounds))
    assert len(stack.objectives) == 1  # one stack: one vmapped call for the three members
    stacked = stack(joint, marginal)
    fields = {
        "loss": stacked.loss,
        "mi": stacked.estimate,
        "first_term": stacked.first_term,
        "second_term": stacked.second_term,
    }
    for k, bound in enumerate(bounds):
        alone = bound(joint=joint[k], marginal=marginal[k])
        for field in ("loss", "mi"):
            torch.testing.assert_close(fields[field][k], getattr(alone, field))
