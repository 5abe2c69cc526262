"""Labelled images as MI benchmarks with a known answer (ReMINE, Choi & Lee UAI 2022, §5.1).

- SLB (Theorem 7): ``(x, y)`` = (image, one-hot label); ``I(X; Y) = H(Y)``.
- CLB (Theorem 8): ``(x1, x2)`` = two images of the same class; ``I(X1; X2) = H(Y)``.

``H(Y)`` is the entropy of the training labels in nats (``log 10`` for balanced 10 classes). Batches
carry it as ``mi`` (so the module logs the bias) and the class as ``label`` (for test accuracy).

Sources: the rows of :data:`~.image_sources.IMAGE_SOURCES` (``mnist``, ``fashion_mnist``, ``digits``,
``cifar10``, ``cifar100``), split by :func:`~.image_sources.image_splits` (digits: 300 seeded test
images). :class:`LabeledImagesDataModule` is the base of every datamodule that turns the train / test
images of one source into pairs (also :class:`~.self_consistency.SelfConsistencyDataModule`).
"""

from __future__ import annotations

from typing import Optional

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .batch import check_batch_sizes
from .image_sources import IMAGE_SOURCES, ImageTableRow, SourceName, image_source, image_splits
from .splits import subset

__all__ = [
    "IMAGE_SOURCES",
    "label_entropy",
    "LabeledImagesDataModule",
    "SupervisedImagesDataModule",
    "SameClassPairsDataModule",
]


def label_entropy(labels: np.ndarray | Tensor) -> float:
    """Empirical ``H(Y) = -sum_c p_c log p_c`` in nats."""
    counts = np.bincount(np.asarray(labels))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


class _Images(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, mi: float) -> None:
        self.images = torch.as_tensor(images)
        self.labels = torch.as_tensor(labels)
        self.num_classes, self.mi = num_classes, torch.tensor(mi, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.labels)


class _Supervised(_Images):
    def __getitem__(self, i: int) -> dict[str, Tensor]:
        label = self.labels[i]
        onehot = torch.nn.functional.one_hot(label, self.num_classes).float()
        return {"x": self.images[i], "y": onehot, "label": label, "mi": self.mi}


class _SameClassPairs(_Images):
    """Pairs ``(x_i, x_j)`` with ``j != i`` of the same class: drawn afresh on every access with
    the global torch RNG (training), or fixed once with a seed (evaluation)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, num_classes: int, mi: float, fixed_seed: Optional[int] = None
    ) -> None:
        super().__init__(images, labels, num_classes, mi)
        self.members = [torch.nonzero(self.labels == c).flatten() for c in range(num_classes)]
        small = [c for c, m in enumerate(self.members) if 0 < len(m) < 2]
        if small:
            raise ValueError(f"labels: classes {small} have a single image, so no same-class partner")
        self.partners: Optional[Tensor] = None
        if fixed_seed is not None:
            generator = torch.Generator().manual_seed(fixed_seed)
            self.partners = torch.tensor([self._draw(i, generator) for i in range(len(self.labels))])

    def _draw(self, i: int, generator: Optional[torch.Generator] = None) -> int:
        members = self.members[int(self.labels[i])]
        k = int(torch.randint(len(members) - 1, (1,), generator=generator))
        j = int(members[k])
        return int(members[-1]) if j == i else j  # skip i: its slot takes the last member

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        j = int(self.partners[i]) if self.partners is not None else self._draw(i)
        return {"x": self.images[i], "y": self.images[j], "label": self.labels[i], "mi": self.mi}


class LabeledImagesDataModule(ImageTableRow, L.LightningDataModule):
    """Base: the train / test images of one source (optionally seeded subsets), served as the pairs
    that :meth:`pairs` builds. Training batches are shuffled; every batch drops the last partial
    one so each MI estimate sees the same number of negatives.

    Args:
        source: image source, a key of ``IMAGE_SOURCES`` (``mnist``, ``fashion_mnist``, ``digits``,
            ``cifar10``, ``cifar100``).
        batch_size, eval_batch_size: pairs per training / test batch.
        num_train, num_test: optional seeded subsets (fast runs; subset seeds ``seed`` and ``seed + 1``).
        root: data folder (CIFAR: default ``data``; Fashion-MNIST if not in the Debian location).
        seed: seed of the subsets and of the digits split.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        source: SourceName = "mnist",
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        num_train: Optional[int] = None,
        num_test: Optional[int] = None,
        root: Optional[str] = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.table = image_source(source)
        batch_size, eval_batch_size = check_batch_sizes(batch_size, eval_batch_size)
        for name, value in (("num_train", num_train), ("num_test", num_test)):
            if value is not None and not (isinstance(value, int) and value >= eval_batch_size and value >= batch_size):
                raise ValueError(f"{name}: expected None or at least one batch of images, got {value!r}")
        self.source, self.root, self.seed, self.num_workers = source, root, seed, num_workers
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_train, self.num_test = num_train, num_test
        self.train_images: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.datasets: dict[str, Dataset] = {}
        self.mi = float("nan")

    def pairs(self, images: np.ndarray, labels: np.ndarray, split: str, offset: int) -> Dataset:
        """The dataset of ``split`` (``offset`` 0 = train, 1 = test) built from its images and labels."""
        raise NotImplementedError

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        splits = image_splits(self.source, self.root, self.seed)
        for offset, (split, size) in enumerate((("train", self.num_train), ("test", self.num_test))):
            images, labels = subset(splits[split], size, self.seed + offset)
            splits[split] = images, labels
        self.train_images = splits["train"]
        self.mi = label_entropy(splits["train"][1])
        self.datasets = {
            split: self.pairs(*splits[split], split, offset) for offset, split in enumerate(("train", "test"))
        }

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["train"],
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
        )

    def test_dataloader(self) -> DataLoader:
        return DataLoader(
            self.datasets["test"],
            batch_size=self.eval_batch_size,
            shuffle=False,
            drop_last=True,
            num_workers=self.num_workers,
        )

    def reference_dataloader(self) -> DataLoader:
        """The training images in order with their labels (not pairs): the 1-NN reference set."""
        self.setup()
        assert self.train_images is not None  # set by setup
        images, labels = self.train_images
        data = torch.utils.data.TensorDataset(torch.as_tensor(images), torch.as_tensor(labels))
        return DataLoader(data, batch_size=max(self.eval_batch_size, 256), shuffle=False)


class SupervisedImagesDataModule(LabeledImagesDataModule):
    """SLB pairs: ``x`` = image ``[C, H, W]``, ``y`` = one-hot label ``[num_classes]``,
    ``mi = H(Y)``. With ``T(x, y) = f(x) . y`` InfoNCE is softmax cross-entropy (ReMINE §5.1).
    Arguments: :class:`LabeledImagesDataModule`."""

    def pairs(self, images: np.ndarray, labels: np.ndarray, split: str, offset: int) -> Dataset:
        return _Supervised(images, labels, self.num_classes, self.mi)


class SameClassPairsDataModule(LabeledImagesDataModule):
    """CLB pairs: ``x`` and ``y`` are two different images of the same class, ``mi = H(Y)``.

    Training partners are redrawn on every access (seed the run with ``seed_everything``); test
    partners are fixed with ``seed``. Arguments: :class:`LabeledImagesDataModule`.
    """

    def pairs(self, images: np.ndarray, labels: np.ndarray, split: str, offset: int) -> Dataset:
        return _SameClassPairs(images, labels, self.num_classes, self.mi, self.seed if split == "test" else None)
