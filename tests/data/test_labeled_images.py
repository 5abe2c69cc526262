import math

import numpy as np
import pytest
import torch

from pdlightning.data import SameClassPairsDataModule, SupervisedImagesDataModule
from pdlightning.data.image_sources import image_splits
from pdlightning.data.labeled_images import label_entropy


def test_label_entropy():
    assert label_entropy(np.repeat(np.arange(10), 7)) == pytest.approx(math.log(10))
    assert label_entropy(np.array([1, 1, 1])) == pytest.approx(0.0)
    assert label_entropy(np.array([0, 0, 0, 1])) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_slb_batches_are_image_and_one_hot_label_with_true_mi():
    dm = SupervisedImagesDataModule("digits", batch_size=16, seed=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (16, 1, 8, 8) and batch["y"].shape == (16, 10)
    assert torch.equal(batch["y"].argmax(1), batch["label"]) and torch.all(batch["y"].sum(1) == 1)
    assert dm.num_classes == 10
    assert batch["mi"][0].item() == pytest.approx(label_entropy(dm.train_images[1]), abs=1e-6)
    assert abs(dm.mi - math.log(10)) < 0.01


def test_clb_pairs_share_the_class_but_not_the_image():
    dm = SameClassPairsDataModule("digits", batch_size=32, seed=0)
    dm.setup()
    data = dm.datasets["train"]
    for i in range(50):
        item = data[i]
        assert not torch.equal(item["x"], item["y"])
        j = int(torch.nonzero((data.images == item["y"]).flatten(1).all(1)).flatten()[0])
        assert data.labels[j] == data.labels[i] and j != i
    # training partners are redrawn on every access, test partners are fixed
    redrawn = [data[0]["y"] for _ in range(20)]
    assert any(not torch.equal(redrawn[0], other) for other in redrawn[1:])
    test = dm.datasets["test"]
    assert all(torch.equal(test[3]["y"], test[3]["y"]) for _ in range(20))


def test_subsets_and_bad_arguments(tmp_path):
    dm = SupervisedImagesDataModule("digits", batch_size=8, num_train=100, num_test=40)
    dm.setup()
    assert len(dm.datasets["train"]) == 100 and len(dm.datasets["test"]) == 40
    with pytest.raises(ValueError, match="source"):
        SupervisedImagesDataModule("imagenet")
    with pytest.raises(ValueError, match="num_train"):
        SupervisedImagesDataModule("digits", batch_size=8, num_train=4)
    assert set(image_splits("digits")) == {"train", "test"}  # digits has no validation split unless asked
    with pytest.raises(FileNotFoundError, match="root: CIFAR-10 .* not found"):
        SupervisedImagesDataModule("cifar10", root=str(tmp_path)).setup()
