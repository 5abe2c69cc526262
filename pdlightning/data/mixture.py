"""The 25-Gaussian grid: the mode-collapse benchmark of the MI-regularised GAN (Belghazi et al., "MINE", ICML 2018,
Sec. 5.1; Mroueh et al., "Improved Mutual Information Estimation", AAAI 2021, Fig. 3 right).

An equal mixture of ``grid_size²`` isotropic Gaussians with standard deviation ``std`` centred on the grid
``{-4, -2, 0, 2, 4}²`` (``grid_size`` 5, ``spacing`` 2; the grid and ``std = 0.05`` of VEEGAN and PacGAN). Batches are
``{"x": [n, 2] samples, "mode": [n] the component each came from}``; the stream is the seeded, resumable one of
:class:`~.synthetic.SyntheticDataModule` (batch ``t`` is a function of ``(seed, t)``).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from ..metrics.modes import grid_centres
from .synthetic import SyntheticDataModule

__all__ = ["GridMixtureDataModule"]


class GridMixtureDataModule(SyntheticDataModule):
    """Samples of the ``grid_size x grid_size`` Gaussian mixture (see the module docstring).

    Args:
        grid_size: modes per side (25 modes for 5).
        spacing: distance between neighbouring centres.
        std: standard deviation of each component.
        batch_size: samples per batch.
        steps: training batches (one epoch): one generator step each in the GAN.
        seed: seed of the stream.
        eval_batches: held-out batches (the GAN evaluates on its own samples; kept for the base's loaders).
    """

    x_dim = 2

    def __init__(
        self,
        grid_size: int = 5,
        spacing: float = 2.0,
        std: float = 0.05,
        batch_size: int = 256,
        steps: int = 10000,
        seed: int = 0,
        eval_batches: int = 1,
        eval_batch_size: Optional[int] = None,
    ) -> None:
        self.centres = grid_centres(grid_size, spacing)
        if not (isinstance(std, (int, float)) and std > 0):
            raise ValueError(f"std: expected a positive standard deviation, got {std!r}")
        self.grid_size, self.spacing, self.std = grid_size, float(spacing), float(std)
        super().__init__(batch_size, steps, seed, eval_batches, eval_batch_size)

    @property
    def num_modes(self) -> int:
        return self.centres.shape[0]

    def identity(self) -> dict[str, Any]:
        return {"grid_size": self.grid_size, "spacing": self.spacing, "std": self.std}

    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, Tensor]:
        mode = torch.randint(self.num_modes, (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator)
        return {"x": self.centres[mode] + self.std * noise, "mode": mode}
