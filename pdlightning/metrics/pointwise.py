"""Pointwise accuracy of an estimated PMI against the exact PMI, as torchmetrics ``Metric``s (DDP-safe).

``update(preds, target)`` takes estimated and exact ``log p(x, y) / (p(x) p(y))`` of the same pairs (any shape,
flattened): joint pairs, or product-of-marginals pairs (e.g. the off-diagonal of
:meth:`pdlightning.tasks.Task.pmi_matrix`). With the error ``e = preds - target``:

- :class:`PMIRootMeanSquaredError`: ``sqrt(mean e²)``; ``centred=True`` gives ``sqrt(mean e² - (mean e)²)``,
  the RMSE after the best constant shift of the estimate.
- :class:`PMIMeanAbsoluteError`: ``mean |e|``.
- :class:`PlugInMIBias`: the bias of the plug-in MI estimate ``mean preds`` over joint pairs: ``mean e`` (against
  the exact PMI of the same pairs, so free of the sample's own noise), or ``mean preds - true_mi`` if given.
- :class:`PMISpearmanCorrCoef`: Spearman's rank correlation (Pearson correlation of average-tie ranks).
- :class:`LogMeanRatio`: ``log mean exp(preds)``; over product-of-marginals pairs, the calibration of the estimated
  ratio: ``E_{p(x)p(y)}[r] = 1``, so a normalised estimate gives 0 (up to sampling noise), whatever the target.

Which statistics stay meaningful when an estimator's PMI is defined only up to an additive constant (the
optimal critic of a DV-type bound is ``PMI + c`` for an arbitrary constant ``c``): the rank correlation and the
centred RMSE are invariant to the shift; the plain RMSE, MAE and plug-in bias are not (they count ``c`` as
error; the bias *is* ``c``). InfoNCE's optimal critic is ``PMI + c(x)`` for an arbitrary *function* ``c``, which
no pooled statistic removes: compare such critics per row (fixed ``x``) or not at all.

Pairs outside the joint support have exact PMI ``-inf`` (e.g. the additive-noise tasks' product pairs): the
error metrics skip pairs whose ``target`` is not finite and count them in ``n_skipped``; the rank correlation
keeps them (they tie at the lowest rank). States are float64 sums, reduced by summation across processes.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "PMIRootMeanSquaredError",
    "PMIMeanAbsoluteError",
    "PlugInMIBias",
    "PMISpearmanCorrCoef",
    "LogMeanRatio",
    "pointwise_pmi_metrics",
    "average_ranks",
]


def _flatten_pair(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if preds.shape != target.shape:
        raise ValueError(
            f"preds and target must have the same shape, got {tuple(preds.shape)} and {tuple(target.shape)}"
        )
    if not (preds.is_floating_point() and target.is_floating_point()):
        raise TypeError(f"preds and target must be floating point, got {preds.dtype} and {target.dtype}")
    return preds.detach().reshape(-1).double(), target.detach().reshape(-1).double()


class _PMIErrorMetric(Metric):
    """Running float64 sums of ``e``, ``e²``, ``|e|`` over pairs with a finite exact PMI."""

    is_differentiable = False
    higher_is_better: Optional[bool] = False
    full_state_update = False
    # states (add_state)
    sum_error: Tensor
    sum_squared_error: Tensor
    sum_abs_error: Tensor
    count: Tensor
    n_skipped: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for state in ("sum_error", "sum_squared_error", "sum_abs_error", "count", "n_skipped"):
            self.add_state(state, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _flatten_pair(preds, target)
        finite = torch.isfinite(target)
        error = preds[finite] - target[finite]
        self.sum_error += error.sum()
        self.sum_squared_error += (error * error).sum()
        self.sum_abs_error += error.abs().sum()
        self.count += finite.sum()
        self.n_skipped += (~finite).sum()

    def _mean(self, total: Tensor) -> Tensor:
        return (
            total / self.count
            if self.count > 0
            else torch.tensor(float("nan"), dtype=torch.float64, device=total.device)
        )


class PMIRootMeanSquaredError(_PMIErrorMetric):
    """``sqrt(mean (preds - target)²)`` over pairs with a finite exact PMI.

    Args:
        centred: subtract the mean error first (``sqrt(Var e)``): invariant to a constant shift of the
            estimated PMI, so defined for estimators whose PMI is known only up to a constant.
    """

    def __init__(self, centred: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.centred = centred

    def compute(self) -> Tensor:
        mean_square = self._mean(self.sum_squared_error)
        if self.centred:
            mean_square = (mean_square - self._mean(self.sum_error) ** 2).clamp_min(0.0)
        return mean_square.sqrt()


class PMIMeanAbsoluteError(_PMIErrorMetric):
    """``mean |preds - target|`` over pairs with a finite exact PMI."""

    def compute(self) -> Tensor:
        return self._mean(self.sum_abs_error)


class PlugInMIBias(_PMIErrorMetric):
    """Bias of the plug-in MI estimate ``mean preds`` over joint pairs.

    Args:
        true_mi: if given, ``mean preds - true_mi`` (includes the sample's deviation of the exact PMI's mean
            from the MI); if None, ``mean (preds - target)``: the part of the error due to the PMI estimate.
    """

    higher_is_better = None
    sum_preds: Tensor  # a state (add_state)

    def __init__(self, true_mi: Optional[float] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.true_mi = true_mi
        self.add_state("sum_preds", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds, target)
        flat_preds, flat_target = _flatten_pair(preds, target)
        self.sum_preds += flat_preds[torch.isfinite(flat_target)].sum()

    def compute(self) -> Tensor:
        if self.true_mi is None:
            return self._mean(self.sum_error)
        return self._mean(self.sum_preds) - self.true_mi


def average_ranks(values: Tensor) -> Tensor:
    """Ranks ``1..n`` of a 1-d tensor in float64, ties sharing the mean of their ranks (``-inf`` ranks lowest).

    Exact for up to ``2^26`` elements (sums of ranks stay below ``2^53``); unlike an int32 rank sum it does not
    overflow on large tie groups.
    """
    n = values.numel()
    sorted_values, order = torch.sort(values)
    new_group = torch.ones(n, dtype=torch.bool, device=values.device)
    new_group[1:] = sorted_values[1:] != sorted_values[:-1]
    group = torch.cumsum(new_group, 0) - 1
    positions = torch.arange(1, n + 1, dtype=torch.float64, device=values.device)
    n_groups = int(group[-1].item()) + 1 if n else 0
    sums = torch.zeros(n_groups, dtype=torch.float64, device=values.device).scatter_add_(0, group, positions)
    counts = torch.bincount(group, minlength=n_groups).to(torch.float64)
    ranks = torch.empty(n, dtype=torch.float64, device=values.device)
    ranks[order] = (sums / counts)[group]
    return ranks


class PMISpearmanCorrCoef(Metric):
    """Spearman's rank correlation between estimated and exact PMI (keeps every pair, ``-inf`` included).

    Stores every pair (float64, gathered across processes): for the ``n(n - 1)`` product pairs of a large sample
    pass a subset (e.g. a few off-diagonals of the PMI matrix). NaN if either input holds a NaN or is constant.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    # states (add_state): lists of per-update tensors (concatenated across processes when synced)
    preds: list[Tensor]
    target: list[Tensor]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor) -> None:
        preds, target = _flatten_pair(preds, target)
        self.preds.append(preds)
        self.target.append(target)

    def compute(self) -> Tensor:
        preds, target = dim_zero_cat(self.preds), dim_zero_cat(self.target)
        if preds.numel() < 2 or torch.isnan(preds).any() or torch.isnan(target).any():
            return torch.tensor(float("nan"), dtype=torch.float64, device=preds.device)
        rank_p, rank_t = average_ranks(preds), average_ranks(target)
        rank_p, rank_t = rank_p - rank_p.mean(), rank_t - rank_t.mean()
        return (rank_p * rank_t).sum() / torch.sqrt((rank_p * rank_p).sum() * (rank_t * rank_t).sum())


class LogMeanRatio(Metric):
    """``log mean_i exp(preds_i)`` over all updates (``target`` is not used; it is accepted for a uniform ``update``).

    Over product-of-marginals pairs ``(x, y) ~ p(x) p(y)`` it measures how far the estimated ratio ``r_hat = e^preds``
    is from normalised: ``E_{p(x)p(y)}[r] = 1`` for the true ratio, so a calibrated estimate gives 0 up to sampling
    noise; ``> 0`` means the estimate over-states the dependence of independent pairs, ``< 0`` under-states it.
    Computed as a log-sum-exp of float64 per-update log-sum-exps (DDP: gathered).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False
    # states (add_state)
    log_sums: list[Tensor]
    count: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("log_sums", default=[], dist_reduce_fx="cat")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Optional[Tensor] = None) -> None:
        flat = preds.detach().reshape(-1).double()
        if flat.numel():
            self.log_sums.append(torch.logsumexp(flat, dim=0).reshape(1))
            self.count += flat.numel()

    def compute(self) -> Tensor:
        if not self.log_sums or self.count == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.count.device)
        return torch.logsumexp(dim_zero_cat(self.log_sums), dim=0) - torch.log(self.count)


def pointwise_pmi_metrics(
    prefix: str = "", true_mi: Optional[float] = None, up_to_constant: bool = False
) -> MetricCollection:
    """The pointwise metrics as one collection: ``rmse``, ``centred_rmse``, ``mae``, ``plug_in_bias``, ``spearman``.

    Args:
        prefix: prepended to each key (e.g. ``"val/pmi_joint_"``).
        true_mi: passed to :class:`PlugInMIBias`.
        up_to_constant: the estimator's PMI is defined only up to a constant: keep only the shift-invariant
            ``centred_rmse`` and ``spearman``.
    """
    metrics: dict[str, Metric | MetricCollection] = {
        "centred_rmse": PMIRootMeanSquaredError(centred=True),
        "spearman": PMISpearmanCorrCoef(),
    }
    if not up_to_constant:
        metrics.update(rmse=PMIRootMeanSquaredError(), mae=PMIMeanAbsoluteError(), plug_in_bias=PlugInMIBias(true_mi))
    return MetricCollection(metrics, prefix=prefix)
