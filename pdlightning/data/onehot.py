"""The one-hot drift task of ReMINE (Choi & Lee, UAI 2022, Sec. 3, Figures 1-5).

``X`` is uniform over ``N`` classes, one-hot encoded, and ``Y = X``, so ``I(X; Y) = H(X) = log N``.
Each row of a batch is a fresh joint pair ``(x_i, x_i)`` and an independent product-of-marginals
pair ``(x'_i, x''_i)`` with ``x'_i, x''_i`` drawn independently; the pair falls inside the joint
support exactly when ``x'_i = x''_i`` (probability ``1/N``). The batch flags those rows
(``in_joint_support``) so the critic's outputs can be split as in the paper's Fig. 2:
``T`` on ``Supp(P_XX)`` vs on ``Supp(P_X (x) P_X) \\ Supp(P_XX)``.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .stream import SeededStream, StreamLoader

__all__ = ["OneHotDataModule", "sample_onehot_batch"]


def sample_onehot_batch(n: int, num_classes: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """One batch of the task: ``n`` joint pairs, ``n`` explicit marginal pairs, the support flags,
    and the true MI ``log num_classes``."""
    labels = torch.randint(num_classes, (3, n), generator=generator)
    joint, first, second = (F.one_hot(row, num_classes).float() for row in labels)
    return {
        "x": joint,
        "y": joint.clone(),
        "x_marginal": first,
        "y_marginal": second,
        "in_joint_support": labels[1] == labels[2],
        "mi": torch.tensor(math.log(num_classes)),
    }


class _OneHotStream(SeededStream):
    """Batch ``t`` is a pure function of ``(seed, t)``, so a resumed run sees the same stream."""

    def __init__(self, num_classes: int, batch_size: int, steps: int, seed: int) -> None:
        super().__init__()
        self.num_classes, self.batch_size, self.total_steps, self.seed = num_classes, batch_size, steps, seed

    def identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "num_classes": self.num_classes, "batch_size": self.batch_size,
                "steps": self.total_steps}

    def sample(self, step: int, generator: torch.Generator) -> dict[str, Tensor]:
        return sample_onehot_batch(self.batch_size, self.num_classes, generator)


class _HeldOut(Dataset):
    def __init__(self, stream: _OneHotStream, batches: int, stream_id: int) -> None:
        self.stream, self.batches, self.stream_id = stream, batches, stream_id

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.stream.batch_at(index, stream=self.stream_id)


class OneHotDataModule(L.LightningDataModule):
    """ReMINE's one-hot task: ``I(X; X) = log num_classes`` with explicit marginal pairs.

    Batches carry ``x``, ``y`` (``[n, num_classes]`` one-hot, ``y = x``), ``x_marginal``,
    ``y_marginal`` (an independent marginal pair per row), ``in_joint_support`` (``[n]`` bool) and
    ``mi``. The paper trains with SGD (lr 0.1), batch 100 (stable, Fig. 1-2) or 32 (unstable,
    Fig. 3), for 3,000 steps.

    Args:
        num_classes: ``N``, the number of classes (16 in the paper's figures).
        batch_size: pairs per batch (joint and marginal pairs each).
        steps: training batches (one epoch).
        seed: seed of the stream; batch ``t`` is seeded from ``(seed, t)``.
        eval_batches: held-out batches for validate/test.
    """

    def __init__(
        self, num_classes: int = 16, batch_size: int = 100, steps: int = 3000, seed: int = 0, eval_batches: int = 8
    ) -> None:
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"num_classes: expected an integer >= 2 (I = log num_classes), got {num_classes!r}")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"steps: expected a positive integer, got {steps!r}")
        if not (isinstance(eval_batches, int) and eval_batches >= 1):
            raise ValueError(f"eval_batches: expected a positive integer, got {eval_batches!r}")
        self.num_classes, self.batch_size, self.steps, self.seed = num_classes, batch_size, steps, seed
        self.eval_batches = eval_batches
        self.train_stream = _OneHotStream(num_classes, batch_size, steps, seed)

    @property
    def true_mi(self) -> float:
        """``log num_classes`` nats."""
        return math.log(self.num_classes)

    @property
    def x_dim(self) -> int:
        return self.num_classes

    @property
    def y_dim(self) -> int:
        return self.num_classes

    def train_dataloader(self) -> DataLoader:
        # Resume where the restored trainer stands: batch t depends on (seed, t) only.
        self.train_stream.start_step = self.trainer.global_step if self.trainer is not None else 0
        return StreamLoader(self.train_stream, position=lambda: self.trainer.global_step)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_HeldOut(self.train_stream, self.eval_batches, stream_id=1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_HeldOut(self.train_stream, self.eval_batches, stream_id=2), batch_size=None)
