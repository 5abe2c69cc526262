"""Uncertainty of a held-out MI estimate: standard error and a 95% interval over independent units.

The unit is what the estimate averages over independently:

- ``"pair"``: estimators whose MI is the plug-in mean of a pointwise ``log r_hat`` that depends on the
  pair alone (the PD estimators, :attr:`~pdlightning.bounds.Bound.has_partition_term` false and no
  :attr:`~pdlightning.bounds.Bound.pmi_normalizer`): every held-out joint pair is one unit.
- ``"batch"``: bounds whose value needs in-batch negatives (a log-partition, InfoNCE's row normalisers,
  NWJ's exponential average over the batch's marginal pairs): a held-out batch is the smallest
  independent unit, so the interval is over the per-batch estimates (more held-out batches, a
  narrower interval).
- ``"seed"``: replicates (ensemble members of one estimator trained from different seeds on
  different streams): the spread of the trained estimators, not only of the held-out sample.

The interval is a percentile bootstrap of the mean over units (``scipy.stats.bootstrap``, 2,000
resamples, seeded, so a result file is reproducible); its standard error is the bootstrap
distribution's. With few units (fewer than 10: seeds, typically) the bootstrap under-covers, so the
interval is Student's ``t`` there. One unit gives no interval: ``n = 1`` is said, nothing invented.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np

__all__ = ["Interval", "mean_interval", "Unit", "count_of"]

Unit = Literal["pair", "batch", "seed"]
#: below this many units the interval is Student's t instead of a bootstrap.
MIN_BOOTSTRAP_UNITS = 10


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` units with its standard error and ``confidence`` interval ``[low, high]``
    (``stderr``, ``low``, ``high`` are NaN when ``n == 1``)."""

    estimate: float
    stderr: float
    low: float
    high: float
    n: int
    unit: str
    method: str
    confidence: float = 0.95

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("stderr", "low", "high"):
            if not math.isfinite(data[key]):
                data[key] = None  # JSON has no NaN
        return data

    @property
    def count(self) -> str:
        """``"512 pairs"``, ``"8 batches"``, ``"1 seed"``."""
        return count_of(self.n, self.unit)

    def describe(self) -> str:
        if self.n < 2:
            return f"{self.estimate:.3f} (n = {self.count}: no interval)"
        interval = f"[{self.low:.3f}, {self.high:.3f}]"
        return f"{self.estimate:.3f} ± {self.stderr:.3f} {interval} (n = {self.count}, {self.method})"


def count_of(n: int, unit: str) -> str:
    """``n`` units in words: ``"8 batches"``, ``"1 pair"``."""
    plural = {"batch": "batches"}.get(unit, unit + "s")
    return f"{n} {unit if n == 1 else plural}"


def mean_interval(
    values: Sequence[float] | np.ndarray, unit: Unit, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """The mean of ``values`` (one per unit) with its standard error and interval (module docstring)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size == 0:
        raise ValueError("values: expected at least one unit's estimate")
    if not np.isfinite(data).all():
        raise ValueError(f"values: {int((~np.isfinite(data)).sum())} of {data.size} {unit} estimates are not finite")
    estimate = float(data.mean())
    n = int(data.size)
    if n == 1:
        nan = float("nan")
        return Interval(estimate, nan, nan, nan, 1, unit, "n = 1: no interval", confidence)
    if n < MIN_BOOTSTRAP_UNITS or float(data.std()) == 0.0:
        from scipy import stats

        stderr = float(data.std(ddof=1) / math.sqrt(n))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * stderr
        return Interval(
            estimate, stderr, estimate - half, estimate + half, n, unit, f"Student t, {n - 1} dof", confidence
        )
    from scipy import stats

    result = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(
        estimate,
        float(result.standard_error),
        float(result.confidence_interval.low),
        float(result.confidence_interval.high),
        n,
        unit,
        f"percentile bootstrap, {resamples} resamples",
        confidence,
    )


def seeds_and_held_out_interval(
    estimates: Sequence[float], held_out: Sequence[Interval], confidence: float = 0.95
) -> Interval:
    """The mean over ``S`` seeds of one estimator, each evaluated on the **same** held-out sample, with an interval
    for both sources of error: training (the seeds' spread, reduced by averaging) and the held-out sample (each
    seed's own ``stderr`` over held-out units, shared by the seeds, so *not* reduced by averaging them):

        ``se² = s_seeds² / S + mean_k se_k²``,  interval ``mean ± t_ν se``,

    with ``ν`` the Welch–Satterthwaite degrees of freedom of the two terms. An interval over the seeds alone would
    leave out the held-out sample's error (it then covers the truth less often than it says when the held-out
    sample is small); one over held-out units alone would leave out training's. A seed
    evaluated on one held-out unit has no ``stderr``: that term is then 0, and ``method`` says so."""
    from scipy import stats

    values = np.asarray(estimates, dtype=np.float64)
    seeds = int(values.size)
    if seeds < 2 or len(held_out) != seeds:
        raise ValueError("estimates: expected one estimate and one held-out interval per seed, at least 2 seeds")
    units = min(iv.n for iv in held_out)
    between = float(values.var(ddof=1)) / seeds
    within = float(np.mean([iv.stderr**2 if iv.n > 1 and math.isfinite(iv.stderr) else 0.0 for iv in held_out]))
    stderr = math.sqrt(between + within)
    denominator = between**2 / (seeds - 1) + (within**2 / (units - 1) if units > 1 else 0.0)
    dof = (between + within) ** 2 / denominator if denominator > 0 else float(seeds - 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * stderr
    estimate = float(values.mean())
    unit = held_out[0].unit
    unknown = "" if units > 1 else f"; the held-out error is unknown ({count_of(units, unit)}): seeds' spread only"
    return Interval(
        estimate,
        stderr,
        estimate - half,
        estimate + half,
        seeds,
        "seed",
        f"Student t over {seeds} seeds and {count_of(units, unit)} held out, {dof:.0f} dof (Welch-Satterthwaite)"
        + unknown,
        confidence,
    )
