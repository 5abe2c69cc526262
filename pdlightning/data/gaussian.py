"""Correlated Gaussian and Cubic MI benchmark (Belghazi et al. 2018; Poole et al. 2019; SMILE; PD).

``x, eps ~ N(0, I_d)``, ``y = rho x + sqrt(1 - rho^2) eps`` per dimension, so
``I(X; Y) = -d/2 log(1 - rho^2)`` and ``rho = sqrt(1 - exp(-2 I / d))``. The Cubic task maps
``y -> y^3``, an invertible map of ``y`` that leaves the MI (and the PD in ``z = y^(1/3)``) unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .schedule import MISchedule
from .synthetic import SyntheticDataModule, check_count

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


class CorrelatedGaussianDataModule(SyntheticDataModule):
    """A seeded synthetic stream over the MI staircase, with exact ground truth per batch.

    Training yields ``len(mi_schedule) * steps_per_level`` batches (one epoch = the staircase);
    validation and test use held-out batches at every level (:class:`~.synthetic.SyntheticDataModule`).

    Args:
        dim: dimensions ``d`` of ``x`` and ``y`` (20 in the papers).
        mi_schedule: true MI per level in nats.
        steps_per_level: training steps per level (4,000 in the papers).
        batch_size: pairs per batch (64 in the papers).
        cubic: apply ``y -> y^3`` (the Cubic task).
        seed: seed of the stream; each batch is seeded from ``(seed, step)``.
        eval_batches_per_level: held-out batches per level for validate/test.
        eval_batch_size: held-out batch size (default ``batch_size``).
        replicas: stack this many independent seeded streams per batch (``[K, n, d]``) for a
            vectorised ensemble of seed replicates (``MIEnsembleModule(data="replicas")``).
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
        replicas: Optional[int] = None,
    ) -> None:
        self.dim = self.x_dim = self.y_dim = check_count(dim, "dim")
        self.schedule = MISchedule(mi_schedule, steps_per_level)
        for level in self.schedule.levels:
            if rho_from_mi(level, dim) >= 1.0:
                raise ValueError(
                    f"mi_schedule: {level:g} nats over dim={dim} makes y a numerically exact copy of x "
                    f"(rho rounds to 1, infinite MI); keep each level below ~{18 * dim} nats or raise dim"
                )
        self.cubic = cubic
        self.eval_batches_per_level = check_count(eval_batches_per_level, "eval_batches_per_level")
        super().__init__(
            batch_size,
            self.schedule.total_steps,
            seed,
            eval_batches_per_level * len(self.schedule.levels),
            eval_batch_size,
            replicas=replicas,
        )

    def identity(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "cubic": self.cubic,
            "mi_schedule": list(self.schedule.levels),
            "steps_per_level": self.schedule.steps_per_level,
        }

    def held_out_steps(self) -> list[int]:
        """``eval_batches_per_level`` batches at the first step of each level."""
        return [
            level * self.schedule.steps_per_level
            for level in range(len(self.schedule.levels))
            for _ in range(self.eval_batches_per_level)
        ]

    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, Any]:
        mi = self.schedule.mi_at(step)
        x, y = sample_correlated_gaussian(n, self.dim, mi, generator, self.cubic)
        return {"x": x, "y": y, "mi": float(mi)}  # a number: read on the host without a device sync
