"""Numerical stress: every bound and critic at extreme scores, all-equal scores, batch size 2, high
MI (20+ nats, d = 20) and low precision. The contract: finite values and gradients, or a non-finite
value that the guard reports by name, never a NaN gradient from a finite loss."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import Tensor

from pdlightning.bounds import Bound, BoundOutput, InfoNCE, PairScores
from pdlightning.critics import BaselineShiftedCritic, BilinearCritic, JointCritic, SeparableCritic
from pdlightning.data import CorrelatedGaussianDataModule, gaussian_log_ratio, sample_correlated_gaussian
from pdlightning.modules import MIEstimationModule, NonFiniteBoundError
from pdlightning.modules.finite import non_finite_terms, raise_if_non_finite

from .zoo import BOUNDS, LOG_DOMAIN

N = 8


def _matrix(diag: float, off: float, n: int = N) -> Tensor:
    scores = torch.full((n, n), off)
    scores.diagonal().fill_(diag)
    return scores


def _signs(value: float) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return value * (torch.randint(0, 2, (N, N), generator=generator) * 2 - 1).float()


SCENARIOS: dict[str, Tensor] = {
    "all+80": _matrix(80.0, 80.0),
    "all-80": _matrix(-80.0, -80.0),
    "signs80": _signs(80.0),
    "diag+80,off-80": _matrix(80.0, -80.0),
    "all+1e4": _matrix(1e4, 1e4),
    "all-1e4": _matrix(-1e4, -1e4),
    "signs1e4": _signs(1e4),
    "diag+1e4,off-1e4": _matrix(1e4, -1e4),
    "diag-1e4,off+1e4": _matrix(-1e4, 1e4),
    "all-equal": _matrix(3.0, 3.0),
    "batch2": torch.tensor([[1.5, -0.5], [0.25, 2.0]]),
    "batch2-extreme": torch.tensor([[1e4, -1e4], [-1e4, 1e4]]),
    "marginal=-inf": _matrix(0.0, -math.inf),
}
#: where exp(f) stays inside float32 (|f| <= 80): exponential terms are finite too, except e^{2f}.
MODERATE = {"all+80", "all-80", "signs80", "diag+80,off-80", "all-equal", "batch2"}
#: e^{2 * 80} overflows float32 (the exp-link ratio's square); their values are -inf, reported.
SQUARED_EXP_OVERFLOW = {("pd_ratio_fitting_exp", s) for s in ("all+80", "signs80", "diag+80,off-80")}


def run(bound: Bound, scores: Tensor) -> tuple[BoundOutput, Tensor | None]:
    """The bound's output and, when the loss is finite, the gradient of the loss on the scores."""
    leaf = scores.clone().requires_grad_(True)
    output = bound(leaf)
    if not torch.isfinite(output.loss):
        return output, None
    output.loss.backward()
    return output, leaf.grad


def assert_reported(output: BoundOutput, bound: Bound, name: str) -> None:
    with pytest.raises(NonFiniteBoundError, match=rf"^bound {type(bound).__name__}: non-finite .* at step 5 \("):
        raise_if_non_finite(output, bound, "bound", 5)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("name", list(BOUNDS))
def test_extreme_scores_are_finite_or_reported_never_nan_gradients(name: str, scenario: str) -> None:
    bound = BOUNDS[name]()
    output, grad = run(bound, SCENARIOS[scenario])
    if grad is not None:
        assert not torch.isnan(grad).any(), f"{name} @ {scenario}: NaN gradient from a finite loss"
        assert torch.isfinite(grad).all(), f"{name} @ {scenario}: infinite gradient from a finite loss"
    bad = non_finite_terms(output)
    finite_expected = (scenario != "marginal=-inf" and name in LOG_DOMAIN) or (
        scenario in MODERATE and (name, scenario) not in SQUARED_EXP_OVERFLOW
    )
    if finite_expected:
        assert bad == [], f"{name} @ {scenario}: non-finite {bad} where the math allows finite values"
    if bad:
        assert_reported(output, bound, name)


@pytest.mark.parametrize("name", list(BOUNDS))
def test_all_equal_scores_give_zero_information(name: str) -> None:
    """Equal scores carry no dependence: every lower bound reports <= its value at independence."""
    output, grad = run(BOUNDS[name](), _matrix(0.0, 0.0))
    assert non_finite_terms(output) == [] and grad is not None and torch.isfinite(grad).all()
    if name in {"dv", "mine", "infonce", "smile_tauinf", "remine", "reinfonce"}:
        assert abs(float(output.mi)) < 1e-6


@pytest.mark.parametrize("name", list(BOUNDS))
def test_marginal_scores_of_minus_inf_give_zero_not_nan_gradients(name: str) -> None:
    """``logsumexp`` over an all ``-inf`` slice: e^f = 0 contributes a zero gradient."""
    scores = _matrix(0.5, -math.inf)
    output, grad = run(BOUNDS[name](), scores)
    if grad is not None:
        assert torch.isfinite(grad).all()
        off_diagonal = ~torch.eye(N, dtype=torch.bool)
        assert (grad[off_diagonal] == 0).all()


@pytest.mark.parametrize("mi", [20.0, 30.0])
@pytest.mark.parametrize("name", list(BOUNDS))
def test_high_mi_optimal_critic_is_finite(name: str, mi: float) -> None:
    """The closed-form ``log r`` of a 20-d Gaussian at 20-30 nats (marginal scores reach -1000s)."""
    x, y = sample_correlated_gaussian(64, 20, mi, torch.Generator().manual_seed(1))
    scores = gaussian_log_ratio(x.double(), y.double(), mi).float()
    assert scores.min() < -100  # the regime the test is about
    bound = BOUNDS[name]()
    output, grad = run(bound, scores)
    assert non_finite_terms(output) == [], name
    assert grad is not None and torch.isfinite(grad).all()
    if isinstance(bound, InfoNCE):
        assert float(output.mi) <= torch.tensor(math.log(64), dtype=torch.float32).item()
    if name in {"pd_variational", "pd_matching_1"}:  # plug-in of the exact log r: close to the truth
        assert abs(float(output.mi) - mi) < 0.25 * mi


@pytest.mark.parametrize("name", ["nwj", "mine", "infonce", "pd_classifier"])
def test_training_at_20_nats_in_20_dimensions_stays_finite(name: str) -> None:
    L.seed_everything(0)
    module = MIEstimationModule(JointCritic(20, 20, (32,)), BOUNDS[name]())
    trainer = L.Trainer(
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        limit_val_batches=0,
    )
    trainer.fit(
        module, CorrelatedGaussianDataModule(dim=20, mi_schedule=[20.0, 24.0], steps_per_level=3, batch_size=16)
    )
    assert trainer.global_step == 6
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert math.isfinite(float(trainer.logged_metrics["mi/estimate"]))


@pytest.mark.parametrize("scenario", ["all+80", "signs80", "all-equal", "batch2", "diag+80,off-80"])
@pytest.mark.parametrize("name", list(BOUNDS))
def test_fp16_scores_get_the_float32_gradient_rounded_to_fp16(name: str, scenario: str) -> None:
    """Bounds compute in float32 whatever the input; an fp16 input receives the float32 gradient
    cast to fp16 (inf only where it exceeds fp16's range, which AMP's GradScaler handles)."""
    scores = SCENARIOS[scenario]
    out32, grad32 = run(BOUNDS[name](), scores)
    out16, grad16 = run(BOUNDS[name](), scores.half())
    assert out16.loss.dtype == torch.float32
    assert non_finite_terms(out16) == non_finite_terms(out32)
    if grad32 is None:
        return
    assert grad16 is not None and grad16.dtype == torch.float16 and not torch.isnan(grad16).any()
    torch.testing.assert_close(grad16, grad32.half(), rtol=1e-3, atol=1e-6)


CRITICS = {
    "joint": lambda d: JointCritic(d, d, (16, 16)),
    "separable": lambda d: SeparableCritic(d, d, (16,), embed_dim=8),
    "separable_cosine": lambda d: SeparableCritic(d, d, (16,), embed_dim=8, normalize=True, temperature=0.1),
    "bilinear": lambda d: BilinearCritic(d, d),
    "baseline_shifted": lambda d: BaselineShiftedCritic(JointCritic(d, d, (16,)), hidden_dims=(8,)),
}
INPUTS = {
    "gaussian": lambda n, d: torch.randn(n, d, generator=torch.Generator().manual_seed(0)),
    "scale1e4": lambda n, d: 1e4 * torch.randn(n, d, generator=torch.Generator().manual_seed(0)),
    "all-equal": lambda n, d: torch.ones(n, d),
}


@pytest.mark.parametrize("precision", ["float32", "bf16-autocast", "fp16-autocast", "fp16-inputs"])
@pytest.mark.parametrize("inputs", list(INPUTS))
@pytest.mark.parametrize("critic_name", list(CRITICS))
def test_critics_under_stress_feed_bounds_finite_or_reported(critic_name: str, inputs: str, precision: str) -> None:
    torch.manual_seed(0)
    critic = CRITICS[critic_name](20)
    n = 2 if inputs == "all-equal" else 16
    x, y = INPUTS[inputs](n, 20), INPUTS[inputs](n, 20).flip(0)
    if precision == "fp16-inputs":
        x, y = x.half(), y.half()  # cast to the critic's float32 weights by the critic itself
    dtype = {"bf16-autocast": torch.bfloat16, "fp16-autocast": torch.float16}.get(precision)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        scores = critic(x, y)
        joint = critic.pointwise(x, y)
    if torch.isfinite(scores).all():  # fp16 can overflow at 1e4-scale inputs: then the bound reports it
        scale = 1 + joint.float().abs().max().item()
        torch.testing.assert_close(joint.float(), scores.diagonal().float(), rtol=2e-2, atol=2e-2 * scale)
    for name in ("dv", "infonce", "nwj", "pd_classifier"):
        bound = BOUNDS[name]()
        critic.zero_grad()
        output = bound(critic(x, y) if dtype is None else _autocast_scores(critic, x, y, dtype))
        bad = non_finite_terms(output)
        if bad:
            assert_reported(output, bound, name)
            continue
        output.loss.backward()
        for pname, p in critic.named_parameters():
            assert p.grad is None or not torch.isnan(p.grad).any(), f"{critic_name}/{name}: NaN grad in {pname}"
        if inputs != "scale1e4":  # scores of order 1e5+ make exp-type gradients legitimately huge
            assert all(p.grad is None or torch.isfinite(p.grad).all() for p in critic.parameters())


def _autocast_scores(critic, x: Tensor, y: Tensor, dtype: torch.dtype) -> Tensor:
    with torch.autocast("cpu", dtype=dtype):
        return critic(x, y)


def test_infonce_never_exceeds_log_k_even_in_float32_rounding() -> None:
    """At saturation (joint >> marginal) first - second is log K up to float32 rounding of 50-ish
    numbers; the reported value is clamped to log K, the exact bound."""
    log_k = torch.tensor(math.log(64), dtype=torch.float32).item()
    for shift in (0.0, 49.7, 123.4, 5e3):
        scores = _matrix(shift, shift - 200.0, n=64) + torch.linspace(0, 1e-3, 64)
        assert float(InfoNCE()(scores).mi) <= log_k
        pairs = PairScores.from_matrix(scores)
        assert float(InfoNCE()(joint=pairs.joint, marginal=pairs.marginal).mi) <= log_k
