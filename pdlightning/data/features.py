"""The user's feature arrays, checked and standardised before a critic sees them: one function,
:func:`prepare_features`, for every caller that takes arrays from a user (the paired-features datamodules,
``estimate_mi(x, y)``, an arrays datamodule).

Why it is careful about precision: training runs in float32 (largest finite value ``3.4e38``), but a user's
features can be float64 at any scale. Standardising after a cast to float32 loses them silently: features around
``1e30`` overflow in the variance (``1e60``) and become exactly 0 in every column, and features around ``1e-30``
are swamped by any constant added to the standard deviation. So:

- the statistics are computed in float64, per column, after dividing the column by its largest magnitude (so that
  no square overflows or underflows: any finite float64 column has finite statistics);
- the z-scores ``(x - mean) / std`` are computed in float64 and converted to float32 only when every value fits;
  a value that does not (a split far off the training split's scale) is refused, naming the array, its file, the
  column and the row;
- unstandardised features (``standardize: false``) must fit float32 as they are (a float64 value beyond float32's
  range is reported as such), and are refused at scales a critic cannot learn from: a critic's first layer starts
  with weights of about ``1/sqrt(d)`` (PyTorch's default initialisation) and an optimiser moves them by about the
  learning rate per step, so inputs of magnitude ``1e6`` give pre-activations no step can bring back, and a spread
  of ``1e-6`` is below what those weights resolve. Between the refusal limits and a factor of 1,000 inside them
  the data are used with a warning naming ``standardize``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

__all__ = [
    "FeatureScaling",
    "prepare_features",
    "check_features",
    "FLOAT32_MAX",
    "RAW_SCALE_LIMIT",
    "RAW_SPREAD_LIMIT",
]

#: the largest finite float32 (training's precision).
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: unstandardised features whose largest magnitude exceeds this are refused (a factor 1,000 less: a warning).
RAW_SCALE_LIMIT = 1e6
#: unstandardised, non-constant features whose standard deviation is below this are refused (x 1,000: a warning).
RAW_SPREAD_LIMIT = 1e-6
_WARN_FACTOR = 1e3
_STANDARDIZE_HINT = (
    "set data.init_args.standardize: true (z-scores with the training split's statistics, computed in float64) "
    "or rescale the file"
)


def _where(name: str, path: Optional[str]) -> str:
    """The message prefix naming the array: ``train_x: 'file.npy'`` (or ``x:`` for an in-memory array)."""
    return f"{name}: {path!r}" if path else f"{name}:"


def _first(mask: np.ndarray) -> tuple[int, int]:
    """``(row, column)`` of the first ``True`` of a 2-D mask, in row order."""
    row, column = np.argwhere(mask)[0]
    return int(row), int(column)


def check_features(values: Any, name: str, path: Optional[str] = None) -> np.ndarray:
    """``values`` as a float64 ``[n, d]`` array (a 1-D array becomes ``[n, 1]``) of finite numbers.

    Raises a ``ValueError`` naming ``name`` (and ``path``), and for non-finite values the first row and column
    holding one."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{_where(name, path)} holds {array.dtype} values; expected numbers, shape [n, d]")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        source = f" from {path!r}" if path else ""
        raise ValueError(f"{name}: expected a [n, d] feature array, got shape {array.shape}{source}")
    finite = np.isfinite(array)
    if not finite.all():
        rows = int((~finite.all(axis=1)).sum())
        row, column = _first(~finite)
        raise ValueError(
            f"{_where(name, path)} holds NaN or infinite values in {rows} row(s), the first at row {row}, "
            f"column {column}; expected finite numbers"
        )
    with np.errstate(over="ignore"):
        wide = array.astype(np.float64)
    if not np.isfinite(wide).all():  # a longdouble beyond float64
        row, column = _first(~np.isfinite(wide))
        raise ValueError(
            f"{_where(name, path)} column {column} holds {array[row, column]} at row {row}, beyond float64's range"
        )
    return wide


def _column_statistics(array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(largest magnitude, mean, standard deviation)`` of every column of a finite float64 array, computed on
    the column divided by its largest magnitude: no square overflows (``1e200``) or underflows (``1e-200``)."""
    peak = np.abs(array).max(axis=0)
    unit = np.where(peak > 0, peak, 1.0)
    scaled = array / unit
    return peak, scaled.mean(axis=0) * unit, scaled.std(axis=0) * unit


@dataclass(frozen=True)
class FeatureScaling:
    """The training split's per-column mean and scale (float64 ``[d]``), applied to every split.

    The scale is the standard deviation (ddof 0); a constant column is divided by its magnitude (or 1 if it is
    0), so that its training values become 0 and other splits' values their relative deviation from it."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray) -> "FeatureScaling":
        peak, mean, std = _column_statistics(np.asarray(train, dtype=np.float64))
        scale = np.where(std > 0, std, np.where(peak > 0, peak, 1.0))
        return cls(mean, scale)

    def apply(self, array: np.ndarray, name: str, path: Optional[str] = None) -> np.ndarray:
        """The float32 z-scores of ``array``; a value whose z-score float32 cannot hold is refused, naming the
        column and the row."""
        if array.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"{_where(name, path)} has {array.shape[1]} features; the training split has {self.mean.shape[0]}"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            z = (array - self.mean) / self.scale
        bad = ~np.isfinite(z) | (np.abs(z) > FLOAT32_MAX)
        if bad.any():
            row, column = _first(bad)
            raise ValueError(
                f"{_where(name, path)} column {column} holds {array[row, column]:.6g} at row {row}, "
                f"{abs(array[row, column] - self.mean[column]) / self.scale[column]:.3g} training standard "
                f"deviations ({self.scale[column]:.3g}) from the training mean ({self.mean[column]:.6g}): its "
                f"standardised value is beyond float32's range (±{FLOAT32_MAX:.2g}) that training uses; this split "
                "is not on the training split's scale (check the file)"
            )
        return z.astype(np.float32)


def _as_float32(array: np.ndarray, name: str, path: Optional[str]) -> np.ndarray:
    """``array`` in float32, refusing a value beyond float32's range (naming the column and the row)."""
    over = np.abs(array) > FLOAT32_MAX
    if over.any():
        row, column = _first(over)
        raise ValueError(
            f"{_where(name, path)} column {column} holds {array[row, column]:.6g} at row {row}, beyond float32's "
            f"range (±{FLOAT32_MAX:.2g}) that training uses; {_STANDARDIZE_HINT}"
        )
    return array.astype(np.float32)


def _check_raw_scale(array: np.ndarray, name: str, path: Optional[str]) -> None:
    """Unstandardised features: refuse columns at scales a critic cannot learn from, warn near them."""
    peak, _, std = _column_statistics(array)
    limits = (
        (True, RAW_SCALE_LIMIT, RAW_SPREAD_LIMIT),
        (False, RAW_SCALE_LIMIT / _WARN_FACTOR, RAW_SPREAD_LIMIT * _WARN_FACTOR),
    )
    for refuse, scale_limit, spread_limit in limits:
        large = np.flatnonzero(peak > scale_limit)
        tiny = np.flatnonzero((std > 0) & (std < spread_limit))
        if not (large.size or tiny.size):
            continue
        if large.size:
            column = int(large[np.argmax(peak[large])])
            what = f"values up to {peak[column]:.3g} in magnitude"
        else:
            column = int(tiny[np.argmin(std[tiny])])
            what = f"a standard deviation of {std[column]:.3g}"
        columns = sorted(set(large.tolist()) | set(tiny.tolist()))
        others = f" ({len(columns)} columns in all)" if len(columns) > 1 else ""
        message = (
            f"{_where(name, path)} column {column} has {what}{others}, unstandardised (standardize: false); a "
            "critic's first layer (weights ~1/sqrt(d), moved by about the learning rate per step)"
        )
        if refuse:
            raise ValueError(f"{message} cannot learn from features at this scale: {_STANDARDIZE_HINT}")
        warnings.warn(f"{message} learns poorly from features at this scale: {_STANDARDIZE_HINT}", stacklevel=3)
        return


def prepare_features(
    values: Any,
    name: str,
    path: Optional[str] = None,
    *,
    standardize: bool = True,
    scaling: Optional[FeatureScaling] = None,
) -> tuple[np.ndarray, Optional[FeatureScaling]]:
    """Validate a user's feature array and make it what a critic trains on: float32 ``[n, d]``.

    Args:
        values: the array (any numeric dtype; 1-D is one feature).
        name: what the user called it (a parameter: ``train_x``, ``x``); every error starts with it.
        path: the file it came from, named in every error.
        standardize: z-score every column (statistics in float64); ``False``: the values as they are, refused
            beyond float32's range or at scales a critic cannot learn from (see the module docstring).
        scaling: the training split's statistics to apply (other splits); ``None`` with ``standardize``: fit them
            on ``values`` (the training split).

    Returns:
        ``(float32 features, the scaling applied or None)``.
    """
    array = check_features(values, name, path)
    if not standardize:
        features = _as_float32(array, name, path)
        _check_raw_scale(array, name, path)
        return features, None
    scaling = scaling if scaling is not None else FeatureScaling.fit(array)
    return scaling.apply(array, name, path), scaling
