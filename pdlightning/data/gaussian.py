"""Correlated Gaussian and Cubic MI benchmark (Belghazi et al. 2018; Poole et al. 2019; SMILE; PD).

``x, eps ~ N(0, I_d)``, ``y = rho x + sqrt(1 - rho^2) eps`` per dimension, so
``I(X; Y) = -d/2 log(1 - rho^2)`` and ``rho = sqrt(1 - exp(-2 I / d))``. The Cubic task maps
``y -> y^3``, an invertible map of ``y`` that leaves the MI (and the PD in ``z = y^(1/3)``) unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from .batch import check_batch_sizes
from .schedule import MISchedule
from .stream import SeededStream, StreamLoader, step_seed

__all__ = [
    "CorrelatedGaussianDataModule",
    "rho_from_mi",
    "sample_correlated_gaussian",
    "gaussian_log_ratio",
]


def rho_from_mi(mi: float, dim: int) -> float:
    """Per-dimension correlation giving total MI ``mi`` nats over ``dim`` dimensions."""
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def sample_correlated_gaussian(
    n: int, dim: int, mi: float, generator: Optional[torch.Generator] = None, cubic: bool = False
) -> tuple[Tensor, Tensor]:
    rho = rho_from_mi(mi, dim)
    x = torch.randn(n, dim, generator=generator)
    eps = torch.randn(n, dim, generator=generator)
    y = rho * x + math.sqrt(1.0 - rho**2) * eps
    return x, (y**3 if cubic else y)


def gaussian_log_ratio(x: Tensor, y: Tensor, mi: float, cubic: bool = False) -> Tensor:
    """Closed-form ``log r(x_i, y_j) = log p(x, y) / p(x)p(y)`` for all pairs: ``[n, n]``.

    Per dimension, ``log r = -1/2 log(1 - rho^2) - (rho^2 x^2 - 2 rho x y + rho^2 y^2) / (2(1 - rho^2))``,
    summed over dimensions. For the Cubic task it is evaluated at ``y^(1/3)`` (the ratio is
    invariant to an invertible map of ``y``).
    """
    dim = x.shape[-1]
    rho = rho_from_mi(mi, dim)
    if cubic:
        y = torch.sign(y) * y.abs() ** (1.0 / 3.0)
    one_minus = 1.0 - rho**2
    x2 = (x**2).sum(-1, keepdim=True)  # [n, 1]
    y2 = (y**2).sum(-1).unsqueeze(0)  # [1, n]
    cross = x @ y.T  # [n, n]
    return -0.5 * dim * math.log(one_minus) - (rho**2 * (x2 + y2) - 2.0 * rho * cross) / (2.0 * one_minus)


class GaussianStream(SeededStream):
    """The training staircase: batch ``t`` at the MI level of step ``t``, seeded from ``(seed, t)``."""

    def __init__(self, schedule: MISchedule, dim: int, batch_size: int, cubic: bool, seed: int) -> None:
        super().__init__()
        self.schedule, self.dim, self.batch_size, self.cubic, self.seed = schedule, dim, batch_size, cubic, seed
        self.total_steps = schedule.total_steps

    def identity(self) -> dict[str, Any]:
        return {"seed": self.seed, "dim": self.dim, "batch_size": self.batch_size, "cubic": self.cubic,
                "mi_schedule": list(self.schedule.levels), "steps_per_level": self.schedule.steps_per_level}

    def sample(self, step: int, generator: torch.Generator) -> dict[str, Tensor]:
        mi = self.schedule.mi_at(step)
        x, y = sample_correlated_gaussian(self.batch_size, self.dim, mi, generator, self.cubic)
        return {"x": x, "y": y, "mi": torch.tensor(mi)}


class HeldOutGaussian(torch.utils.data.Dataset):
    """``batches_per_level`` fresh batches per MI level, from a seed stream disjoint from training."""

    def __init__(self, levels: Sequence[float], dim: int, batch_size: int, batches_per_level: int,
                 cubic: bool, seed: int, stream: int) -> None:
        self.levels, self.dim, self.batch_size = list(levels), dim, batch_size
        self.batches_per_level, self.cubic, self.seed, self.stream = batches_per_level, cubic, seed, stream

    def __len__(self) -> int:
        return len(self.levels) * self.batches_per_level

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        mi = self.levels[index // self.batches_per_level]
        generator = torch.Generator().manual_seed(step_seed(self.seed, self.stream, index))
        x, y = sample_correlated_gaussian(self.batch_size, self.dim, mi, generator, self.cubic)
        return {"x": x, "y": y, "mi": torch.tensor(mi)}


class CorrelatedGaussianDataModule(L.LightningDataModule):
    """A seeded synthetic stream over the MI staircase, with exact ground truth per batch.

    Training yields ``len(mi_schedule) * steps_per_level`` batches (one epoch = the staircase);
    validation and test use held-out batches at every level.

    Args:
        dim: dimensions ``d`` of ``x`` and ``y`` (20 in the papers).
        mi_schedule: true MI per level in nats.
        steps_per_level: training steps per level (4,000 in the papers).
        batch_size: pairs per batch (64 in the papers).
        cubic: apply ``y -> y^3`` (the Cubic task).
        seed: seed of the stream; each batch is seeded from ``(seed, step)``.
        eval_batches_per_level: held-out batches per level for validate/test.
        eval_batch_size: held-out batch size (default ``batch_size``).
    """

    def __init__(
        self,
        dim: int = 20,
        mi_schedule: Sequence[float] = (2.0, 4.0, 6.0, 8.0, 10.0),
        steps_per_level: int = 4000,
        batch_size: int = 64,
        cubic: bool = False,
        seed: int = 0,
        eval_batches_per_level: int = 8,
        eval_batch_size: Optional[int] = None,
    ) -> None:
        super().__init__()
        if not (isinstance(dim, int) and dim > 0):
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        batch_size, eval_batch_size = check_batch_sizes(batch_size, eval_batch_size)
        if not (isinstance(eval_batches_per_level, int) and eval_batches_per_level > 0):
            raise ValueError(f"eval_batches_per_level: expected a positive integer, got {eval_batches_per_level!r}")
        self.schedule = MISchedule(mi_schedule, steps_per_level)
        for level in self.schedule.levels:
            if rho_from_mi(level, dim) >= 1.0:
                raise ValueError(
                    f"mi_schedule: {level:g} nats over dim={dim} makes y a numerically exact copy of x "
                    f"(rho rounds to 1, infinite MI); keep each level below ~{18 * dim} nats or raise dim"
                )
        self.dim, self.batch_size, self.cubic, self.seed = dim, batch_size, cubic, seed
        self.eval_batches_per_level, self.eval_batch_size = eval_batches_per_level, eval_batch_size
        self.train_stream = GaussianStream(self.schedule, dim, batch_size, cubic, seed)

    @property
    def x_dim(self) -> int:
        return self.dim

    @property
    def y_dim(self) -> int:
        return self.dim

    def train_dataloader(self) -> DataLoader:
        # Resume where the restored trainer stands: batch t is a function of (seed, t) only.
        self.train_stream.start_step = self.trainer.global_step if self.trainer is not None else 0
        return StreamLoader(self.train_stream, position=self._position)

    def _position(self) -> int:
        return self.trainer.global_step if self.trainer is not None else self.train_stream.start_step

    def _held_out(self, stream: int) -> DataLoader:
        dataset = HeldOutGaussian(self.schedule.levels, self.dim, self.eval_batch_size,
                                  self.eval_batches_per_level, self.cubic, self.seed, stream)
        return DataLoader(dataset, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._held_out(stream=1)

    def test_dataloader(self) -> DataLoader:
        return self._held_out(stream=2)

    def predict_dataloader(self) -> DataLoader:
        """The test batches: ``pdlightning predict`` gives the PMI of each held-out pair."""
        return self._held_out(stream=2)
