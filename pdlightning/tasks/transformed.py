"""A task observed through injective maps of X and of Y: same MI, same PMI at the pre-image."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .base import Task
from .transforms import Transform

__all__ = ["TransformedTask"]


class TransformedTask(Task):
    """``(f(X), g(Y))`` for a base task's ``(X, Y)`` and injective maps ``f``, ``g``.

    ``I(f(X); g(Y)) = I(X; Y)`` and ``PMI(f(x), g(y)) = PMI(x, y)``: the latents, MI and PMI are the base's;
    only the observations change. Tasks nest (``spiral-normal_cdf-…`` is a spiral of a normal-CDF task).

    Args:
        base: the task whose observations are transformed.
        transform_x: the map of X (None: identity).
        transform_y: the map of Y (None: identity).
        name: the task id; by default the maps' ``id_prefix`` joined to the base's id: ``{p}-{base}`` when both
            maps share a prefix, ``{p}_x-{base}`` / ``{p}_y-{base}`` for one map, ``{p}_x-{q}_y-{base}`` otherwise.
    """

    def __init__(
        self,
        base: Task,
        transform_x: Optional[Transform] = None,
        transform_y: Optional[Transform] = None,
        name: Optional[str] = None,
    ) -> None:
        if not isinstance(base, Task):
            raise TypeError(f"base must be a Task, got {type(base).__name__}")
        if transform_x is None and transform_y is None:
            raise ValueError("transform_x and transform_y are both None: give at least one map")
        self.base, self.transform_x, self.transform_y = base, transform_x, transform_y
        self._x_dim = base.x_dim if transform_x is None else transform_x.output_dim(base.x_dim, "x_dim")
        self._y_dim = base.y_dim if transform_y is None else transform_y.output_dim(base.y_dim, "y_dim")
        self._name = name or self._default_name()
        self._mi = base.mi
        self.mi_error = base.mi_error

    def _default_name(self) -> str:
        fx, fy = self.transform_x, self.transform_y
        if fx is not None and fy is not None:
            prefix = fx.id_prefix if fx.id_prefix == fy.id_prefix else f"{fx.id_prefix}_x-{fy.id_prefix}_y"
        elif fx is not None:
            prefix = f"{fx.id_prefix}_x"
        elif fy is not None:
            prefix = f"{fy.id_prefix}_y"
        else:  # the constructor requires a map
            raise ValueError("transform_x and transform_y are both None: give at least one map")
        return f"{prefix}-{self.base.name}"

    def sample_latents(self, n: int, generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
        return self.base.sample_latents(n, generator)

    def pmi_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        return self.base.pmi_of_latents(latent_x, latent_y)

    def pmi_matrix_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        return self.base.pmi_matrix_of_latents(latent_x, latent_y)

    def observe_x(self, latent_x: Tensor) -> Tensor:
        x = self.base.observe_x(latent_x)
        return x if self.transform_x is None else self.transform_x(x)

    def observe_y(self, latent_y: Tensor) -> Tensor:
        y = self.base.observe_y(latent_y)
        return y if self.transform_y is None else self.transform_y(y)
