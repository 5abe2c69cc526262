"""CLUB and L1Out with a conditional Gaussian critic q(y|x): against their closed forms with the true conditional
p(y|x) of a Gaussian plugged in, the upper-bound property, maximum-likelihood training, the column normaliser of
L1Out's PMI, vmap, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from pdlightning.bounds import CLUB, Bound, L1Out, PairScores
from pdlightning.critics import ConditionalGaussianCritic
from pdlightning.modules.bound_stack import BoundStack

#: the upper bounds and their closed-form checks below (tests/bounds/test_coverage.py reads it).
UPPER_BOUNDS = {"club": CLUB, "l1out": L1Out}


def true_conditional(dim: int, rho: float) -> ConditionalGaussianCritic:
    """q(y|x) = p(y|x) = N(rho x, (1 - rho^2) I) of the Gaussian with per-coordinate correlation rho: the critic with
    no hidden layer (a linear-Gaussian model) holds it exactly."""
    critic = ConditionalGaussianCritic(dim, dim, hidden_dims=())
    layer = critic.net[0]
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:dim].copy_(rho * torch.eye(dim))
        layer.bias.zero_()
        layer.bias[dim:] = math.log(1.0 - rho**2)
    return critic


def gaussian(n: int, dim: int, mi: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
    x = torch.randn(n, dim, generator=generator)
    return x, rho * x + math.sqrt(1.0 - rho**2) * torch.randn(n, dim, generator=generator), rho


def test_the_critic_scores_every_pair_by_its_gaussian_log_likelihood():
    torch.manual_seed(0)
    critic = ConditionalGaussianCritic(3, 2, hidden_dims=(8,))
    x, y = torch.randn(6, 3), torch.randn(5, 2)
    mean, log_var = critic.conditional(x)
    expected = torch.distributions.Normal(mean[:, None], (0.5 * log_var).exp()[:, None]).log_prob(y[None]).sum(-1)
    torch.testing.assert_close(critic.cross(x, y), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(critic.pointwise(x[:5], y), expected[:5].diagonal(), rtol=1e-5, atol=1e-5)


def test_the_log_likelihood_keeps_float32_precision_under_bf16_autocast():
    """The MLP may run in bf16, but the density of its output is evaluated in float32: its quadratic form cancels
    terms of order y^2 / sigma^2, which bf16 would round to nats."""
    x, y, rho = gaussian(64, 20, 10.0, torch.Generator().manual_seed(6))
    critic = true_conditional(20, rho)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, joint = critic(x, y), critic.pointwise(x, y)
        mean, log_var = critic.conditional(x)
    assert mean.dtype == torch.bfloat16 and scores.dtype == joint.dtype == torch.float32
    normal = torch.distributions.Normal(mean.float()[:, None], (0.5 * log_var.float()).exp()[:, None])
    torch.testing.assert_close(scores, normal.log_prob(y[None]).sum(-1), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(joint, scores.diagonal(), rtol=1e-5, atol=1e-3)


def test_club_with_the_true_conditional_is_its_closed_form():
    """E[I_CLUB] = d rho^2 / (1 - rho^2) for the true conditional (Var of y - rho x: 1 - rho^2 under p, 1 + rho^2
    under p(x)p(y)), within 4 standard errors of 100 batches of 256; an upper bound of the MI."""
    dim, mi = 4, 2.0
    generator = torch.Generator().manual_seed(0)
    values = []
    for _ in range(100):
        x, y, rho = gaussian(256, dim, mi, generator)
        values.append(CLUB()(true_conditional(dim, rho)(x, y)).mi)
    estimates = torch.stack(values)
    closed_form = dim * rho**2 / (1.0 - rho**2)
    assert abs(estimates.mean().item() - closed_form) < 4 * estimates.std().item() / 10
    assert closed_form > mi


def test_l1out_with_the_true_conditional_is_its_formula_and_an_upper_bound_in_expectation():
    """Each batch: L1Out equals mean_i [log p(y_i|x_i) - log 1/(n-1) sum_{j != i} p(y_i|x_j)] computed from
    torch.distributions. Over 200 batches of 64 its mean exceeds the true MI by more than 3 standard errors (Poole et
    al. 2019, Eq. 13: an upper bound in expectation; here about 0.17 nats above I = 2, 14 standard errors)."""
    dim, mi, n = 4, 2.0, 64
    generator = torch.Generator().manual_seed(1)
    values = []
    for _ in range(200):
        x, y, rho = gaussian(n, dim, mi, generator)
        scale = math.sqrt(1.0 - rho**2)
        log_p = torch.distributions.Normal(rho * x[:, None], scale).log_prob(y[None]).sum(-1)  # [i, j] = log p(y_j|x_i)
        off = log_p.T.masked_fill(torch.eye(n, dtype=torch.bool), -math.inf)  # [i, j] = log p(y_i|x_j), j != i
        formula = (log_p.diagonal() - (torch.logsumexp(off, dim=1) - math.log(n - 1))).mean()
        value = L1Out()(true_conditional(dim, rho)(x, y)).mi
        assert value.item() == pytest.approx(formula.item(), abs=1e-4)
        values.append(value)
    estimates = torch.stack(values)
    assert estimates.mean().item() - mi > 3 * estimates.std().item() / math.sqrt(len(values))


def test_l1out_pmi_with_the_true_conditional_is_the_pmi_up_to_the_mixtures_error():
    """log q(y_j|x_i) - log 1/(n-1) sum_{k != j} q(y_j|x_k) estimates log p(y|x) - log p(y) = PMI on joint and
    product pairs alike (the column normaliser); CLUB's PMI is the score minus one global constant."""
    dim, mi, n = 2, 1.0, 2000
    x, y, rho = gaussian(n, dim, mi, torch.Generator().manual_seed(2))
    critic = true_conditional(dim, rho)
    scores = critic(x, y)
    true_pmi = scores - torch.distributions.Normal(0.0, 1.0).log_prob(y).sum(-1)[None, :]  # log p(y|x) - log p(y)
    pmi = L1Out().pmi(scores)
    assert (pmi - true_pmi).pow(2).mean().sqrt().item() < 0.05
    torch.testing.assert_close(pmi.diagonal().mean(), L1Out()(scores).mi, rtol=0, atol=1e-4)
    club_pmi = CLUB().pmi(scores)
    shift = club_pmi - scores
    assert shift.std().item() < 1e-4 and club_pmi.diagonal().mean().item() == pytest.approx(CLUB()(scores).mi.item())


def test_maximum_likelihood_training_moves_the_log_likelihood_up_to_the_true_conditional():
    """The bounds' objective is the joint pairs' log-likelihood: 300 Adam steps on it raise the held-out
    E_p[log q(y|x)] from a fresh MLP's to within 0.15 nats of the true conditional's -d/2 (log 2 pi (1 - rho^2) + 1)."""
    torch.manual_seed(0)
    dim, mi = 4, 2.0
    critic = ConditionalGaussianCritic(dim, dim, hidden_dims=(32,))
    bound = CLUB()
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(3)
    test_x, test_y, rho = gaussian(4000, dim, mi, torch.Generator().manual_seed(4))
    before = critic.pointwise(test_x, test_y).mean().item()
    for _ in range(300):
        x, y, _ = gaussian(128, dim, mi, generator)
        output = bound(critic(x, y))
        assert output.loss.item() == pytest.approx(-critic.pointwise(x, y).mean().item(), abs=1e-4)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    after = critic.pointwise(test_x, test_y).mean().item()
    best = -dim / 2 * (math.log(2 * math.pi * (1 - rho**2)) + 1)
    assert before < after and best - 0.15 < after < best + 0.05, (before, after, best)


def test_both_declare_themselves_upper_bounds():
    for bound in (CLUB(), L1Out()):
        assert bound.is_upper_bound and not bound.is_lower_bound
    assert not Bound.is_upper_bound and CLUB.pmi_normalizer == "global" and L1Out.pmi_normalizer == "column"


def test_explicit_marginal_pairs_work_for_club_and_are_refused_by_l1out():
    joint, marginal = torch.randn(8), torch.randn(8)
    out = CLUB()(joint=joint, marginal=marginal)  # the paper's sampled CLUB (one shuffled y per row)
    assert out.mi.item() == pytest.approx((joint.mean() - marginal.mean()).item(), abs=1e-6)
    with pytest.raises(ValueError, match=r"^marginal scores: L1Out normalises each y_i over the batch's other x_j"):
        L1Out()(joint=joint, marginal=marginal)
    with pytest.raises(ValueError, match="L1Out normalises"):
        L1Out().pmi(joint=joint, marginal=marginal)


def test_a_conditional_model_of_another_y_dimension_is_refused_naming_y_dim():
    critic = ConditionalGaussianCritic(3, 2, hidden_dims=(4,))
    with pytest.raises(ValueError, match=r"y: the critic expects 2 features per sample \(y_dim\), got 5"):
        critic(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"\(y_dim\)"):
        critic.pointwise(torch.randn(4, 3), torch.randn(4, 1))


def test_the_score_matrix_is_rebuilt_from_its_split():
    for n in (2, 3, 9):
        scores = torch.randn(n, n)
        assert torch.equal(PairScores.from_matrix(scores).to_matrix(), scores)
    with pytest.raises(ValueError, match="explicit marginal pairs have no matrix"):
        PairScores.from_pairs(torch.randn(5), torch.randn(5, 2)).to_matrix()


@pytest.mark.parametrize("name", list(UPPER_BOUNDS))
def test_members_evaluate_together_under_vmap_as_alone(name):
    """The engine stacks identical bounds into one vmapped call (BoundStack): same outputs as one by one."""
    bounds = [UPPER_BOUNDS[name]() for _ in range(3)]
    scores = torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(5))
    joint = scores.diagonal(dim1=1, dim2=2)
    marginal = torch.stack([PairScores.from_matrix(s).marginal for s in scores])
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
        alone = bound(scores[k])
        for field in ("loss", "mi", "first_term", "second_term"):
            torch.testing.assert_close(fields[field][k], getattr(alone, field))
