import pickle

import numpy as np
import pytest

from pdlightning.data.sources import load_cifar, load_digits, load_fashion_mnist, load_mnist


def test_missing_mnist_pickle_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: no MNIST pickle"):
        load_mnist("test", path=str(tmp_path / "nope.pkl.gz"))


def test_missing_fashion_mnist_says_where_to_put_the_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("test", root=str(tmp_path))


def test_bad_split_names_the_parameter():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


def test_digits_are_scaled_images_with_labels():
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() == 1.0 and set(labels.tolist()) == set(range(10))


def test_cifar100_reader_keeps_the_fine_labels(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 6), ("test", 4)):
        entry = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": list(range(90, 90 + n)),
            "coarse_labels": [0] * n,
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    splits = load_cifar(str(folder), classes=100)  # root may be the release folder itself
    assert splits["train"][0].shape == (6, 32, 32, 3) and splits["test"][1].tolist() == [90, 91, 92, 93]
    with pytest.raises(FileNotFoundError, match="root: CIFAR-10 .*cifar-10-batches-py"):
        load_cifar(str(tmp_path), classes=10)


def test_a_truncated_idx_file_names_root_and_the_file(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + images.tobytes()[:-5])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match="root: .*t10k-images-idx3-ubyte is not a complete uint8 IDX file"):
        load_fashion_mnist("test", root=str(tmp_path))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + images.tobytes())
    loaded, labels = load_fashion_mnist("test", root=str(tmp_path))
    assert loaded.shape == (3, 28, 28) and labels.tolist() == [0, 0, 0]
