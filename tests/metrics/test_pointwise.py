"""Pointwise PMI metrics against direct numpy/scipy formulas, accumulation and merging (the DDP reduction)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from pdlightning.metrics import (
    LogMeanRatio,
    PlugInMIBias,
    PMIMeanAbsoluteError,
    PMIRootMeanSquaredError,
    PMISpearmanCorrCoef,
    average_ranks,
    pointwise_pmi_metrics,
)
from pdlightning.tasks import get_task


def pairs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.randn(n, generator=generator, dtype=torch.float64)
    return target + 0.3 * torch.randn(n, generator=generator, dtype=torch.float64) + 0.1, target


def feed(metric, chunks):
    for preds, target in chunks:
        metric.update(preds, target)
    return metric.compute().item()


def test_error_metrics_match_numpy_over_several_batches():
    preds, target = pairs(1000, 0)
    chunks = list(zip(preds.split(300), target.split(300)))
    error = (preds - target).numpy()
    assert feed(PMIRootMeanSquaredError(), chunks) == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-12)
    assert feed(PMIRootMeanSquaredError(centred=True), chunks) == pytest.approx(error.std(), rel=1e-10)
    assert feed(PMIMeanAbsoluteError(), chunks) == pytest.approx(np.abs(error).mean(), rel=1e-12)
    assert feed(PlugInMIBias(), chunks) == pytest.approx(error.mean(), rel=1e-10)
    assert feed(PlugInMIBias(true_mi=0.5), chunks) == pytest.approx(preds.mean().item() - 0.5, rel=1e-10)
    assert feed(PMISpearmanCorrCoef(), chunks) == pytest.approx(stats.spearmanr(preds, target)[0], abs=1e-12)


def test_a_constant_shift_moves_only_the_shift_sensitive_metrics():
    """An estimator exact up to a constant c: RMSE = MAE = |c| = -bias, centred RMSE 0, Spearman 1."""
    task = get_task("multinormal-dense-3-3-0.5")
    sample = task.sample(2000, generator=0, dtype=torch.float64)
    shifted = sample.pmi - 0.7
    values = {
        key: value.item()
        for key, value in feed_collection(pointwise_pmi_metrics(true_mi=task.mi), shifted, sample.pmi).items()
    }
    assert values["rmse"] == pytest.approx(0.7) and values["mae"] == pytest.approx(0.7)
    assert values["plug_in_bias"] == pytest.approx(sample.pmi.mean().item() - 0.7 - task.mi)
    assert values["centred_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert values["spearman"] == pytest.approx(1.0)
    invariant = feed_collection(pointwise_pmi_metrics(prefix="val/", up_to_constant=True), shifted, sample.pmi)
    assert set(invariant) == {"val/centred_rmse", "val/spearman"}


def feed_collection(collection, preds, target):
    collection.update(preds, target)
    return collection.compute()


def test_pairs_outside_the_joint_support_are_skipped_by_errors_and_ranked_lowest():
    """Product pairs of the additive-noise task have exact PMI -inf where |y - x| > ε."""
    task = get_task("1v1-additive-0.1")
    sample = task.sample(300, generator=0, dtype=torch.float64)
    matrix = task.pmi_matrix(sample)
    off = matrix[~torch.eye(300, dtype=torch.bool)]
    outside = ~torch.isfinite(off)
    assert 0.5 < outside.double().mean().item() < 0.95
    estimate = torch.where(outside, torch.full_like(off, -5.0), off + 0.2)
    rmse = PMIRootMeanSquaredError()
    rmse.update(estimate, off)
    assert rmse.compute().item() == pytest.approx(0.2)
    assert rmse.n_skipped.item() == outside.sum().item() and rmse.count.item() == (~outside).sum().item()
    spearman = PMISpearmanCorrCoef()
    spearman.update(estimate, off)
    assert spearman.compute().item() == pytest.approx(stats.spearmanr(estimate.numpy(), off.numpy())[0], abs=1e-12)


def test_merged_states_equal_one_metric_over_all_pairs():
    """``merge_state`` applies each state's ``dist_reduce_fx``, the reduction DDP uses across processes."""
    preds, target = pairs(900, 1)
    for make in (
        PMIRootMeanSquaredError,
        lambda: PMIRootMeanSquaredError(centred=True),
        PMIMeanAbsoluteError,
        PlugInMIBias,
        PMISpearmanCorrCoef,
    ):
        first, second, whole = make(), make(), make()
        first.update(preds[:400], target[:400])
        second.update(preds[400:], target[400:])
        whole.update(preds, target)
        first.merge_state(second)
        assert first.compute().item() == pytest.approx(whole.compute().item(), rel=1e-12)


def test_average_ranks_match_scipy_on_large_tie_groups():
    """A tie group of 2e5 at ranks ~1e5 sums past 2^31: the float64 ranks stay exact."""
    generator = torch.Generator().manual_seed(2)
    values = torch.cat([torch.full((200_000,), -math.inf), torch.randn(100_000, generator=generator).round(decimals=1)])
    values = values[torch.randperm(values.numel(), generator=generator)]
    np.testing.assert_array_equal(average_ranks(values.double()).numpy(), stats.rankdata(values.numpy()))


def test_spearman_of_a_monotone_map_is_one_and_nan_inputs_give_nan():
    _, target = pairs(500, 3)
    metric = PMISpearmanCorrCoef()
    metric.update(torch.exp(target), target)
    assert metric.compute().item() == pytest.approx(1.0)
    metric.update(torch.tensor([math.nan]), torch.tensor([0.0]))
    assert math.isnan(metric.compute().item())


def test_bad_inputs_name_preds_and_target():
    with pytest.raises(ValueError, match="preds and target must have the same shape"):
        PMIRootMeanSquaredError().update(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="floating point"):
        PMISpearmanCorrCoef().update(torch.zeros(3, dtype=torch.long), torch.zeros(3))


def test_log_mean_ratio_is_the_log_mean_exp_over_all_updates_and_merges():
    """Against scipy's logsumexp; large values do not overflow; split updates and merged states agree."""
    preds = torch.cat([torch.randn(300, generator=torch.Generator().manual_seed(4)), torch.tensor([800.0, -math.inf])])
    expected = special.logsumexp(preds.numpy().astype(np.float64)) - math.log(preds.numel())
    first, second = LogMeanRatio(), LogMeanRatio()
    first.update(preds[:100])
    second.update(preds[100:], preds[100:])  # a target is accepted and ignored
    first.merge_state(second)
    assert first.compute().item() == pytest.approx(expected, rel=1e-12)
    assert math.isnan(LogMeanRatio().compute().item())


def test_log_mean_ratio_of_the_exact_pmi_over_product_pairs_is_zero():
    """E_{p(x)p(y)}[r] = 1: over independent pairs the exact ratio's log mean is 0 up to sampling noise."""
    task = get_task("multinormal-dense-3-3-0.5")
    sample = task.sample(4000, generator=7)
    product = task.pmi_of_latents(sample.latent_x, sample.latent_y.roll(1, dims=0))  # x_i with y_{i-1}
    metric = LogMeanRatio()
    metric.update(product)
    ratio = product.exp()
    assert abs(metric.compute().item()) < 4 * (ratio.std() / ratio.mean() / math.sqrt(ratio.numel())).item()
