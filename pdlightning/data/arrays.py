"""A user's paired arrays as an MI datamodule: one pool of aligned rows, cut into training and held-out pairs.

Row ``i`` of ``x`` and row ``i`` of ``y`` are one pair ``(x_i, y_i) ~ p(x, y)``; the true MI is unknown (the batches
carry no ``mi``). :class:`ArraysDataModule` takes each side as an array (numpy, torch, nested lists; from Python) or
a file (from the CLI): ``.npy``, ``.npz`` (one array, or ``file.npz:key``), ``.csv`` (numbers; a header row is
detected and skipped) or ``.pt`` (a tensor), read by :func:`~.sources.load_features`. A 1-D array is one feature;
``x_dim`` / ``y_dim`` are the arrays' (the CLI gives them to the critic).

- **Split.** ``n_test = round(test_fraction * n)`` rows are held out, drawn by the one split rule
  (:func:`~.splits.split_rows` with ``seed``); they are never trained on, and the held-out estimate of
  ``test`` is computed on them.
- **Standardisation** (``standardize``, default on): every column of ``x`` and ``y`` is mapped to z-scores with the
  mean and standard deviation of the *training* rows only (statistics in float64:
  :func:`~.features.prepare_features`); the held-out rows and any new pairs (:meth:`ArraysDataModule.transform`)
  get the same map. It is a fixed invertible affine map of each variable, so the MI and every pair's PMI are
  unchanged, and data of any scale reach the critic at unit scale.
- **Training batches**: the base's finite-sample mode (:class:`~.synthetic.SyntheticDataModule`, ``train_pool``):
  the fixed training rows served as minibatches *without replacement*, in a seeded order reshuffled every pass
  (the ``n_train mod batch_size`` rows at the end of a pass sit that pass out). Batch ``t`` is a pure function of
  ``(seed, t)``, so a fit resumes exactly. ``steps`` batches make the epoch (default: the trainer's ``max_steps``).
- **Held-out batches** (``test`` / ``predict``): the ``n_test`` pairs in ``n_test // eval_batch_size`` batches of
  near-equal size (each at least ``eval_batch_size`` pairs; every held-out pair is evaluated exactly once), in row
  order, with ``index`` = the pair's row in the user's arrays. Estimators with in-batch negatives report one value
  per held-out batch (their interval is over batches: :mod:`pdlightning.uncertainty`).
- **Replicas** (``replicas=K``, for seed replicates with ``MIEstimationModule(data="replicas")``): every batch stacks
  ``K`` streams, ``[K, n, d]``; replicate ``k`` serves the same training rows in the order of seed
  ``replica_seed(seed, k)`` (as a standalone datamodule of that seed would), and the same held-out pairs.

There is no validation split (``val_dataloader`` is empty): the held-out rows are the test split.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .features import FeatureScaling, check_features, prepare_features
from .sources import load_features
from .splits import split_rows
from .synthetic import SubStream, SyntheticDataModule, check_count

__all__ = ["ArraysDataModule", "as_feature_array", "DEFAULT_BATCH_SIZE"]

#: training pairs per batch when not given (capped by the training rows in :func:`pdlightning.estimate_mi`).
DEFAULT_BATCH_SIZE = 128

#: an array (numpy, torch, nested lists), or a file path (str / PathLike) read by :func:`~.sources.load_features`.
ArrayOrPath = Any


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def as_feature_array(values: ArrayOrPath, name: str) -> tuple[np.ndarray, Optional[str]]:
    """``(float64 [n, d] array, the file it came from or None)`` of an array or a file, checked by
    :func:`~.features.check_features` (finite numbers; 1-D becomes one feature): every error names ``name``."""
    if _is_path(values):
        path = os.fspath(values)
        return load_features(path, name), path.rsplit(":", 1)[0] if any(
            f"{e}:" in path for e in (".npz", ".pt", ".pth")
        ) else path
    if values is None or isinstance(values, (dict, set, bytes)):
        raise TypeError(
            f"{name}: expected an array (numpy, torch, a list of rows) or a file path, got {type(values).__name__}"
        )
    if isinstance(values, Tensor):
        tensor = values.detach().cpu()
        if tensor.is_floating_point() and tensor.dtype not in (torch.float16, torch.float32, torch.float64):
            tensor = tensor.to(torch.float64)  # bfloat16 / float8: numpy has no such dtype
        values = tensor.numpy()
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name}: cannot be read as a numeric array, shape [n, d] ({error})") from None
    if array.dtype == object:
        raise TypeError(
            f"{name}: holds Python objects ({type(values).__name__} of mixed or non-numeric values); "
            "expected numbers, shape [n, d]"
        )
    return check_features(array, name), None


def _fingerprint(array: np.ndarray) -> str:
    """A short hash of an in-memory array's values and shape (its identity in checkpoints)."""
    digest = hashlib.sha1(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    digest.update(str(array.shape).encode())
    return f"array{list(array.shape)}:sha1:{digest.hexdigest()[:12]}"


class ArraysDataModule(SyntheticDataModule):
    """The user's paired arrays ``x [n, dx]``, ``y [n, dy]`` (row ``i`` with row ``i``), split, standardised and
    served as MI batches (see the module docstring).

    Args:
        x, y: arrays (numpy / torch / lists; any numeric dtype, 1-D is one feature) or file paths (``.npy``,
            ``.npz``, ``file.npz:key``, ``.csv``, ``.pt``) with the same number of rows.
        test_fraction: share of the rows held out for the held-out estimate, in ``(0, 1)``.
        batch_size: training pairs per batch (at least 2: the other pairs of a batch are its negatives; at most the
            training rows).
        eval_batch_size: at least this many held-out pairs per evaluation batch (default ``min(batch_size,
            n_test)``); the held-out pairs are cut into ``n_test // eval_batch_size`` near-equal batches.
        steps: training batches per epoch (default: the trainer's ``max_steps``, else one pass over the training
            rows).
        standardize: z-score every column with the training rows' statistics (``False``: the values as they are,
            refused at scales a critic cannot learn from: :mod:`.features`).
        seed: seed of the split and of the training order.
        replicas: stack this many replicate streams per batch (``data: replicas`` seed replicates).
    """

    def __init__(
        self,
        x: ArrayOrPath,
        y: ArrayOrPath,
        test_fraction: float = 0.2,
        batch_size: int = DEFAULT_BATCH_SIZE,
        eval_batch_size: Optional[int] = None,
        steps: Optional[int] = None,
        standardize: bool = True,
        seed: int = 0,
        replicas: Optional[int] = None,
    ) -> None:
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction: expected the held-out share of the rows in (0, 1), got {test_fraction!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: expected an integer, got {seed!r}")
        batch_size = check_count(batch_size, "batch_size", 2)
        steps = None if steps is None else check_count(steps, "steps")
        x_values, x_path = as_feature_array(x, "x")
        y_values, y_path = as_feature_array(y, "y")
        n = x_values.shape[0]
        if y_values.shape[0] != n:
            raise ValueError(
                f"x and y: the arrays must be aligned row by row (row i of x pairs with row i of y), got {n} rows "
                f"of x and {y_values.shape[0]} rows of y"
            )
        self.test_fraction = float(test_fraction)
        self.n_test = round(self.test_fraction * n)
        self.n_train = n - self.n_test
        if self.n_test < 2 or self.n_train < 2:
            need = next(
                m for m in range(4, 10**9) if min(round(self.test_fraction * m), m - round(self.test_fraction * m)) >= 2
            )
            raise ValueError(
                f"x, y: {n} rows split by test_fraction={self.test_fraction:g} leave {self.n_train} training and "
                f"{self.n_test} held-out pairs; each side needs at least 2 pairs (a batch's other pairs are its "
                f"negatives): give at least {need} rows"
            )
        if batch_size > self.n_train:
            raise ValueError(
                f"batch_size: {batch_size} is more than the {self.n_train} training pairs ({n} rows, "
                f"test_fraction={self.test_fraction:g}); lower batch_size (at most {self.n_train})"
            )
        if eval_batch_size is None:
            eval_batch_size = min(batch_size, self.n_test)
        eval_batch_size = check_count(eval_batch_size, "eval_batch_size", 2)
        if eval_batch_size > self.n_test:
            raise ValueError(
                f"eval_batch_size: {eval_batch_size} is more than the {self.n_test} held-out pairs ({n} rows x "
                f"test_fraction={self.test_fraction:g})"
            )
        self.standardize = bool(standardize)
        self.rows = n
        self.sources = {"x": x_path or _fingerprint(x_values), "y": y_path or _fingerprint(y_values)}
        parts = split_rows(n, {"test": self.n_test}, seed)
        self.train_rows, self.test_rows = parts["train"], parts["test"]
        #: the training rows' statistics per side (``None`` without ``standardize``), applied to every other pair.
        self.scalings: dict[str, Optional[FeatureScaling]] = {}
        tensors: dict[str, dict[str, Tensor]] = {"train": {}, "test": {}}
        for side, values, path in (("x", x_values, x_path), ("y", y_values, y_path)):
            train, scaling = prepare_features(values[self.train_rows], side, path, standardize=self.standardize)
            test, _ = prepare_features(
                values[self.test_rows], f"{side} (held-out rows)", path, standardize=self.standardize, scaling=scaling
            )
            self.scalings[side] = scaling
            tensors["train"][side], tensors["test"][side] = torch.from_numpy(train), torch.from_numpy(test)
        self.train_pairs, self.test_pairs = tensors["train"], tensors["test"]
        self.test_pairs["index"] = torch.from_numpy(self.test_rows.astype(np.int64))
        self.x_dim, self.y_dim = x_values.shape[1], y_values.shape[1]
        self._chunks = np.array_split(np.arange(self.n_test), self.n_test // eval_batch_size)
        self._steps = steps
        super().__init__(
            batch_size,
            steps if steps is not None else 1,  # the trainer's max_steps once it is known (train_dataloader)
            seed,
            len(self._chunks),
            eval_batch_size,
            replicas,
            train_pool=self.n_train,
        )

    # ----------------------------------------------------------------------------- the base's parts
    def identity(self) -> dict[str, Any]:
        return {
            "x": self.sources["x"],
            "y": self.sources["y"],
            "rows": self.rows,
            "test_fraction": self.test_fraction,
            "standardize": self.standardize,
        }

    def stream_identity(self) -> dict[str, Any]:
        """As the base's, without ``steps``: batch ``t`` of a training pool does not depend on how many follow, so
        a resumed fit with a larger ``max_steps`` continues the same stream."""
        identity = super().stream_identity()
        identity.pop("steps", None)
        return identity

    def held_out_steps(self) -> list[int]:
        """Held-out batch ``i`` is the ``i``-th near-equal chunk of the held-out pairs."""
        return list(range(len(self._chunks)))

    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, Any]:
        """The training pool: every training pair (the base serves it in seeded reshuffled minibatches)."""
        if n != self.n_train:
            raise RuntimeError(f"ArraysDataModule.sample: the pool is the {self.n_train} training pairs, asked for {n}")
        return {"x": self.train_pairs["x"], "y": self.train_pairs["y"]}

    def replica_batch(self, seed: int, step: int, stream: SubStream = SubStream.TRAIN) -> dict[str, Any]:
        """Training: the base's minibatch of the pool; held-out: chunk ``step`` of the held-out pairs (the same for
        every replicate)."""
        if stream == SubStream.TRAIN:
            return super().replica_batch(seed, step, stream)
        rows = torch.from_numpy(self._chunks[step])
        return {key: value[rows] for key, value in self.test_pairs.items()}

    # ------------------------------------------------------------------------------------- loaders
    def planned_steps(self) -> int:
        """Training batches of the epoch: ``steps``, else the trainer's ``max_steps``, else one pass."""
        if self._steps is not None:
            return self._steps
        max_steps = getattr(self.trainer, "max_steps", -1) if self.trainer is not None else -1
        return int(max_steps) if max_steps and max_steps > 0 else max(1, self.n_train // self.batch_size)

    def train_dataloader(self) -> DataLoader:
        self.steps = self.train_stream.total_steps = self.planned_steps()
        return super().train_dataloader()

    def val_dataloader(self) -> Any:
        """No validation split: the held-out rows are the test split."""
        return []

    # ---------------------------------------------------------------------------------- new pairs
    def transform(self, values: ArrayOrPath, side: str, name: Optional[str] = None) -> Tensor:
        """New values of ``side`` (``"x"`` / ``"y"``) as the critic sees them: checked, and standardised with the
        *training* rows' statistics (float32 ``[n, d]``); errors name ``name`` (default ``side``)."""
        if side not in ("x", "y"):
            raise ValueError(f"side: expected 'x' or 'y', got {side!r}")
        name = name or side
        array, path = as_feature_array(values, name)
        dim = self.x_dim if side == "x" else self.y_dim
        if array.shape[1] != dim:
            raise ValueError(f"{name}: has {array.shape[1]} features per row; the training data's {side} has {dim}")
        features, _ = prepare_features(array, name, path, standardize=self.standardize, scaling=self.scalings.get(side))
        return torch.from_numpy(features)

    def held_out(self) -> dict[str, Tensor]:
        """Every held-out pair as the critic sees it: ``x``, ``y`` (standardised) and ``index`` (rows)."""
        return dict(self.test_pairs)
