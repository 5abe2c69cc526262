"""Many bounds on stacked scores (a fit's members): one vmapped call per bound *structure* (class and settings),
stateful bounds included (their parameters and buffers stacked), gives exactly what each bound gives alone."""

import torch

from pdlightning.bounds import (
    DV,
    JS,
    MINE,
    NWJ,
    SMILE,
    TUBA,
    DensityRatioFitting,
    EtaDV,
    InfoNCE,
    PairScores,
    ProbabilisticClassifier,
    Regularized,
)
from pdlightning.modules import bound_stack
from pdlightning.modules.bound_stack import BoundStack
from pdlightning.modules.mi_estimation import matrix_to_pairs
from pdlightning.modules.stacking import Stack

MAKERS = [
    InfoNCE,
    NWJ,
    lambda: SMILE(1.0),
    lambda: SMILE(5.0),
    lambda: SMILE(None),
    lambda: Regularized(DV()),
    DensityRatioFitting,
    JS,
    ProbabilisticClassifier,
    MINE,
    lambda: TUBA(0.3, learn_log_a=True),
    lambda: EtaDV(0.5),
]


def test_matrix_to_pairs_is_from_matrix_per_member():
    scores = torch.randn(3, 5, 5)
    joint, marginal = matrix_to_pairs(scores)
    for k in range(3):
        pairs = PairScores.from_matrix(scores[k])
        assert torch.equal(joint[k], pairs.joint) and torch.equal(marginal[k], pairs.marginal)


def test_structures_are_vmapped_once_each_and_equal_one_by_one_evaluation(monkeypatch):
    """12 bound configurations x 3 members, interleaved: one call per structure (SMILE of any tau is one: tau is a
    stacked buffer; MINE's moving average, the classifier's prior ratio and the learned baselines are stacked too),
    each member's output equal to its bound's alone, in member order, and the gradient of the summed loss reaches
    every member's scores."""
    bounds = [make() for _ in range(3) for make in MAKERS]  # interleaved: member order != stack order
    stack = BoundStack(bounds, [None] * len(bounds))
    assert len(stack.objectives) == len(MAKERS) - 2  # the three SMILE taus share one stack
    calls = []
    original = Stack.vmap
    monkeypatch.setattr(Stack, "vmap", lambda self, *a, **k: calls.append(self.num_members) or original(self, *a, **k))
    torch.manual_seed(0)
    scores = torch.randn(len(bounds), 16, 16, requires_grad=True)
    joint, marginal = matrix_to_pairs(scores)
    result = stack(joint, marginal)
    assert sorted(calls) == sorted([3] * (len(MAKERS) - 3) + [9])
    fresh = [make() for _ in range(3) for make in MAKERS]
    for k, bound in enumerate(fresh):
        alone = bound(PairScores.from_matrix(scores[k]))
        for ours, theirs in (
            (result.loss[k], alone.loss),
            (result.estimate[k], alone.mi),
            (result.first_term[k], alone.first_term),
            (result.second_term[k], alone.second_term),
        ):
            torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
        for name, value in alone.extras.items():
            torch.testing.assert_close(result.extras[name][k], value.float(), rtol=1e-6, atol=1e-6)
    assert bool(result.loss_finite.all()) and bool(result.report_finite.all())
    result.loss.sum().backward()
    assert torch.isfinite(scores.grad).all() and (scores.grad.abs().flatten(1).sum(1) > 0).all()


def test_stateful_members_keep_their_own_state():
    """Three MINE members on different scores: each member's moving average is its own (stacked buffer), as
    three standalone MINE bounds would keep it."""
    bounds = [MINE(ema_rate=0.5) for _ in range(3)]
    stack = BoundStack(bounds, [None] * 3)
    alone = [MINE(ema_rate=0.5) for _ in range(3)]
    for step in range(4):
        torch.manual_seed(step)
        scores = torch.randn(3, 8, 8) * (1 + torch.arange(3.0)).view(3, 1, 1)
        result = stack(*matrix_to_pairs(scores))
        for k in range(3):
            out = alone[k](PairScores.from_matrix(scores[k]))
            torch.testing.assert_close(result.extras["log_partition_ema"][k], out.extras["log_partition_ema"])
    for k in range(3):
        torch.testing.assert_close(stack.training_bound(k).log_partition_ema, alone[k].log_partition_ema)


def test_separate_estimators_report_and_the_training_bound_trains():
    bounds = [JS(), JS(), NWJ()]
    estimators = [NWJ(), None, DV()]
    stack = BoundStack(bounds, estimators)
    scores = torch.randn(3, 6, 6)
    result = stack(*matrix_to_pairs(scores))
    for k, (bound, estimator) in enumerate(zip(bounds, estimators)):
        pairs = PairScores.from_matrix(scores[k])
        trained, reported = bound(pairs), (estimator or bound)(pairs)
        torch.testing.assert_close(result.loss[k], trained.loss)
        torch.testing.assert_close(result.train_first_term[k], trained.first_term)
        torch.testing.assert_close(result.estimate[k], reported.mi)
        torch.testing.assert_close(result.first_term[k], reported.first_term)


def test_non_finite_members_are_flagged_alone():
    scores = torch.zeros(4, 8, 8)
    scores[2] = 1e4  # NWJ's exponential overflows for member 2 only
    result = BoundStack([NWJ() for _ in range(4)], [None] * 4)(*matrix_to_pairs(scores))
    assert result.loss_finite.tolist() == [True, True, False, True]
    assert result.report_finite.tolist() == [True, True, False, True]


def test_module_exports():
    assert bound_stack.__all__ == ["BoundStack", "StackedOutputs", "ReportingGroup"]
