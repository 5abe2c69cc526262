"""The bound interface: score matrix vs explicit pairs, shapes, float32, gradients, Re-X, MINE."""

from __future__ import annotations

import math

import pytest
import torch

import pdlightning.bounds as B
from pdlightning.bounds import PairScores

ALL_BOUNDS = {
    "NWJ": B.NWJ,
    "TUBA": lambda: B.TUBA(learn_log_a=True),
    "DV": B.DV,
    "MINE": B.MINE,
    "JS": B.JS,
    "InfoNCE": B.InfoNCE,
    "SMILE": B.SMILE,
    "SMILE(inf)": lambda: B.SMILE(tau=None),
    "EtaDV": B.EtaDV,
    "VariationalPlugIn": B.VariationalPlugIn,
    "ProbabilisticClassifier": B.ProbabilisticClassifier,
    "DensityRatioFitting": B.DensityRatioFitting,
    "DensityRatioFitting(alpha)": lambda: B.DensityRatioFitting(alpha=0.5),
    "DensityMatchingI": B.DensityMatchingI,
    "DensityMatchingII": B.DensityMatchingII,
    "ReMINE": lambda: B.Regularized(B.DV()),
    "ReNWJ": lambda: B.Regularized(B.NWJ(), distance="log_euclidean", clip=10.0),
    "ReSMILE": lambda: B.Regularized(B.SMILE(tau=10.0)),
    "ReInfoNCE": lambda: B.Regularized(B.InfoNCE()),
    "ReTUBA": lambda: B.Regularized(B.TUBA(), distance="log_euclidean", clip=10.0),
    "ReJS": lambda: B.Regularized(B.JS(), clip=10.0),
}


def test_off_diagonal_split_matches_a_masked_matrix():
    scores = torch.arange(16.0).view(4, 4)
    pairs = PairScores.from_matrix(scores)
    assert torch.equal(pairs.joint, torch.tensor([0.0, 5.0, 10.0, 15.0]))
    assert torch.equal(pairs.marginal[1], torch.tensor([4.0, 6.0, 7.0]))
    assert pairs.negatives_per_row == 3


@pytest.mark.parametrize("name", list(ALL_BOUNDS))
def test_matrix_and_equivalent_explicit_pairs_agree(name):
    scores = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    pairs = PairScores.from_matrix(scores)
    from_matrix = ALL_BOUNDS[name]()(scores)
    explicit = ALL_BOUNDS[name]()(joint=pairs.joint.clone(), marginal=pairs.marginal.clone())
    for field in ("loss", "mi", "first_term", "second_term"):
        assert getattr(from_matrix, field).item() == pytest.approx(getattr(explicit, field).item(), abs=1e-5)


@pytest.mark.parametrize("name", list(ALL_BOUNDS))
def test_one_explicit_marginal_pair_per_row_is_accepted(name):
    joint, marginal = torch.randn(8), torch.randn(8)
    out = ALL_BOUNDS[name]()(joint=joint, marginal=marginal)
    assert out.scores.marginal.shape == (8, 1)
    assert torch.isfinite(out.loss)
    pmi = ALL_BOUNDS[name]().pmi(joint=joint, marginal=marginal)
    assert pmi.joint.shape == (8,) and pmi.marginal.shape == (8, 1)


@pytest.mark.parametrize("name", list(ALL_BOUNDS))
def test_finite_gradients_at_scores_of_magnitude_80(name):
    generator = torch.Generator().manual_seed(1)
    scores = ((torch.rand(32, 32, generator=generator) * 2 - 1) * 80).requires_grad_()
    bound = ALL_BOUNDS[name]()
    out = bound(scores)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.mi)
    assert torch.isfinite(scores.grad).all()
    for p in bound.parameters():
        if p.requires_grad:
            assert p.grad is None or torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", list(ALL_BOUNDS))
def test_bf16_autocast_scores_give_float32_finite_loss_and_gradients(name):
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    layer = torch.nn.Linear(8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = (layer(x) @ layer(x).T) * 5  # bf16 under autocast
        assert scores.dtype == torch.bfloat16
        out = ALL_BOUNDS[name]()(scores)
    assert out.loss.dtype == torch.float32 and out.mi.dtype == torch.float32
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("bad", [torch.randn(3, 4), torch.randn(4), torch.randn(2, 2, 2)])
def test_non_square_scores_are_rejected_naming_the_parameter(bad):
    with pytest.raises(ValueError, match="scores"):
        B.NWJ()(bad)


def test_batch_of_one_is_rejected():
    with pytest.raises(ValueError, match="batch size must be >= 2"):
        B.InfoNCE()(torch.randn(1, 1))


def test_explicit_marginal_with_wrong_rows_is_rejected():
    with pytest.raises(ValueError, match="marginal scores"):
        B.NWJ()(joint=torch.randn(8), marginal=torch.randn(7, 3))
    with pytest.raises(ValueError, match="joint and marginal|score matrix"):
        B.NWJ()(joint=torch.randn(8))


def test_mine_value_is_dv_and_its_gradient_uses_the_moving_average():
    scores = torch.randn(16, 16, generator=torch.Generator().manual_seed(3))
    mine = B.MINE(ema_rate=0.1)
    mine.log_partition_ema.fill_(math.log(4.0))  # a stale average: E[e^f] believed to be 4
    mine.eval()  # freeze the average for this check
    s = scores.clone().requires_grad_()
    out = mine(s)
    assert out.mi.item() == pytest.approx(B.DV()(scores).mi.item(), abs=1e-6)
    out.loss.backward()
    marginal = PairScores.from_matrix(s.detach()).marginal
    expected = torch.zeros(16, 16)
    mask = ~torch.eye(16, dtype=torch.bool)
    expected[mask] = (marginal.exp() / marginal.numel() / 4.0).flatten()  # d/df E[e^f] / EMA
    expected.diagonal().fill_(-1.0 / 16)
    assert torch.allclose(s.grad, expected, atol=1e-6)


def test_mine_moving_average_updates_only_in_training_and_is_checkpointed():
    mine = B.MINE(ema_rate=0.5)
    scores = torch.randn(8, 8)
    mine.eval()
    mine(scores)
    assert torch.isnan(mine.log_partition_ema)
    mine.train()
    mine(scores)
    first = mine.log_partition_ema.item()
    assert first == pytest.approx(B.log_mean_exp(PairScores.from_matrix(scores).marginal).item())
    mine(scores + 1.0)
    assert mine.log_partition_ema.item() == pytest.approx(math.log(0.5 * math.exp(first) + 0.5 * math.exp(first + 1)))
    assert "log_partition_ema" in mine.state_dict()


def test_probabilistic_classifier_remembers_the_training_prior_ratio():
    pc = B.ProbabilisticClassifier()
    pc.train()
    pc(torch.randn(64, 64))
    pc.eval()
    scores = torch.zeros(8, 8)
    assert pc.pmi(scores)[0, 0].item() == pytest.approx(math.log(63))


def test_regularizer_pulls_the_second_term_to_its_target():
    scores = torch.randn(16, 16) + 2.0
    remine = B.Regularized(B.DV(), lam=1.0, target=0.0)
    out = remine(scores)
    log_partition = B.log_mean_exp(PairScores.from_matrix(scores).marginal)
    assert out.extras["regularizer"].item() == pytest.approx(log_partition.item() ** 2, rel=1e-5)
    assert out.mi.item() == pytest.approx(B.DV()(scores).mi.item())
    assert out.loss.item() == pytest.approx(B.DV()(scores).loss.item() + log_partition.item() ** 2, rel=1e-5)
    renwj = B.Regularized(B.NWJ(), distance="log_euclidean")
    assert renwj(scores).extras["regularizer"].item() == pytest.approx((log_partition.item() - 1) ** 2, rel=1e-5)


def test_regularizer_rejects_impossible_settings():
    with pytest.raises(ValueError, match="distance"):
        B.Regularized(B.DV(), distance="log_euclidean")
    with pytest.raises(ValueError, match="distance"):
        B.Regularized(B.DV(), distance="cosine")
    with pytest.raises(ValueError, match="bound"):
        B.Regularized(B.ProbabilisticClassifier())
    with pytest.raises(ValueError, match="lam"):
        B.Regularized(B.NWJ(), lam=-1.0)


@pytest.mark.parametrize(
    "factory, parameter",
    [
        (lambda: B.SMILE(tau=0.0), "tau"),
        (lambda: B.MINE(ema_rate=0.0), "ema_rate"),
        (lambda: B.DensityRatioFitting(alpha=1.0), "alpha"),
        (lambda: B.DensityMatchingII(eta=0.0), "eta"),
        (lambda: B.DensityMatchingI(lam=-1.0), "lam"),
        (lambda: B.TUBA(log_a=float("nan")), "log_a"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(factory, parameter):
    with pytest.raises(ValueError, match=parameter):
        factory()


def test_eta_dv_learns_the_log_partition():
    scores = torch.randn(32, 32) + 1.5
    bound = B.EtaDV()
    optimiser = torch.optim.SGD(bound.parameters(), lr=0.5)
    for _ in range(200):
        optimiser.zero_grad()
        bound(scores).loss.backward()
        optimiser.step()
    log_partition = B.log_mean_exp(PairScores.from_matrix(scores).marginal).item()
    assert bound.eta.item() == pytest.approx(log_partition, abs=1e-3)
    assert bound(scores).mi.item() == pytest.approx(B.DV()(scores).mi.item(), abs=1e-4)


def test_density_ratio_fitting_floors_the_plug_in_log_ratio():
    scores = torch.tensor([[-200.0, 0.0], [0.0, 3.0]])
    floored = B.DensityRatioFitting(link="softplus")(scores).mi.item()
    assert floored == pytest.approx(
        0.5 * (math.log(1e-6) + math.log(torch.nn.functional.softplus(torch.tensor(3.0)).item()))
    )
    unfloored = B.DensityRatioFitting(link="softplus", min_ratio=0.0)(scores).mi.item()
    assert unfloored == pytest.approx(
        0.5 * (-200.0 + math.log(torch.nn.functional.softplus(torch.tensor(3.0)).item())), rel=1e-4
    )
    identity = B.DensityRatioFitting()  # the default link
    assert identity(torch.tensor([[2.0, 0.1], [0.3, -1.0]])).mi.item() == pytest.approx(
        0.5 * (math.log(2.0) + math.log(1e-6))
    )
    with pytest.raises(ValueError, match="min_ratio"):
        B.DensityRatioFitting(link="identity", min_ratio=0.0)


def test_density_ratio_fitting_lifts_every_joint_pair_by_default():
    """The default (identity) link gives a joint pair the same lifting gradient 1/n whatever its score; softplus gives
    ``sigmoid(f)/n``, which vanishes for a pair pushed far down: such pairs stayed at the plug-in's floor and the
    estimate collapsed (docs/results/density_ratio_links.md)."""
    scores = torch.tensor([[-40.0, 0.5, 0.1], [0.2, 1.0, -0.3], [0.0, 0.4, 2.0]], requires_grad=True)
    for link, lifted in (("identity", True), ("softplus", False)):
        bound = B.DensityRatioFitting() if link == "identity" else B.DensityRatioFitting(link=link)
        (gradient,) = torch.autograd.grad(bound(scores).loss, scores)
        lift = -gradient[0, 0].item()  # the loss is minimised: a negative gradient raises the score
        assert (lift == pytest.approx(1 / 3)) if lifted else (0 <= lift < 1e-15), (link, lift)
