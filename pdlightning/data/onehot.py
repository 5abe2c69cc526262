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
from typing import Any, Optional

import torch
import torch.nn.functional as F

from .synthetic import SyntheticDataModule

__all__ = ["OneHotDataModule", "sample_onehot_batch"]


def sample_onehot_batch(n: int, num_classes: int, generator: torch.Generator | None = None) -> dict[str, Any]:
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
        "mi": math.log(num_classes),
    }


class OneHotDataModule(SyntheticDataModule):
    """ReMINE's one-hot task: ``I(X; X) = log num_classes`` with explicit marginal pairs.

    Batches carry ``x``, ``y`` (``[n, num_classes]`` one-hot, ``y = x``), ``x_marginal``,
    ``y_marginal`` (an independent marginal pair per row), ``in_joint_support`` (``[n]`` bool) and
    ``mi``. The paper trains with SGD (lr 0.1), batch 100 (stable, Fig. 1-2) or 32 (unstable,
    Fig. 3), for 3,000 steps. Stream and held-out sets: :class:`~.synthetic.SyntheticDataModule`.

    Args:
        num_classes: ``N``, the number of classes (16 in the paper's figures).
        batch_size: pairs per batch (joint and marginal pairs each).
        steps: training batches (one epoch).
        seed: seed of the stream; batch ``t`` is seeded from ``(seed, t)``.
        eval_batches: held-out batches for validate/test.
        replicas: stack this many independent seeded streams per batch (seed replicates of an ensemble).
    """

    in_batch_negatives = False  # every row carries its own marginal pair

    def __init__(
        self,
        num_classes: int = 16,
        batch_size: int = 100,
        steps: int = 3000,
        seed: int = 0,
        eval_batches: int = 8,
        replicas: Optional[int] = None,
    ) -> None:
        if isinstance(num_classes, bool) or not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"num_classes: expected an integer >= 2 (I = log num_classes), got {num_classes!r}")
        self.num_classes = self.x_dim = self.y_dim = num_classes
        super().__init__(batch_size, steps, seed, eval_batches, replicas=replicas)

    @property
    def true_mi(self) -> float:
        """``log num_classes`` nats."""
        return math.log(self.num_classes)

    def identity(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, Any]:
        return sample_onehot_batch(n, self.num_classes, generator)
