"""What a classical (non-neural) MI baseline returns, and the input conversion they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
from torch import Tensor

__all__ = ["BaselineEstimate", "ArrayLike", "as_paired_arrays"]

ArrayLike = Union[Tensor, np.ndarray]


@dataclass(frozen=True)
class BaselineEstimate:
    """An MI estimate in nats and the per-pair contributions it averages.

    Attributes:
        mi: the estimate of ``I(X; Y)``.
        pmi: ``[n]`` float64 per-pair values whose mean is ``mi`` (KSG: the local estimates; CCA: the PMI of the
            fitted Gaussian), comparable with the exact PMI through :mod:`pdlightning.metrics`.
    """

    mi: float
    pmi: Tensor


def as_paired_arrays(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """``x``, ``y`` as float64 ``[n, d]`` arrays with the same ``n`` (1-d inputs become one column)."""
    arrays = []
    for name, value in (("x", x), ("y", y)):
        array = value.detach().cpu().double().numpy() if isinstance(value, Tensor) else np.asarray(value, np.float64)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"{name} must have shape [n] or [n, d], got {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must be finite")
        arrays.append(array)
    if arrays[0].shape[0] != arrays[1].shape[0]:
        raise ValueError(
            f"x and y must hold the same number of pairs, got {arrays[0].shape[0]} and {arrays[1].shape[0]}"
        )
    return arrays[0], arrays[1]
