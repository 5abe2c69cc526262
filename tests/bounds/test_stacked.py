"""Many bounds on stacked scores (an ensemble's members): one vmapped call per group of identical
stateless bounds gives exactly what each bound gives on its own slice."""

import torch

from pdlightning.bounds import (
    DV,
    JS,
    MINE,
    NWJ,
    SMILE,
    TUBA,
    DensityRatioFitting,
    InfoNCE,
    PairScores,
    ProbabilisticClassifier,
    Regularized,
    stacked,
)
from pdlightning.bounds.stacked import evaluate_stacked, matrix_to_pairs


def test_matrix_to_pairs_is_from_matrix_per_member():
    scores = torch.randn(3, 5, 5)
    joint, marginal = matrix_to_pairs(scores)
    for k in range(3):
        pairs = PairScores.from_matrix(scores[k])
        assert torch.equal(joint[k], pairs.joint) and torch.equal(marginal[k], pairs.marginal)


def test_groups_are_vmapped_and_equal_one_by_one_evaluation():
    makers = [
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
    ]
    bounds = [make() for make in makers for _ in range(3)]  # three members of each
    torch.manual_seed(0)
    scores = torch.randn(len(bounds), 16, 16, requires_grad=True)
    joint, marginal = matrix_to_pairs(scores)
    calls = []
    original = stacked._vmapped
    stacked._vmapped = lambda bound, j, m: calls.append(type(bound).__name__) or original(bound, j, m)
    try:
        result = evaluate_stacked(bounds, joint, marginal)
    finally:
        stacked._vmapped = original
    # the 8 stateless configurations ran as 8 vmapped groups; MINE, the classifier and TUBA one by one
    assert len(calls) == 8 and not stacked._NOT_VMAPPABLE
    fresh = [make() for make in makers for _ in range(3)]
    for k, (bound, output) in enumerate(zip(fresh, result.outputs)):
        alone = bound(PairScores.from_matrix(scores[k]))
        for name in ("loss", "mi", "first_term", "second_term"):
            torch.testing.assert_close(getattr(output, name), getattr(alone, name), rtol=1e-6, atol=1e-6)
        assert set(output.extras) == set(alone.extras)
    assert bool(result.loss_finite.all()) and bool(result.report_finite.all())
    total = torch.stack([o.loss for o in result.outputs]).sum()
    total.backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0


def test_non_finite_members_are_flagged_alone():
    scores = torch.zeros(4, 8, 8)
    scores[2] = 1e4  # NWJ's exponential overflows for member 2 only
    joint, marginal = matrix_to_pairs(scores)
    result = evaluate_stacked([NWJ() for _ in range(4)], joint, marginal)
    assert result.loss_finite.tolist() == [True, True, False, True]
    assert result.report_finite.tolist() == [True, True, False, True]
