"""The task interface: a joint distribution of ``(X, Y)`` with its exact MI and exact pointwise MI.

A task draws a *latent* (pre-image) pair ``(u, v)`` from a base distribution whose density is known
in closed form and observes ``x = f(u)``, ``y = g(v)`` through injective maps ``f`` and ``g``. The
pointwise mutual information

    ``PMI(x, y) = log p(x, y) / (p(x) p(y))``

is invariant under injective maps applied to ``X`` and ``Y`` separately (the Jacobians cancel between
the joint and the marginals), so ``PMI(f(u), g(v)) = PMI_base(u, v)`` for *every* pair, joint or not,
and ``I(X; Y) = E_p[PMI]`` is the base distribution's MI (Czyż et al., "Beyond Normal: On the
Evaluation of Mutual Information Estimators", NeurIPS 2023). Latents and PMI are computed in float64;
observations are returned in the requested dtype (float32 by default).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

__all__ = ["Task", "TaskSample", "GeneratorLike", "as_generator", "check_positive_int", "format_number", "draw_device"]

GeneratorLike = Union[torch.Generator, int, None]

# Elements of one [rows, m, dim] block when a PMI matrix is built by broadcasting (≈128 MiB of float64).
_BLOCK_ELEMENTS = 1 << 24


def check_positive_int(name: str, value: int) -> int:
    """``value`` as an int, or a ValueError naming ``name`` when it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def format_number(value: float) -> str:
    """A parameter as the suite's ids spell it: ``2.0 -> '2.0'``, ``0.75 -> '0.75'`` (Python's float repr)."""
    return repr(float(value))


def draw_device(generator: Optional[torch.Generator]) -> torch.device:
    """Where random draws happen: the generator's device, or the CPU for torch's global RNG."""
    return torch.device("cpu") if generator is None else generator.device


def as_generator(generator: GeneratorLike) -> Optional[torch.Generator]:
    """An int seeds a fresh CPU generator; a generator is used as given; None means torch's global RNG."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


@dataclass(frozen=True)
class TaskSample:
    """``n`` joint pairs of a task with their exact PMI and the pre-images that give the PMI of any pair.

    Attributes:
        x: ``[n, x_dim]`` observations of X.
        y: ``[n, y_dim]`` observations of Y (row ``i`` is paired with ``x[i]``).
        pmi: ``[n]`` exact ``log p(x_i, y_i) / (p(x_i) p(y_i))`` of the joint pairs (dtype of ``x``).
        latent_x: ``[n, latent_x_dim]`` float64 pre-images of ``x`` under the task's map.
        latent_y: ``[n, latent_y_dim]`` float64 pre-images of ``y``.
    """

    x: Tensor
    y: Tensor
    pmi: Tensor
    latent_x: Tensor
    latent_y: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def to(self, device: Union[torch.device, str]) -> "TaskSample":
        """The same sample on ``device`` (latents stay float64)."""
        return TaskSample(*(t.to(device) for t in (self.x, self.y, self.pmi, self.latent_x, self.latent_y)))


class Task(ABC):
    """A distribution of ``(X, Y)`` with exact ``mi`` and exact PMI for every pair of pre-images.

    Subclasses define the base distribution (:meth:`sample_latents`, :meth:`pmi_of_latents`) and, optionally,
    the observation maps (:meth:`observe_x`, :meth:`observe_y`; identity by default). Their ``__init__`` sets
    ``_name``, ``_x_dim``, ``_y_dim`` and ``_mi`` (what :attr:`name`, :attr:`x_dim`, :attr:`y_dim` and
    :attr:`mi` return) and takes typed plain arguments only, so any task can be built by ``class_path``.
    """

    #: Absolute error bound of :attr:`mi` in nats (0 for closed forms, up to float64 rounding).
    mi_error: float = 0.0
    _name: str
    _x_dim: int
    _y_dim: int
    _mi: float

    @property
    def name(self) -> str:
        """The task id (the published id for the suite's tasks, e.g. ``1v1-normal-0.75``)."""
        return self._name

    @property
    def x_dim(self) -> int:
        """Dimension of an observation of X."""
        return self._x_dim

    @property
    def y_dim(self) -> int:
        """Dimension of an observation of Y."""
        return self._y_dim

    @property
    def mi(self) -> float:
        """The exact mutual information ``I(X; Y)`` in nats."""
        return self._mi

    @abstractmethod
    def sample_latents(self, n: int, generator: Optional[torch.Generator]) -> tuple[Tensor, Tensor]:
        """``n`` joint pre-image pairs ``(u [n, du], v [n, dv])`` in float64 on the generator's device
        (CPU when ``generator`` is None, drawing from torch's global RNG)."""

    @abstractmethod
    def pmi_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        """Exact PMI of the pairs ``(latent_x[..., i, :], latent_y[..., i, :])``: shape ``latent_x.shape[:-1]``.

        The pairs need not be joint pairs: this is the PMI of any point of the product of the supports.
        Broadcasts over leading dimensions; computed in float64.
        """

    def pmi_matrix_of_latents(self, latent_x: Tensor, latent_y: Tensor) -> Tensor:
        """Exact PMI of every pair ``(latent_x[i], latent_y[j])``: ``[n, m]`` float64.

        The default broadcasts :meth:`pmi_of_latents` in row blocks of bounded memory; families with a
        quadratic-form density override it with an ``O(n m d)`` matrix product.
        """
        n, m = latent_x.shape[0], latent_y.shape[0]
        width = max(latent_x.shape[-1], latent_y.shape[-1], 1)
        rows = max(1, _BLOCK_ELEMENTS // max(m * width, 1))
        blocks = [self.pmi_of_latents(latent_x[i : i + rows, None, :], latent_y[None, :, :]) for i in range(0, n, rows)]
        return torch.cat(blocks, dim=0) if blocks else latent_x.new_zeros(0, m)

    def observe_x(self, latent_x: Tensor) -> Tensor:
        """The observation map of X applied to pre-images (identity for a base distribution)."""
        return latent_x

    def observe_y(self, latent_y: Tensor) -> Tensor:
        """The observation map of Y applied to pre-images (identity for a base distribution)."""
        return latent_y

    def sample(
        self,
        n: int,
        generator: GeneratorLike = None,
        device: Union[torch.device, str, None] = None,
        dtype: torch.dtype = torch.float32,
    ) -> TaskSample:
        """Draw ``n`` joint pairs with their exact PMI.

        The random draws happen on the generator's device (CPU for an int seed or None), so one seed names
        the same sample on every device; the result is then moved to ``device`` (default: that device).

        Args:
            n: number of joint pairs.
            generator: a ``torch.Generator``, an int seed, or None for torch's global RNG.
            device: where the returned tensors live.
            dtype: floating dtype of ``x``, ``y`` and ``pmi`` (latents are always float64).
        """
        check_positive_int("n", n)
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point dtype, got {dtype}")
        latent_x, latent_y = self.sample_latents(n, as_generator(generator))
        pmi = self.pmi_of_latents(latent_x, latent_y)
        x, y = self.observe_x(latent_x), self.observe_y(latent_y)
        target = latent_x.device if device is None else torch.device(device)
        return TaskSample(
            x=x.to(target, dtype),
            y=y.to(target, dtype),
            pmi=pmi.to(target, dtype),
            latent_x=latent_x.to(target),
            latent_y=latent_y.to(target),
        )

    def pmi_matrix(self, sample: TaskSample) -> Tensor:
        """Exact PMI of every pair ``(x_i, y_j)`` of a sample: ``[n, n]`` in the sample's dtype.

        The diagonal is ``sample.pmi`` (the joint pairs); off-diagonal entries are pairs of the product of
        the marginals, where ``E_{p(x)p(y)}[exp(PMI)] = 1``. Pairs outside the joint support have PMI -inf.
        """
        return self.pmi_matrix_of_latents(sample.latent_x, sample.latent_y).to(sample.pmi.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, x_dim={self.x_dim}, y_dim={self.y_dim}, mi={self.mi:.6g})"
