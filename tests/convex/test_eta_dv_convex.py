"""η-MINE-convex (Mroueh et al. 2021, Sec. 3): the loss is jointly convex (Lemma 3), the fit reaches its optimum
where η enforces E_Q[r] = 1 (Eq. 14-15) and the primal value equals the dual reading plus λ||w||², finer feature
maps approach a closed-form MI from below, and the bad inputs of the issue are errors naming their parameter."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from pdlightning.bounds import EtaDV
from pdlightning.convex import (
    CriticFeatures,
    EtaDVConvex,
    RandomFourierFeatures,
    eta_dv_loss,
    fit_eta_dv_convex,
    median_distance,
    shifted_pairs,
    solve_eta_dv,
)
from pdlightning.critics import BilinearCritic, JointCritic
from pdlightning.data import CorrelatedGaussianDataModule, gaussian_log_ratio, sample_correlated_gaussian
from pdlightning.modules import MIEstimationModule


def gaussian_pairs(n: int, mi: float, dim: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return sample_correlated_gaussian(n, dim, mi, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_the_loss_is_jointly_convex_in_w_and_eta(lam):
    """Lemma 3: the Hessian of L(w, η) + λ/2||w||² in (w, η) is positive semi-definite at random points."""
    generator = torch.Generator().manual_seed(0)
    m = 6
    phi_p = torch.randn(40, m, generator=generator, dtype=torch.float64)
    phi_q = torch.randn(50, m, generator=generator, dtype=torch.float64)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return eta_dv_loss(theta[:m], theta[m], phi_p, phi_q, lam)

    smallest = []
    for _ in range(20):
        theta = 2 * torch.randn(m + 1, generator=generator, dtype=torch.float64)
        hessian = torch.autograd.functional.hessian(loss, theta)
        torch.testing.assert_close(hessian, hessian.T)
        eigenvalues = torch.linalg.eigvalsh(hessian)
        scale = eigenvalues.abs().max()
        smallest.append(float(eigenvalues.min() / scale))
        if lam > 0:  # strictly convex in w; along η the exponential term is strictly convex too
            assert eigenvalues.min() > 0
    assert min(smallest) >= -1e-10, smallest
    # not vacuous: the Hessian is not zero (a linear loss would pass the check above)
    at_zero = torch.autograd.functional.hessian(loss, torch.zeros(m + 1, dtype=torch.float64))
    assert float(torch.linalg.eigvalsh(at_zero).max()) > 0.1


def test_the_optimum_normalises_the_ratio_and_the_primal_equals_the_dual_reading():
    x, y = gaussian_pairs(2000, mi=0.5)
    estimator = fit_eta_dv_convex(x, y, num_features=64, lam=1e-3, tol=1e-8, max_iter=3000)
    solution = estimator.solution
    assert solution is not None and solution.converged and solution.gradient_norm <= 1e-8
    # η is the Lagrange multiplier of E_Q[r] = 1: ∂L/∂η = 1 - E_Q[r] is zero at the optimum
    assert abs(solution.normalisation - 1.0) <= 1e-7
    # stationarity in w gives w* = (E_P Φ - E_Q[r Φ]) / λ, hence -L̂ = E_Q[r log r] + λ ||w*||²
    assert solution.value == pytest.approx(solution.kale + estimator.lam * solution.weight_norm**2, abs=1e-6)
    assert solution.kale > 0.2  # a real fit, not the trivial w = 0 (where both are 0)
    # η* is the log-partition of the witness: the η-DV value is the DV value at the optimum
    phi = estimator.features
    xq, yq = shifted_pairs(x, y, 1, 0)
    f_q = phi.features(xq, yq) @ estimator.w
    assert float(estimator.eta) == pytest.approx(float(torch.logsumexp(f_q, 0) - math.log(f_q.numel())), abs=1e-7)


def test_the_witness_matches_the_eta_dv_bound_of_the_package():
    """The fitted (w*, η*) scored as a critic and read by EtaDV with η = η* gives the same value."""
    x, y = gaussian_pairs(500, mi=0.5)
    estimator = fit_eta_dv_convex(x, y, num_features=32, lam=1e-3)
    xq, yq = shifted_pairs(x, y, 1, 0)
    bound = EtaDV(eta_init=float(estimator.eta))
    output = bound(joint=estimator.witness(x, y).float(), marginal=estimator.witness(xq, yq).float())
    assert float(output.mi) == pytest.approx(estimator.solution.value, abs=1e-4)


def test_finer_feature_maps_approach_the_true_mi_from_below():
    """Nested random Fourier maps (the first m features of a larger map): the held-out η-DV value of the fitted
    witness is a lower bound of I = 0.5 nats up to sampling noise, and it climbs towards it as m grows."""
    mi = 0.5
    x, y = gaussian_pairs(3000, mi, seed=0)
    x_test, y_test = gaussian_pairs(20000, mi, seed=1)
    values = []
    for m in (1, 4, 16, 64, 128):
        estimator = EtaDVConvex(RandomFourierFeatures(2, m), lam=3e-4, negatives=4)
        estimator.fit(x, y)
        values.append(estimator.estimate(x_test, y_test))
    # standard error of the held-out value: joint and marginal means of 20,000 pairs each (Var_q r = e^{2I} - 1)
    stderr = (1.0 + math.sqrt(math.expm1(2 * mi))) / math.sqrt(20000)
    assert all(v <= mi + 3 * stderr for v in values), values
    assert all(b >= a - 3 * stderr for a, b in zip(values, values[1:])), values  # non-decreasing up to noise
    assert values[0] < mi - 0.2 and mi - values[-1] < 0.03, values  # coarse maps miss, the finest is close


def test_pmi_tracks_the_exact_log_ratio_and_is_normalised():
    x, y = gaussian_pairs(3000, mi=1.0, dim=2)
    estimator = fit_eta_dv_convex(x, y, num_features=256, lam=3e-4, negatives=4)
    x_test, y_test = gaussian_pairs(5000, mi=1.0, dim=2, seed=3)
    pmi = estimator.pmi(x_test, y_test)
    exact = gaussian_log_ratio(x_test.double(), y_test.double(), 1.0).diagonal()
    assert pmi.shape == (5000,) and pmi.dtype == torch.float64
    assert torch.corrcoef(torch.stack([pmi, exact]))[0, 1] > 0.93
    assert float((pmi - exact).abs().mean()) < 0.3
    # r = e^{pmi} integrates to 1 under p(x)p(y) on fresh pairs, up to noise (sd of r: sqrt(e^{2I} - 1) = 2.5)
    xq, yq = shifted_pairs(x_test, y_test, 1, 0)
    assert float(torch.exp(estimator.pmi(xq, yq)).mean()) == pytest.approx(1.0, abs=4 * 2.5 / math.sqrt(5000))


def test_kl_between_two_gaussians_from_two_sample_sets():
    generator = torch.Generator().manual_seed(0)
    p = torch.randn(4000, 2, generator=generator)
    q = 1.5 * torch.randn(4000, 2, generator=generator) + torch.tensor([1.0, 0.0])
    # KL(N(0, I) || N(μ, s² I)) = d log s + (d + |μ|²) / (2 s²) - d / 2
    truth = 2 * math.log(1.5) + (2 + 1.0) / (2 * 1.5**2) - 1.0
    estimator = EtaDVConvex(RandomFourierFeatures(2, 256), lam=1e-4)
    solution = estimator.fit_divergence(p, q)
    assert solution.converged and abs(solution.normalisation - 1) < 1e-5
    p_test = torch.randn(20000, 2, generator=generator)
    q_test = 1.5 * torch.randn(20000, 2, generator=generator) + torch.tensor([1.0, 0.0])
    held_out = estimator.estimate_divergence(p_test, q_test)
    assert truth - 0.08 < held_out < truth + 0.03, (held_out, truth)
    assert estimator.log_ratio(p_test[:5]).shape == (5,)


def _trained_critic_checkpoint(tmp_path, hidden: int = 16) -> tuple[str, MIEstimationModule]:
    torch.manual_seed(0)
    module = MIEstimationModule(JointCritic(2, 2, [hidden, hidden]), EtaDV(), summary=False, level_snapshots=False)
    trainer = L.Trainer(
        max_steps=30,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accelerator="cpu",
    )
    data = CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0], steps_per_level=30, batch_size=64)
    trainer.fit(module, data)
    path = str(tmp_path / "critic.ckpt")
    trainer.save_checkpoint(path)
    return path, module


def test_a_trained_critics_feature_layer_is_a_feature_map_and_the_fit_is_a_post_fit_step(tmp_path):
    path, module = _trained_critic_checkpoint(tmp_path)
    features = CriticFeatures(module.critic, width=16)
    x, y = gaussian_pairs(1500, mi=1.0, dim=2)
    # Φ is the last hidden layer: the critic's own output is <w_0, Φ> + b
    last = module.critic.rest[-1]
    expected = module.critic.pointwise(x, y).double()
    torch.testing.assert_close(
        features.features(x, y) @ last.weight[0].double() + last.bias.double(), expected, rtol=1e-5, atol=1e-5
    )
    warm = EtaDVConvex(features, lam=1e-3, tol=1e-7, max_iter=5000)
    cold = EtaDVConvex(features, lam=1e-3, tol=1e-7, max_iter=5000, warm_start=False)
    a, b = warm.fit(x, y), cold.fit(x, y)
    assert a.converged and b.converged
    assert a.objective == pytest.approx(b.objective, abs=1e-9)  # one optimum (strictly convex for λ > 0)
    torch.testing.assert_close(warm.w, cold.w, atol=1e-3, rtol=1e-3)
    # the convex fit on the critic's features is at least as good as the critic with its best η on the same pairs
    xq, yq = shifted_pairs(x, y, 1, 0)
    f_p, f_q = module.critic.pointwise(x, y).double(), module.critic.pointwise(xq, yq).double()
    critic_value = float(f_p.mean() - (torch.logsumexp(f_q, 0) - math.log(f_q.numel())))
    penalty = 0.5 * 1e-3 * float(last.weight.double().pow(2).sum())
    assert -a.objective >= critic_value - penalty - 1e-9
    # from the checkpoint: the same features, the architecture read from the module's hyper-parameters or given
    loaded = CriticFeatures.from_checkpoint(path, critic=JointCritic(2, 2, [16, 16]), width=16)
    torch.testing.assert_close(loaded.features(x, y), features.features(x, y))


def test_bad_input_is_an_error_naming_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="bandwidth"):
        RandomFourierFeatures(2, 8, bandwidth=0.0)
    with pytest.raises(ValueError, match="bandwidth"):
        RandomFourierFeatures(2, 8, bandwidth=-1.0)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="num_features"):
            RandomFourierFeatures(2, bad)
    with pytest.raises(ValueError, match="lam"):
        EtaDVConvex(RandomFourierFeatures(2, 8), lam=-0.1)
    with pytest.raises(ValueError, match="lam"):
        solve_eta_dv(torch.zeros(3, 2), torch.zeros(3, 2), lam=-1.0)
    path, module = _trained_critic_checkpoint(tmp_path, hidden=8)
    with pytest.raises(ValueError, match="width"):
        CriticFeatures(module.critic, width=32)
    with pytest.raises(ValueError, match="width"):
        CriticFeatures.from_checkpoint(path, critic=JointCritic(2, 2, [8, 8]), width=32)
    with pytest.raises(ValueError, match="critic"):
        CriticFeatures(BilinearCritic(2, 2))
    with pytest.raises(ValueError, match="critic"):  # built in Python: the checkpoint has no architecture to rebuild
        CriticFeatures.from_checkpoint(path)
    with pytest.raises(ValueError, match="critic"):  # a checkpoint of another architecture
        CriticFeatures.from_checkpoint(path, critic=JointCritic(2, 2, [8, 8, 8]))
    with pytest.raises(ValueError, match="q"):
        EtaDVConvex(RandomFourierFeatures(2, 8)).fit_divergence(torch.randn(10, 2), torch.randn(10, 3))
    with pytest.raises(ValueError, match="in_dim"):
        EtaDVConvex(RandomFourierFeatures(3, 8)).fit(torch.randn(10, 1), torch.randn(10, 1))
    with pytest.raises(ValueError, match="negatives"):
        shifted_pairs(torch.randn(4, 1), torch.randn(4, 1), negatives=4)
    with pytest.raises(RuntimeError, match="not fitted"):
        EtaDVConvex(RandomFourierFeatures(2, 8, bandwidth=1.0)).pmi(torch.randn(3, 1), torch.randn(3, 1))


def test_median_heuristic_bandwidth():
    z = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 2, 3
    assert median_distance(z) == pytest.approx(2.0)
    features = RandomFourierFeatures(1, 4)
    features.prepare(z)
    assert features.bandwidth == pytest.approx(2.0)
    prefix = RandomFourierFeatures(1, 2)  # nested draws: a smaller map is the prefix of a larger one
    torch.testing.assert_close(prefix.omega, features.omega[:, :2])
    torch.testing.assert_close(prefix.phase, features.phase[:2])
