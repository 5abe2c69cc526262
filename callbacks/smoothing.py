"""Exponentially weighted mean, the smoothing of the papers' MI plots (EWM with span 200).

``alpha = 2 / (span + 1)`` and the adjusted form of ``pandas.Series.ewm(span).mean()``:
``y_t = sum_{i<=t} (1-alpha)^(t-i) x_i / sum_{i<=t} (1-alpha)^(t-i)``, so early values are not
pulled towards zero.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["ewm"]


def ewm(values: Sequence[float] | np.ndarray, span: float = 200.0) -> np.ndarray:
    """Adjusted exponentially weighted mean of ``values`` with ``alpha = 2 / (span + 1)``.

    Non-finite values are skipped (they neither update nor reset the average); the output keeps the
    input's length.
    """
    if not span >= 1:
        raise ValueError(f"span: expected a value >= 1 (alpha = 2 / (span + 1)), got {span}")
    x = np.asarray(values, dtype=np.float64)
    decay = 1.0 - 2.0 / (span + 1.0)
    out = np.empty_like(x)
    numerator = denominator = 0.0
    for t, value in enumerate(x):
        if np.isfinite(value):
            numerator = decay * numerator + value
            denominator = decay * denominator + 1.0
        out[t] = numerator / denominator if denominator > 0 else np.nan
    return out
