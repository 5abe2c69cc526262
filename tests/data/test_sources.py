import numpy as np
import pytest

from pdlightning.data.sources import load_digits, load_fashion_mnist, load_mnist


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
