"""The table of image datasets, and the one function every image datamodule reads them through.

:data:`IMAGE_SOURCES` lists each dataset once: its reader (:mod:`.sources`), its images' channels,
side length, classes and per-channel normalisation, its torchvision class (for ``source:
torchvision``) and, for a source without a test split of its own, how many images are held out for
testing. :func:`image_splits` reads a dataset and cuts it by the one split rule of :mod:`.splits`:
a source's own ``test`` / ``val`` splits are kept; a missing ``test`` split (digits: 300 images) and,
on request, a missing ``val`` split (``val_size`` images) are held out of the training pool, seeded.
A new image dataset is one row of the table (plus a datamodule class name in :mod:`.images` if the
SSL datamodules should offer it by name).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Optional

import numpy as np

from . import sources
from .sources import Arrays
from .splits import split_rows

__all__ = [
    "ImageSource",
    "IMAGE_SOURCES",
    "SourceName",
    "ImageTableRow",
    "image_source",
    "image_splits",
    "as_image_array",
]

Origin = Literal["offline", "torchvision"]


@dataclass(frozen=True)
class ImageSource:
    """One image dataset.

    Attributes:
        name: the key users write (``source: mnist`` of the labelled-image datamodules).
        read: ``root -> {split: (images, labels)}`` with the source's own splits (``"all"`` when it has
            none); ``root=None`` reads the source's default place (Debian's Fashion-MNIST folder, ``data``).
        channels, size: images are ``[channels, size, size]``.
        num_classes: label classes.
        mean, std: per-channel normalisation of the default two-view pipeline.
        torchvision: the ``torchvision.datasets`` class of ``source: torchvision`` (None: offline only).
        test_size: images held out for testing when the source has no test split.
    """

    name: str
    read: Callable[[Optional[str]], dict[str, Arrays]]
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    torchvision: Optional[str] = None
    test_size: int = 0


IMAGE_SOURCES: dict[str, ImageSource] = {
    source.name: source
    for source in (
        ImageSource(
            "mnist",
            lambda root: {s: sources.load_mnist(s) for s in ("train", "val", "test")},
            1,
            28,
            10,
            (0.1307,),
            (0.3081,),
            torchvision="MNIST",
        ),
        ImageSource(
            "fashion_mnist",
            lambda root: {
                s: sources.load_fashion_mnist(s, root or sources.FASHION_MNIST_DIR) for s in ("train", "test")
            },
            1,
            28,
            10,
            (0.2860,),
            (0.3530,),
            torchvision="FashionMNIST",
        ),
        ImageSource("digits", lambda root: {"all": sources.load_digits()}, 1, 8, 10, (0.3,), (0.4,), test_size=300),
        ImageSource(
            "cifar10",
            lambda root: sources.load_cifar(root or "data", 10),
            3,
            32,
            10,
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
            torchvision="CIFAR10",
        ),
        ImageSource(
            "cifar100",
            lambda root: sources.load_cifar(root or "data", 100),
            3,
            32,
            100,
            (0.5071, 0.4865, 0.4409),
            (0.2673, 0.2564, 0.2762),
        ),
    )
}


if TYPE_CHECKING:
    SourceName = str
else:  # the table's keys as a Literal, so that the CLI lists and checks them: a new row is a new choice
    SourceName = Literal[tuple(IMAGE_SOURCES)]


def image_source(name: str) -> ImageSource:
    """The table row of ``name``, or a ``ValueError`` naming ``source`` and the choices."""
    if name not in IMAGE_SOURCES:
        raise ValueError(f"source: expected one of {tuple(IMAGE_SOURCES)}, got {name!r}")
    return IMAGE_SOURCES[name]


class ImageTableRow:
    """Mixin of a datamodule that reads the table row ``self.table``: its ``num_classes`` and
    ``channels`` (:class:`~.protocol.HasClasses`, :class:`~.protocol.HasChannels`), known before any file is read."""

    table: ImageSource

    @property
    def num_classes(self) -> int:
        return self.table.num_classes

    @property
    def channels(self) -> int:
        return self.table.channels


def as_image_array(images: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` or ``[N, H, W, C]`` (uint8 or float in [0, 1]) -> float32 ``[N, C, H, W]`` in [0, 1]."""
    images = np.asarray(images)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = images.transpose(0, 3, 1, 2)
    else:
        raise ValueError(f"images: expected [N, H, W] or [N, H, W, C], got {images.shape}")
    return np.ascontiguousarray(images, dtype=np.float32) / np.float32(scale)


@functools.lru_cache(maxsize=4)
def _read(name: str, root: Optional[str], origin: Origin, download: bool) -> dict[str, Arrays]:
    """A source's own splits as float32 ``[N, C, H, W]`` images (cached, so a sweep of runs in one
    process reads the files once: treat them as read-only)."""
    source = image_source(name)
    if origin == "torchvision":
        if source.torchvision is None:
            raise ValueError(f"source: {name} is read offline only (no torchvision dataset), got source: torchvision")
        raw = {s: sources.load_torchvision(source.torchvision, root or "data", download, s) for s in ("train", "test")}
    elif origin == "offline":
        raw = source.read(root)
    else:
        raise ValueError(f"source: expected 'offline' or 'torchvision', got {origin!r}")
    return {split: (as_image_array(images), labels.astype(np.int64)) for split, (images, labels) in raw.items()}


def image_splits(
    name: str,
    root: Optional[str] = None,
    seed: int = 0,
    val_size: int = 0,
    origin: Origin = "offline",
    download: bool = False,
    test_size: Optional[int] = None,
) -> dict[str, Arrays]:
    """``{"train", "test"[, "val"]: (float32 [N, C, H, W] images in [0, 1], int64 [N] labels)}``.

    The source's own splits are kept; the rows it lacks are held out of its training pool by the
    one split rule (:func:`~.splits.split_rows` with ``seed``): ``test`` (``test_size`` rows, default
    the table's) first, then ``val`` (``val_size`` rows, only when asked for with ``val_size > 0``).
    """
    source = image_source(name)
    native = _read(name, root, origin, download)
    pool_images, pool_labels = native["train"] if "train" in native else native["all"]
    held_out = {}
    if "test" not in native:
        held_out["test"] = source.test_size if test_size is None else test_size
    if val_size and "val" not in native:
        held_out["val"] = val_size
    if sum(held_out.values()) >= len(pool_labels):
        sizes = ", ".join(f"{k}_size={v}" for k, v in held_out.items())
        raise ValueError(
            f"{sizes}: {name} has {len(pool_labels)} training images; hold out fewer, so that some remain to train on"
        )
    if not held_out:
        return dict(native)
    parts = split_rows(len(pool_labels), held_out, seed)
    splits = {part: (pool_images[rows], pool_labels[rows]) for part, rows in parts.items()}
    return {**{k: v for k, v in native.items() if k != "all"}, **splits}
