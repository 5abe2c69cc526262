"""Each bound fed the closed-form optimal critic of a correlated Gaussian returns the true MI.

The optimal critic differs per bound by a known shift or link (NWJ: ``1 + log r``; pooled
Probabilistic Classifier: ``log r - log k``; Density-Ratio Fitting: ``softplus^{-1}(r_alpha)``...).
The tolerance is derived from the sample size (see ``GaussianBatch.tolerance``).
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

from pdlightning.bounds import (
    DV,
    FDIME,
    JS,
    MINE,
    NWJ,
    SMILE,
    TRE,
    TUBA,
    Bound,
    DensityMatchingI,
    DensityMatchingII,
    DensityRatioFitting,
    EtaDV,
    InfoNCE,
    ProbabilisticClassifier,
    Regularized,
    VariationalPlugIn,
)


def softplus_inverse(r: torch.Tensor) -> torch.Tensor:
    return r + torch.log(-torch.expm1(-r))


def relative_ratio(log_r: torch.Tensor, alpha: float) -> torch.Tensor:
    r = log_r.double().exp()
    return (r / (alpha * r + 1 - alpha)).float()


# bound factory, optimal critic as a function of the log-ratio matrix L
OPTIMAL: dict[str, tuple[Callable[[], Bound], Callable[[torch.Tensor], torch.Tensor]]] = {
    "NWJ": (NWJ, lambda L: L + 1),
    "TUBA(log a=0.7)": (lambda: TUBA(log_a=0.7), lambda L: L + 0.7),
    "DV": (DV, lambda L: L + 3.0),  # any constant shift
    "MINE": (MINE, lambda L: L - 2.0),
    "JS": (JS, lambda L: L),
    "InfoNCE": (InfoNCE, lambda L: L),
    "SMILE(tau=inf)": (lambda: SMILE(tau=None), lambda L: L),
    "SMILE(tau=20)": (lambda: SMILE(tau=20.0), lambda L: L),
    "EtaDV(eta=0.4)": (lambda: EtaDV(eta_init=0.4), lambda L: L + 0.4),
    "VariationalPlugIn": (VariationalPlugIn, lambda L: L),
    "ProbabilisticClassifier": (ProbabilisticClassifier, lambda L: L - math.log(L.shape[0] - 1)),
    "ProbabilisticClassifier(balanced)": (lambda: ProbabilisticClassifier(balanced=True), lambda L: L),
    "DensityRatioFitting": (DensityRatioFitting, lambda L: L.double().exp().float()),
    "DensityRatioFitting(softplus)": (
        lambda: DensityRatioFitting(link="softplus"),
        lambda L: softplus_inverse(L.double().exp()).float(),
    ),
    "DensityRatioFitting(alpha=0.3)": (
        lambda: DensityRatioFitting(alpha=0.3, link="softplus"),
        lambda L: softplus_inverse(relative_ratio(L, 0.3).double()).float(),
    ),
    "DensityRatioFitting(exp)": (lambda: DensityRatioFitting(link="exp"), lambda L: L),
    "DensityMatchingI": (DensityMatchingI, lambda L: L),
    "DensityMatchingI(lam=2)": (lambda: DensityMatchingI(lam=2.0), lambda L: L - math.log(2.0)),
    "DensityMatchingII": (DensityMatchingII, lambda L: L + 0.5),  # f* = log r + 1/(2 eta)
    "DensityMatchingII(eta=4)": (lambda: DensityMatchingII(eta=4.0), lambda L: L + 0.125),
    "ReMINE": (lambda: Regularized(DV(), lam=1.0), lambda L: L),
    "ReNWJ": (lambda: Regularized(NWJ(), distance="log_euclidean", clip=10.0), lambda L: L + 1),
    # f-DIME and TRE score log r itself (plug-in estimators); the upper bounds CLUB and L1Out have no critic that
    # makes them exact: their closed forms are in tests/bounds/test_upper_bounds.py.
    "FDIME(kl)": (lambda: FDIME("kl"), lambda L: L),
    "FDIME(gan)": (lambda: FDIME("gan"), lambda L: L),
    "FDIME(hd)": (lambda: FDIME("hd"), lambda L: L),
    "TRE": (TRE, lambda L: L),
}


@pytest.mark.parametrize("name", list(OPTIMAL))
def test_optimal_critic_recovers_true_mi(name, gaussian_batch):
    make_bound, optimal = OPTIMAL[name]
    output = make_bound()(optimal(gaussian_batch.log_ratio))
    tolerance = gaussian_batch.tolerance()
    assert abs(output.mi.item() - gaussian_batch.mi) < tolerance, (output.mi.item(), tolerance)
    assert output.mi.item() == pytest.approx(output.first_term.item() - output.second_term.item(), abs=1e-5)


@pytest.mark.parametrize("name", list(OPTIMAL))
def test_pmi_at_the_optimum_is_log_r(name, gaussian_batch):
    """Pointwise: where the bound fixes the normaliser from the batch (DV, InfoNCE, SMILE), the
    batch statistic carries sampling noise of the size of the tolerance; elsewhere it is exact."""
    make_bound, optimal = OPTIMAL[name]
    L = gaussian_batch.log_ratio[:500, :500]
    pmi = make_bound().pmi(optimal(L))
    assert pmi.shape == L.shape
    error = (pmi - L).abs()
    assert torch.isfinite(pmi).all()
    shift = pmi - L
    if name.startswith("InfoNCE"):
        # one normaliser per row (per x_i): a row-constant shift of small mean
        assert (shift - shift.mean(dim=1, keepdim=True)).abs().max().item() < 1e-3
        assert abs(shift.mean().item()) < 0.2
    elif name.startswith(("DV", "MINE", "SMILE", "ReMINE")):
        # one batch partition: a constant shift of the size of the partition's sampling error
        assert shift.std().item() < 1e-3
        assert abs(shift.mean().item()) < 0.2
    else:
        # DRF's softplus inversion loses float32 precision only far in the tails (r < 1e-4)
        assert error[L > -10].max().item() < 1e-3


@pytest.mark.parametrize(
    "name",
    [
        "ProbabilisticClassifier",
        "DensityRatioFitting",
        "DensityRatioFitting(alpha=0.3)",
        "DensityMatchingI",
        "DensityMatchingI(lam=2)",
        "DensityMatchingII",
        "DensityMatchingII(eta=4)",
        "VariationalPlugIn",
        "JS",
        "NWJ",
        "FDIME(kl)",
        "FDIME(gan)",
        "FDIME(hd)",
    ],
)
def test_pd_objectives_are_maximised_by_the_optimal_critic(name, gaussian_batch):
    """Perturbing the optimal critic (scale or shift) lowers the training objective."""
    make_bound, optimal = OPTIMAL[name]
    bound = make_bound()
    L = gaussian_batch.log_ratio[:2000, :2000]
    best = -bound(optimal(L)).loss.item()
    for perturbed in (optimal(L) + 0.3, optimal(L) - 0.3, optimal(0.8 * L), optimal(1.2 * L)):
        assert -bound(perturbed).loss.item() < best


def test_infonce_never_exceeds_log_n():
    for n in (4, 16, 64):
        scores = torch.full((n, n), -50.0)
        scores.diagonal().fill_(50.0)  # perfect separation: the supremum log n
        value = InfoNCE()(scores).mi.item()
        assert value <= math.log(n) + 1e-6
        assert value == pytest.approx(math.log(n), abs=1e-4)
    for seed in range(5):
        scores = torch.randn(32, 32, generator=torch.Generator().manual_seed(seed)) * 20
        assert InfoNCE()(scores).mi.item() <= math.log(32) + 1e-6


def test_infonce_saturates_at_log_n_for_high_mi():
    from tests.conftest import make_gaussian_batch

    batch = make_gaussian_batch(64, 10.0)
    value = InfoNCE()(batch.log_ratio).mi.item()
    assert value <= math.log(64) + 1e-6
    assert value > math.log(64) - 0.5


@pytest.mark.parametrize("name", [k for k, (f, _) in OPTIMAL.items() if f().is_lower_bound])
def test_lower_bounds_stay_below_true_mi_for_non_optimal_critics(name, gaussian_batch):
    make_bound, optimal = OPTIMAL[name]
    L = gaussian_batch.log_ratio
    noise = torch.randn(L.shape, generator=torch.Generator().manual_seed(3))
    for critic in (optimal(0.5 * L), optimal(L) + 0.7 * noise, optimal(1.5 * L)):
        assert make_bound()(critic).mi.item() < gaussian_batch.mi


def test_smile_clipping_biases_down_at_small_tau(gaussian_batch):
    L = gaussian_batch.log_ratio
    tau_inf = SMILE(tau=None)(L).mi.item()
    tau_one = SMILE(tau=1.0)(L).mi.item()
    assert tau_one != pytest.approx(tau_inf, abs=1e-3)
    assert abs(tau_inf - gaussian_batch.mi) < gaussian_batch.tolerance()


def test_dv_value_is_invariant_to_critic_shift_and_nwj_is_not(gaussian_batch):
    L = gaussian_batch.log_ratio[:500, :500]
    assert DV()(L + 5).mi.item() == pytest.approx(DV()(L).mi.item(), abs=1e-4)
    assert InfoNCE()(L + 5).mi.item() == pytest.approx(InfoNCE()(L).mi.item(), abs=1e-4)
    assert NWJ()(L + 5).mi.item() < NWJ()(L + 1).mi.item()


def test_smile_with_a_finite_clip_is_not_a_lower_bound_and_says_so():
    """Independent X, Y (MI = 0) and a constant critic c = 3: DV reads c - log e^c = 0, SMILE(tau = 1) reads
    c - tau = 2 > MI."""
    from pdlightning.bounds import SMILE

    joint, marginal = torch.full((8,), 3.0), torch.full((8, 7), 3.0)
    assert SMILE(1.0)(joint=joint, marginal=marginal).mi.item() == pytest.approx(2.0)
    assert SMILE(None)(joint=joint, marginal=marginal).mi.item() == pytest.approx(0.0, abs=1e-6)
    assert not SMILE(1.0).is_lower_bound and not SMILE(5.0).is_lower_bound and not SMILE(None).is_lower_bound


def test_the_dv_batch_estimate_reads_above_the_mi_in_expectation_so_it_is_no_lower_bound():
    """The true log-ratio as critic at MI = 10 (d = 20, batches of 64): DV's batch value, the log of a sample mean
    in its partition, averages well above the MI over 100 batches; NWJ on ``1 + log r`` (a plain mean) does not.
    The bracket takes a lower end only from bounds whose batch value is a lower bound in expectation."""
    from tests.conftest import make_gaussian_batch

    batches = [make_gaussian_batch(64, 10.0, seed=s).log_ratio for s in range(100)]
    dv = torch.tensor([DV()(b).mi.item() for b in batches])
    assert dv.mean() - 3 * dv.std() / 10 > 10.0, f"DV's batch mean {dv.mean():.2f} is not above the MI"
    assert not DV.is_lower_bound and not MINE.is_lower_bound and not Regularized(DV()).is_lower_bound
    assert NWJ.is_lower_bound and InfoNCE.is_lower_bound and JS.is_lower_bound and EtaDV.is_lower_bound
