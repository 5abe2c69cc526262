"""TRE's telescoping critic and the TRE bound: the closed-form bridges of a Gaussian (the waymarks are Gaussians), the
single bridge as the probabilistic classifier, the stacked one-pass bridge loss against a per-bridge loop, vmap, bad
schedules, and a plain-PyTorch fit of the TRE protocol's 10-nat level."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from pdlightning.bounds import TRE, PairScores, ProbabilisticClassifier
from pdlightning.critics import TelescopingCritic
from pdlightning.data import gaussian_log_ratio, random_derangement, sample_correlated_gaussian


def gaussian_pmi_coefficients(rho: float, dim: int) -> tuple[float, float, float]:
    """PMI of d pairs with correlation rho as ``c + a sum(x^2 + y^2) + b sum(x y)``."""
    return -dim / 2 * math.log(1 - rho**2), -(rho**2) / (2 * (1 - rho**2)), rho / (1 - rho**2)


def waymark_correlations(rho: float, alphas: list[float]) -> list[float]:
    """Waymark k = (x, sqrt(1 - a_k^2) y + a_k y'): unit variances and correlation sqrt(1 - a_k^2) rho."""
    return [math.sqrt(1 - a * a) * rho for a in alphas]


def optimal_critic(dim: int, mi: float, alphas: list[float]) -> TelescopingCritic:
    """TRE's optimum, plugged in: bridge k's log r_k = PMI_{rho_k} - PMI_{rho_{k+1}} (the waymarks share the marginals
    N(0, I)) = c + a sum(x^2 + y^2) + b sum(x y), which the critic's squared projections (x_i + y_i)^2, (x_i - y_i)^2
    hold exactly: a (x^2 + y^2) + b x y = (a/2 + b/4)(x + y)^2 + (a/2 - b/4)(x - y)^2. The MLP's features get weight 0."""
    rho = math.sqrt(1 - math.exp(-2 * mi / dim))
    critic = TelescopingCritic(dim, dim, alphas=alphas, hidden_dims=(4,), quadratic_features="full")
    coefficients = [gaussian_pmi_coefficients(r, dim) for r in waymark_correlations(rho, alphas)]
    eye = torch.eye(dim)
    assert critic.quadratic is not None
    with torch.no_grad():
        critic.quadratic.weight.copy_(torch.cat([torch.cat([eye, eye], 1), torch.cat([eye, -eye], 1)], 0))
        critic.heads.weight.zero_()
        for k in range(critic.num_waymarks):
            (c0, a0, b0), (c1, a1, b1) = coefficients[k], coefficients[k + 1]
            a, b = a0 - a1, b0 - b1
            critic.heads.weight[k, 4 : 4 + dim] = a / 2 + b / 4
            critic.heads.weight[k, 4 + dim :] = a / 2 - b / 4
            critic.heads.bias[k] = c0 - c1
    return critic


ALPHAS = [0.0, 0.3, 0.55, 0.8, 1.0]


def test_the_telescoped_optimal_bridges_are_the_true_pmi_of_every_pair():
    dim, mi = 20, 10.0
    x, y = sample_correlated_gaussian(300, dim, mi, torch.Generator().manual_seed(0))
    critic = optimal_critic(dim, mi, ALPHAS)
    expected = gaussian_log_ratio(x.double(), y.double(), mi).float()
    torch.testing.assert_close(critic(x, y), expected, rtol=1e-4, atol=2e-3)
    torch.testing.assert_close(critic.pointwise(x, y), expected.diagonal(), rtol=1e-4, atol=2e-3)
    assert TRE()(critic(x, y)).mi.item() == pytest.approx(expected.diagonal().mean().item(), abs=1e-3)


def test_each_closed_form_bridge_is_the_log_ratio_of_its_two_gaussian_waymarks():
    """Independently of the PMI formula: log N(x, y; Sigma_k) - log N(x, y; Sigma_{k+1}) from torch.distributions,
    Sigma_k the block covariance of correlation sqrt(1 - a_k^2) rho."""
    dim, mi = 3, 2.0
    rho = math.sqrt(1 - math.exp(-2 * mi / dim))
    critic = optimal_critic(dim, mi, ALPHAS)
    x, y = torch.randn(50, dim).double(), torch.randn(50, dim).double()
    eye = torch.eye(dim, dtype=torch.float64)

    def log_density(r: float) -> Tensor:
        covariance = torch.cat([torch.cat([eye, r * eye], 1), torch.cat([r * eye, eye], 1)], 0)
        mvn = torch.distributions.MultivariateNormal(torch.zeros(2 * dim, dtype=torch.float64), covariance)
        return mvn.log_prob(torch.cat([x, y], 1))

    densities = [log_density(r) for r in waymark_correlations(rho, ALPHAS)]
    bridges = critic.double().bridge_log_ratios(x, y)
    for k in range(critic.num_waymarks):
        torch.testing.assert_close(bridges[:, k], densities[k] - densities[k + 1], rtol=1e-5, atol=1e-5)


def test_the_waymark_samples_have_the_waymark_correlations():
    dim, mi, n = 4, 2.0, 50_000
    rho = math.sqrt(1 - math.exp(-2 * mi / dim))
    generator = torch.Generator().manual_seed(1)
    x, y = sample_correlated_gaussian(n, dim, mi, generator)
    y_marginal = y[random_derangement(n, generator)]
    waymarks = TelescopingCritic(dim, dim, alphas=ALPHAS, hidden_dims=(4,)).waymarks(y, y_marginal)
    assert waymarks.shape == (len(ALPHAS), n, dim)
    assert torch.equal(waymarks[0], y) and torch.equal(waymarks[-1], y_marginal)  # the joint and the product pairs
    for k, expected in enumerate(waymark_correlations(rho, ALPHAS)):
        correlation = (x * waymarks[k]).mean().item()
        assert correlation == pytest.approx(expected, abs=0.01)
        assert waymarks[k].var().item() == pytest.approx(1.0, abs=0.02)


def test_the_bridge_loss_is_minimal_at_the_closed_form_bridges():
    """On 20,000 pairs the logistic loss of every bridge rises when its optimal head is shifted or scaled."""
    dim, mi, n = 5, 3.0, 20_000
    generator = torch.Generator().manual_seed(2)
    x, y = sample_correlated_gaussian(n, dim, mi, generator)
    y_marginal = y[random_derangement(n, generator)]
    critic = optimal_critic(dim, mi, ALPHAS)
    with torch.no_grad():
        best = critic.bridge_loss(x, y, y_marginal).item()
        for k in range(critic.num_waymarks):
            for change in ("bias+", "bias-", "scale+", "scale-"):
                perturbed = optimal_critic(dim, mi, ALPHAS)
                if change.startswith("bias"):
                    perturbed.heads.bias[k] += 0.2 if change == "bias+" else -0.2
                else:
                    perturbed.heads.weight[k] *= 1.15 if change == "scale+" else 0.85
                    perturbed.heads.bias[k] *= 1.15 if change == "scale+" else 0.85
                assert perturbed.bridge_loss(x, y, y_marginal).item() > best, (k, change)


def test_a_single_bridge_is_the_probabilistic_classifier_on_the_same_pairs():
    torch.manual_seed(0)
    critic = TelescopingCritic(3, 2, num_waymarks=1, hidden_dims=(16, 8))
    x, y = torch.randn(32, 3), torch.randn(32, 2)
    y_marginal = y[random_derangement(32, torch.Generator().manual_seed(0))]
    joint, marginal = critic.pointwise(x, y), critic.pointwise(x, y_marginal)
    classifier = ProbabilisticClassifier(balanced=True)(joint=joint, marginal=marginal)
    torch.testing.assert_close(critic.bridge_loss(x, y, y_marginal), classifier.loss)
    tre = TRE()(joint=joint, marginal=marginal)
    torch.testing.assert_close(tre.mi, classifier.mi)


def reference_bridge_loss(critic: TelescopingCritic, x: Tensor, y: Tensor, y_marginal: Tensor) -> Tensor:
    """The same loss with a Python loop over bridges (what bridge_loss must not do), for comparison."""
    waymarks = critic.waymarks(y, y_marginal)
    total = torch.zeros(())
    for k in range(critic.num_waymarks):
        positive = critic.bridge_log_ratios(x, waymarks[k])[:, k]
        negative = critic.bridge_log_ratios(x, waymarks[k + 1])[:, k]
        total = total + nn.functional.softplus(-positive).mean() + nn.functional.softplus(negative).mean()
    return total


def test_the_stacked_bridge_loss_is_the_per_bridge_loop():
    torch.manual_seed(1)
    critic = TelescopingCritic(4, 3, num_waymarks=5, hidden_dims=(16, 16, 8), quadratic_features="full")
    x, y = torch.randn(24, 4), torch.randn(24, 3)
    y_marginal = y[random_derangement(24, torch.Generator().manual_seed(1))]
    loss = critic.bridge_loss(x, y, y_marginal)
    torch.testing.assert_close(loss, reference_bridge_loss(critic, x, y, y_marginal))
    grads = torch.autograd.grad(loss, list(critic.parameters()))
    reference = torch.autograd.grad(reference_bridge_loss(critic, x, y, y_marginal), list(critic.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, reference))


def test_the_body_runs_once_for_all_waymarks():
    torch.manual_seed(2)
    critic = TelescopingCritic(2, 2, num_waymarks=7, hidden_dims=(8, 8))
    shapes: list[tuple[int, ...]] = []
    handle = critic.rest.register_forward_hook(lambda module, args, out: shapes.append(tuple(args[0].shape)))
    try:
        critic.bridge_loss(torch.randn(10, 2), torch.randn(10, 2), torch.randn(10, 2))
    finally:
        handle.remove()
    assert shapes == [(8 * 10, 8)]  # one pass over the (m + 1) n waymark pairs


def test_cross_is_every_pair_and_pointwise_its_diagonal():
    torch.manual_seed(3)
    critic = TelescopingCritic(3, 5, hidden_dims=(16, 8), quadratic_features=4)
    x, y = torch.randn(7, 3), torch.randn(6, 5)
    scores = critic.cross(x, y)
    assert scores.shape == (7, 6)
    tiled = critic.pointwise(x.repeat_interleave(6, 0), y.repeat(7, 1)).view(7, 6)
    torch.testing.assert_close(scores, tiled, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(critic(x[:6], y).diagonal(), critic.pointwise(x[:6], y), rtol=1e-5, atol=1e-5)


def test_members_stacked_under_vmap_match_each_critic_alone():
    """The ensemble engine stacks members' weights and calls the critic under torch.vmap + functional_call."""
    critics = [TelescopingCritic(3, 3, num_waymarks=3, hidden_dims=(8, 8), quadratic_features=2) for _ in range(3)]
    params, buffers = stack_module_state(critics)
    template = critics[0]
    x, y = torch.randn(3, 12, 3), torch.randn(3, 12, 3)
    y_marginal = y[:, random_derangement(12, torch.Generator().manual_seed(4))]

    class BridgeLoss(nn.Module):
        def __init__(self, critic: TelescopingCritic) -> None:
            super().__init__()
            self.critic = critic

        def forward(self, xi: Tensor, yi: Tensor, mi: Tensor) -> Tensor:
            return self.critic.bridge_loss(xi, yi, mi)

    wrapper = BridgeLoss(template)
    state = {f"critic.{k}": v for k, v in {**params, **buffers}.items()}
    stacked = torch.vmap(lambda s, a, b, c: functional_call(wrapper, s, (a, b, c)), randomness="error")(
        state, x, y, y_marginal
    )
    scores = torch.vmap(lambda s, a, b: functional_call(template, s, (a, b)), randomness="error")(
        {**params, **buffers}, x, y
    )
    for k, critic in enumerate(critics):
        torch.testing.assert_close(stacked[k], critic.bridge_loss(x[k], y[k], y_marginal[k]))
        torch.testing.assert_close(scores[k], critic(x[k], y[k]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_waymarks": 0}, r"^num_waymarks: expected at least 1 bridge"),
        ({"num_waymarks": -2}, r"^num_waymarks: expected at least 1 bridge"),
        ({"num_waymarks": 2.5}, r"^num_waymarks: expected an integer"),
        ({"alphas": [0.0, 0.6, 0.4, 1.0]}, r"^alphas: expected strictly increasing values in \[0, 1\]"),
        ({"alphas": [0.0, 0.5, 0.5, 1.0]}, r"^alphas: expected strictly increasing"),
        ({"alphas": [0.0, 1.5, 1.0]}, r"^alphas: expected strictly increasing"),
        ({"alphas": [0.1, 0.5, 1.0]}, r"^alphas: expected a schedule from 0 .* to 1"),
        ({"alphas": [0.0, 0.5]}, r"^alphas: expected a schedule from 0 .* to 1"),
        ({"alphas": [0.0]}, r"^alphas: expected a schedule"),
        ({"alphas": [0.0, 0.5, 1.0], "num_waymarks": 3}, r"^alphas: 3 values make 2 bridges, but num_waymarks=3"),
        ({"hidden_dims": ()}, r"^hidden_dims"),
        ({"quadratic_features": -1}, r"^quadratic_features: expected a number of squared projections >= 0 or 'full'"),
        ({"quadratic_features": "half"}, r"^quadratic_features"),
    ],
)
def test_bad_schedules_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TelescopingCritic(2, 2, **kwargs)


def test_the_default_schedule_is_linear():
    assert TelescopingCritic(2, 2).alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert TelescopingCritic(2, 2, num_waymarks=2).alphas.tolist() == [0.0, 0.5, 1.0]
    critic = TelescopingCritic(2, 2, alphas=[0.0, 0.1, 1.0])
    assert critic.num_waymarks == 2 and critic.heads.out_features == 2 and critic.quadratic is None
    full = TelescopingCritic(3, 2, hidden_dims=(8,), quadratic_features="full")
    assert full.heads.in_features == 8 + 5 and full.features(torch.randn(4, 3), torch.randn(4, 2)).shape == (4, 13)


def test_the_tre_bound_reports_the_mean_score_and_leaves_training_to_the_bridge_loss():
    assert TRE.critic_loss == "bridge_loss" and hasattr(TelescopingCritic, TRE.critic_loss)
    assert not TRE.is_lower_bound and not TRE.is_upper_bound and not TRE.has_partition_term
    joint = torch.randn(16, requires_grad=True)
    output = TRE()(PairScores.from_pairs(joint, torch.randn(16)))
    assert output.mi.item() == pytest.approx(joint.mean().item()) and output.loss.item() == 0.0
    output.loss.backward()
    assert joint.grad is not None and (joint.grad == 0).all()
    pmi = TRE().pmi(joint=joint.detach(), marginal=torch.zeros(16, 1))
    assert torch.equal(pmi.joint, joint.detach())


def test_a_plain_pytorch_fit_reaches_the_10_nat_tre_level_within_10_percent():
    """The TRE protocol's first level (d = 20, I = 10 nats), two bridges (the paper's schedule for 10 nats), a
    64 x 64 body, 600 Adam steps (cosine-annealed from 5e-3) of batch 256 with derangement marginal pairs: the
    plug-in on 4,000 held-out pairs is within 10% of the truth (9.3-9.8 over seeds 0-3; a few seconds on a CPU)."""
    torch.manual_seed(0)
    dim, mi, steps = 20, 10.0, 600
    critic = TelescopingCritic(dim, dim, num_waymarks=2, hidden_dims=(64, 64))
    optimizer = torch.optim.Adam(critic.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = sample_correlated_gaussian(256, dim, mi, generator)
        loss = critic.bridge_loss(x, y, y[random_derangement(256, generator)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    x, y = sample_correlated_gaussian(4000, dim, mi, torch.Generator().manual_seed(99))
    with torch.no_grad():
        estimate = TRE()(PairScores.from_pairs(critic.pointwise(x, y), torch.zeros(4000))).mi.item()
    assert abs(estimate - mi) < 0.1 * mi, estimate
