"""Self-consistency tests of MI estimators on images (SMILE, Song & Ermon ICLR 2020, §4.2, §6.2).

``Y`` keeps the top ``t`` rows of an image (the rest set to zero, as their App. B.2); variables are
concatenated over the channel dimension. Settings, with what a consistent estimator gives:

- ``baseline``: ``x = X``, ``y = top_t(X)``; ``I(X; Y)`` non-decreasing in ``t`` (reference).
- ``independence``: ``x = X``, ``y = top_t(X')`` with ``X'`` an independent image; ``I = 0``.
- ``data_processing``: ``x = [X, X]``, ``y = [top_t(X), top_{t-3}(X)]``; ``I / I(X; Y) = 1``.
- ``additivity``: ``x = [X1, X2]``, ``y = [top_t(X1), top_t(X2)]``, independent images;
  ``I / I(X; Y) = 2``.

The independent partner ``X'`` / ``X2`` of image ``i`` is image ``perm[i]`` of the same split, a
derangement fixed by ``seed``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .labeled_images import LabeledImagesDataModule

__all__ = ["SETTINGS", "SelfConsistencyDataModule", "top_rows"]

SETTINGS = ("baseline", "independence", "data_processing", "additivity")
Setting = Literal["baseline", "independence", "data_processing", "additivity"]


def top_rows(images: Tensor, rows: int) -> Tensor:
    """Keep the top ``rows`` rows of ``[..., H, W]`` images and zero the rest."""
    out = images.clone()
    out[..., max(rows, 0) :, :] = 0
    return out


def _derangement(n: int, seed: int) -> np.ndarray:
    """A permutation with no fixed point (a cyclic shift of a random order)."""
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, 1)
    return perm


class _SelfConsistencyPairs(Dataset):
    def __init__(self, images: np.ndarray, setting: str, rows: int, rows_gap: int, seed: int) -> None:
        self.images = torch.as_tensor(images)
        self.setting, self.rows, self.rows_gap = setting, rows, rows_gap
        self.partner = torch.as_tensor(_derangement(len(images), seed))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        image, other = self.images[i], self.images[int(self.partner[i])]
        t = self.rows
        if self.setting == "baseline":
            x, y = image, top_rows(image, t)
        elif self.setting == "independence":
            x, y = image, top_rows(other, t)
        elif self.setting == "data_processing":
            x = torch.cat([image, image])
            y = torch.cat([top_rows(image, t), top_rows(image, t - self.rows_gap)])
        else:  # additivity
            x = torch.cat([image, other])
            y = torch.cat([top_rows(image, t), top_rows(other, t)])
        return {"x": x, "y": y}


class SelfConsistencyDataModule(LabeledImagesDataModule):
    """Image pairs of one self-consistency setting and one row count ``t``.

    Args:
        setting: ``baseline``, ``independence``, ``data_processing`` or ``additivity``.
        rows: ``t``, the rows of the image kept in ``y`` (0 .. image height).
        rows_gap: ``t1 - t2`` of the data-processing setting (3 in the paper).
        **kwargs: ``source``, ``batch_size``, ``eval_batch_size``, ``num_train``, ``num_test``, ``root``,
            ``seed``, ``num_workers`` of :class:`~.labeled_images.LabeledImagesDataModule`; ``seed``
            also fixes the independent partners (``seed`` train, ``seed + 1`` test).

    ``channels`` is the critic's input channels per variable: twice the images' own for
    ``data_processing`` and ``additivity`` (two stacked images), else the images' own.
    """

    def __init__(self, setting: Setting = "baseline", rows: int = 14, rows_gap: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if setting not in SETTINGS:
            raise ValueError(f"setting: expected one of {SETTINGS}, got {setting!r}")
        if not (isinstance(rows, int) and rows >= 0):
            raise ValueError(f"rows: expected a non-negative number of image rows, got {rows!r}")
        if rows > self.table.size:
            raise ValueError(f"rows: {rows} exceeds the image height {self.table.size} of {self.source}")
        if not (isinstance(rows_gap, int) and rows_gap >= 0):
            raise ValueError(f"rows_gap: expected a non-negative integer, got {rows_gap!r}")
        self.setting, self.rows, self.rows_gap = setting, rows, rows_gap

    @property
    def channels(self) -> int:
        stacked = self.setting in ("data_processing", "additivity")
        return self.table.channels * (2 if stacked else 1)

    def pairs(self, images: np.ndarray, labels: np.ndarray, split: str, offset: int) -> Dataset:
        return _SelfConsistencyPairs(images, self.setting, self.rows, self.rows_gap, self.seed + offset)
