"""KL(P || Q) between any two distributions, as a task of the MI module.

MI is the KL divergence between the joint and the product of the marginals, and every KL lower bound of the package
(DV, NWJ, TUBA, η-DV) reads only the critic's scores on "joint" pairs (samples of ``P``) and on "marginal" pairs
(samples of ``Q``) (Mroueh et al., "Improved Mutual Information Estimation", AAAI 2021, Eq. 2-9: the bounds are
stated for KL(P || Q); MI is ``P = p(x, y)``, ``Q = p(x)p(y)``). So a divergence is an MI task whose batches carry
explicit marginal pairs (the batch contract of :mod:`.batch`):

    ``x = z_P [n, d]``,  ``x_marginal = z_Q [n, d]``,  ``y = y_marginal = 0 [n, 1]``,  ``mi = KL(P || Q)`` (if known)

and :class:`~pdlightning.modules.MIEstimationModule` with any critic and any KL lower bound estimates KL(P || Q)
unchanged. Why ``y`` is a constant column: ``P ⊗ δ_0`` and ``Q ⊗ δ_0`` have the divergence of ``P`` and ``Q``, so
the placeholder adds nothing and loses nothing, while every critic of the package (joint, separable, bilinear: each
then a function of ``z`` alone, e.g. the joint critic ``MLP([z; 0])``) and every tool that reads a batch (the guard,
the bias/variance summary, ``test``'s held-out table) keeps working; a zero-width ``y`` would break the critics'
``y_dim >= 1`` contract, and splitting ``z`` across ``x`` / ``y`` would fail for ``d = 1`` and restrict separable
critics. The critic's ``x_dim`` / ``y_dim`` come from the datamodule (``d`` and 1) when the config leaves them out.
Bounds that are not KL lower bounds (InfoNCE, whose value needs many negatives per ``x``; the plug-in PD estimators)
are not meant for this task.

Distributions (:class:`Sampler`): :class:`GaussianSampler`, :class:`StudentTSampler`, :class:`SampleSet` (rows of
an array or a ``.npy`` / ``.pt`` / ``.csv`` file, with a held-out part for validation and test) and
:class:`FunctionSampler` (any Python function). The true KL (:func:`kl_divergence`): closed form for two Gaussians,
otherwise a Monte Carlo mean of ``log p(z) - log q(z)`` over ``z ~ P`` with its standard error, when both densities
are known.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .stream import step_seed
from .synthetic import SubStream, SyntheticDataModule

__all__ = [
    "Sampler",
    "GaussianSampler",
    "StudentTSampler",
    "SampleSet",
    "FunctionSampler",
    "KLTruth",
    "kl_divergence",
    "DivergenceDataModule",
    "PLACEHOLDER_DIM",
]

#: the width of the constant ``y`` column of a divergence batch.
PLACEHOLDER_DIM = 1


class Sampler(ABC):
    """A distribution on ``R^dim``: draws with a ``torch.Generator`` and, when known, its log-density.

    Attributes:
        dim: features per sample.
    """

    dim: int

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator, held_out: bool = False) -> Tensor:
        """``[n, dim]`` float32 samples. ``held_out``: for validation / test (a finite sample set draws those from
        the part it keeps out of training; a distribution ignores it)."""

    @property
    def has_density(self) -> bool:
        """Whether :meth:`log_prob` is known."""
        return False

    def log_prob(self, z: Tensor) -> Optional[Tensor]:
        """``[n]`` float64 log-density at ``z [n, dim]``; ``None`` when unknown (then the true KL is too)."""
        return None

    def describe(self) -> dict[str, Any]:
        """The settings that determine the samples (for the stream's identity)."""
        return {"class": type(self).__name__}


def _numpy_generator(generator: torch.Generator) -> np.random.Generator:
    """A numpy generator seeded from ``generator`` (for draws torch cannot make with a generator: chi-square)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return np.random.default_rng(seed)


def _vector(values: Sequence[float], name: str) -> Tensor:
    vector = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if vector.numel() < 1 or not bool(torch.isfinite(vector).all()):
        raise ValueError(f"{name}: expected a non-empty list of finite numbers, got {values!r}")
    return vector


def _positive_definite(matrix: Optional[Sequence[Sequence[float]]], dim: int, name: str) -> Tensor:
    if matrix is None:
        return torch.eye(dim, dtype=torch.float64)
    value = torch.as_tensor(matrix, dtype=torch.float64)
    if tuple(value.shape) != (dim, dim):
        raise ValueError(
            f"{name}: expected a {dim} x {dim} matrix (the mean's dimension), got shape {tuple(value.shape)}"
        )
    if not torch.allclose(value, value.T):
        raise ValueError(f"{name}: expected a symmetric matrix")
    if torch.linalg.cholesky_ex(value).info != 0:
        raise ValueError(f"{name}: expected a positive definite matrix")
    return value


class GaussianSampler(Sampler):
    """``N(mean, covariance)`` (covariance default: the identity)."""

    def __init__(self, mean: Sequence[float], covariance: Optional[Sequence[Sequence[float]]] = None) -> None:
        self.mean = _vector(mean, "mean")
        self.dim = self.mean.numel()
        self.covariance = _positive_definite(covariance, self.dim, "covariance")
        self.distribution = torch.distributions.MultivariateNormal(self.mean, covariance_matrix=self.covariance)

    def sample(self, n: int, generator: torch.Generator, held_out: bool = False) -> Tensor:
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.mean + noise @ self.distribution.scale_tril.T).float()

    @property
    def has_density(self) -> bool:
        return True

    def log_prob(self, z: Tensor) -> Tensor:
        return self.distribution.log_prob(z.double())

    def describe(self) -> dict[str, Any]:
        return {"class": "GaussianSampler", "mean": self.mean.tolist(), "covariance": self.covariance.tolist()}


class StudentTSampler(Sampler):
    """The multivariate Student-t ``loc + L z / sqrt(W / ν)``, ``z ~ N(0, I)``, ``W ~ χ²_ν``, ``L Lᵀ = dispersion``:

    ``log t(z) = log Γ((ν+d)/2) - log Γ(ν/2) - d/2 log(νπ) - 1/2 log det Σ - (ν+d)/2 log(1 + δ/ν)``,
    ``δ = (z - loc)ᵀ Σ⁻¹ (z - loc)``.

    Args:
        dof: degrees of freedom ``ν > 0``.
        loc: the location (its length is the dimension).
        dispersion: ``Σ`` (not the covariance, which is ``ν/(ν-2) Σ`` for ``ν > 2``); default the identity.
    """

    def __init__(
        self, dof: float, loc: Sequence[float], dispersion: Optional[Sequence[Sequence[float]]] = None
    ) -> None:
        if not (isinstance(dof, (int, float)) and math.isfinite(dof) and dof > 0):
            raise ValueError(f"dof: expected positive degrees of freedom, got {dof!r}")
        self.dof = float(dof)
        self.loc = _vector(loc, "loc")
        self.dim = self.loc.numel()
        self.dispersion = _positive_definite(dispersion, self.dim, "dispersion")
        self.scale_tril = torch.linalg.cholesky(self.dispersion)

    def sample(self, n: int, generator: torch.Generator, held_out: bool = False) -> Tensor:
        normal = torch.randn(n, self.dim, generator=generator, dtype=torch.float64) @ self.scale_tril.T
        chi2 = torch.from_numpy(_numpy_generator(generator).chisquare(self.dof, n))
        return (self.loc + normal / torch.sqrt(chi2 / self.dof).unsqueeze(1)).float()

    @property
    def has_density(self) -> bool:
        return True

    def log_prob(self, z: Tensor) -> Tensor:
        d, nu = self.dim, self.dof
        centred = z.double() - self.loc
        solved = torch.linalg.solve_triangular(self.scale_tril, centred.T, upper=False)
        delta = (solved**2).sum(0)
        constant = math.lgamma(0.5 * (nu + d)) - math.lgamma(0.5 * nu) - 0.5 * d * math.log(nu * math.pi)
        log_det = 2 * torch.log(torch.diagonal(self.scale_tril)).sum()
        return constant - 0.5 * log_det - 0.5 * (nu + d) * torch.log1p(delta / nu)

    def describe(self) -> dict[str, Any]:
        return {
            "class": "StudentTSampler",
            "dof": self.dof,
            "loc": self.loc.tolist(),
            "dispersion": self.dispersion.tolist(),
        }


def _load_rows(data: Union[str, Tensor, np.ndarray]) -> Tensor:
    if isinstance(data, Tensor):
        rows = data.detach().cpu()
    elif isinstance(data, np.ndarray):
        rows = torch.from_numpy(data)
    elif isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"data: no such file {path!r}")
        if path.endswith(".npy"):
            rows = torch.from_numpy(np.load(path))
        elif path.endswith(".pt"):
            rows = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(rows, Tensor):
                raise ValueError(f"data: {path!r} does not hold a tensor, got {type(rows).__name__}")
        elif path.endswith((".csv", ".txt", ".tsv")):
            rows = torch.from_numpy(np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=2))
        else:
            raise ValueError(f"data: expected a .npy, .pt, .csv, .tsv or .txt file, got {path!r}")
    else:
        raise ValueError(f"data: expected an array, a tensor or a file path, got {type(data).__name__}")
    rows = rows.reshape(rows.shape[0], -1) if rows.dim() > 1 else rows.reshape(-1, 1)
    if not bool(torch.isfinite(rows.double()).all()):
        raise ValueError("data: the samples must be finite")
    return rows.float()


class SampleSet(Sampler):
    """A finite sample set (its rows): training draws come from one part, held-out draws from the other.

    The rows are split once by a seeded permutation; a batch is ``n`` distinct rows of its part drawn with the
    batch's generator (so every training step sees a fresh minibatch of the fixed training rows). From Python,
    :meth:`from_samples` takes a tensor or an array instead of a file.

    Args:
        data: the path of a ``.npy`` / ``.pt`` (a tensor) / ``.csv`` / ``.tsv`` / ``.txt`` file of ``[N, d]`` samples.
        held_out: the share of the rows kept for validation / test (0 uses the training rows for both).
        seed: seed of the split.
    """

    def __init__(self, data: str, held_out: float = 0.2, seed: int = 0) -> None:
        # ``data`` is typed ``str`` alone: a union with array types makes jsonargparse read a text file's content
        # into the value instead of the path.
        self._split(_load_rows(data), data, held_out, seed)

    @classmethod
    def from_samples(cls, samples: Union[Tensor, np.ndarray], held_out: float = 0.2, seed: int = 0) -> "SampleSet":
        """A sample set of the rows of ``samples`` (``[N, d]``, or ``[N]`` for one feature)."""
        instance = cls.__new__(cls)
        rows = _load_rows(samples)
        instance._split(rows, f"array of {rows.shape[0]} rows", held_out, seed)
        return instance

    def _split(self, rows: Tensor, source: str, held_out: float, seed: int) -> None:
        if not (isinstance(held_out, (int, float)) and 0.0 <= held_out < 1.0):
            raise ValueError(f"held_out: expected a share in [0, 1), got {held_out!r}")
        self.source = source
        self.dim, self.held_out, self.seed = rows.shape[1], float(held_out), seed
        order = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))
        kept = int(round(held_out * rows.shape[0]))
        self.eval_rows = rows[order[:kept]] if kept else rows[order]
        self.train_rows = rows[order[kept:]]
        if self.train_rows.shape[0] < 2 or self.eval_rows.shape[0] < 2:
            raise ValueError(
                f"data: {rows.shape[0]} rows leave {self.train_rows.shape[0]} for training and "
                f"{self.eval_rows.shape[0]} held out (held_out={held_out}); need at least 2 in each"
            )

    def sample(self, n: int, generator: torch.Generator, held_out: bool = False) -> Tensor:
        rows = self.eval_rows if held_out else self.train_rows
        if n > rows.shape[0]:
            part = "held-out" if held_out else "training"
            raise ValueError(
                f"batch_size: {n} samples per batch, but the sample set has only {rows.shape[0]} {part} rows"
            )
        return rows[torch.randperm(rows.shape[0], generator=generator)[:n]]

    def describe(self) -> dict[str, Any]:
        return {"class": "SampleSet", "data": str(self.source), "held_out": self.held_out, "seed": self.seed}


class FunctionSampler(Sampler):
    """Any sampler written in Python: ``function(n, generator) -> [n, dim]`` (and optionally its ``log_prob``).

    Args:
        function: draws ``n`` samples with the given ``torch.Generator``.
        dim: features per sample.
        log_prob: the log-density ``[n, dim] -> [n]``, if known (the true KL then comes by Monte Carlo).
        name: a label for the stream's identity.
    """

    def __init__(
        self,
        function: Callable[[int, torch.Generator], Tensor],
        dim: int,
        log_prob: Optional[Callable[[Tensor], Tensor]] = None,
        name: str = "function",
    ) -> None:
        if isinstance(dim, bool) or not (isinstance(dim, int) and dim >= 1):
            raise ValueError(f"dim: expected a positive number of features, got {dim!r}")
        self.function, self.dim, self._log_prob, self.name = function, dim, log_prob, name

    def sample(self, n: int, generator: torch.Generator, held_out: bool = False) -> Tensor:
        samples = torch.as_tensor(self.function(n, generator)).float().reshape(n, -1)
        if samples.shape[1] != self.dim:
            raise ValueError(f"dim: the function drew {samples.shape[1]} features per sample, expected {self.dim}")
        return samples

    @property
    def has_density(self) -> bool:
        return self._log_prob is not None

    def log_prob(self, z: Tensor) -> Optional[Tensor]:
        return None if self._log_prob is None else torch.as_tensor(self._log_prob(z)).double()

    def describe(self) -> dict[str, Any]:
        return {"class": "FunctionSampler", "name": self.name, "dim": self.dim}


@dataclass(frozen=True)
class KLTruth:
    """A true KL in nats: ``stderr`` is 0 for a closed form, the Monte Carlo standard error otherwise."""

    value: float
    stderr: float = 0.0


def kl_divergence(p: Sampler, q: Sampler, mc_samples: int = 1_000_000, seed: int = 0) -> Optional[KLTruth]:
    """``KL(P || Q)``: closed form for two Gaussians,

    ``1/2 [tr(Σ_q⁻¹ Σ_p) + (μ_q - μ_p)ᵀ Σ_q⁻¹ (μ_q - μ_p) - d + log det Σ_q - log det Σ_p]``,

    otherwise the Monte Carlo mean of ``log p(z) - log q(z)`` over ``mc_samples`` draws ``z ~ P`` (seeded by
    ``seed``; float64) with its standard error; ``None`` when a density is unknown."""
    if p.dim != q.dim:
        raise ValueError(f"q: samples of Q have {q.dim} features, but P's have {p.dim}")
    if isinstance(p, GaussianSampler) and isinstance(q, GaussianSampler):
        return KLTruth(float(torch.distributions.kl_divergence(p.distribution, q.distribution)))
    if not (p.has_density and q.has_density):
        return None
    generator = torch.Generator().manual_seed(seed)
    total, total_sq, count, chunk = 0.0, 0.0, 0, 100_000
    while count < mc_samples:
        z = p.sample(min(chunk, mc_samples - count), generator).double()
        log_p, log_q = p.log_prob(z), q.log_prob(z)
        if log_p is None or log_q is None:
            return None
        difference = log_p - log_q
        total += float(difference.sum())
        total_sq += float((difference**2).sum())
        count += z.shape[0]
    mean = total / count
    variance = max(total_sq / count - mean**2, 0.0)
    return KLTruth(mean, math.sqrt(variance / count))


class DivergenceDataModule(SyntheticDataModule):
    """Batches for estimating ``KL(P || Q)`` with :class:`~pdlightning.modules.MIEstimationModule` (see the
    module docstring): ``x`` from ``p``, ``x_marginal`` from ``q``, ``y = y_marginal`` a zero column, ``mi`` the
    true KL when it is known (given, closed form, or Monte Carlo).

    Args:
        p, q: the two distributions (any :class:`Sampler`), of the same dimension.
        batch_size: samples of each of ``P`` and ``Q`` per batch.
        steps: training batches (one epoch).
        seed: seed of the stream (batch ``t`` is a function of ``(seed, t)``; see :mod:`.synthetic`).
        eval_batches: held-out batches per validation / test run.
        eval_batch_size: samples of each per held-out batch (default ``batch_size``).
        train_pool: train on a fixed sample of this many draws of each (the finite-sample protocol).
        true_kl: the true KL, when known otherwise (skips the computation).
        mc_samples: draws of ``P`` for a Monte Carlo true KL (densities known, no closed form).
    """

    in_batch_negatives = False

    def __init__(
        self,
        p: Sampler,
        q: Sampler,
        batch_size: int = 256,
        steps: int = 2000,
        seed: int = 0,
        eval_batches: int = 8,
        eval_batch_size: Optional[int] = None,
        train_pool: Optional[int] = None,
        true_kl: Optional[float] = None,
        mc_samples: int = 1_000_000,
    ) -> None:
        for name, value in (("p", p), ("q", q)):
            if not isinstance(value, Sampler):
                raise ValueError(
                    f"{name}: expected a Sampler (e.g. GaussianSampler, SampleSet), got {type(value).__name__}"
                )
        if p.dim != q.dim:
            raise ValueError(
                f"q: samples of Q have {q.dim} features, but samples of P have {p.dim} (p); they must match"
            )
        self.p, self.q = p, q
        self.x_dim, self.y_dim = p.dim, PLACEHOLDER_DIM
        if true_kl is not None:
            if not (isinstance(true_kl, (int, float)) and math.isfinite(true_kl) and true_kl >= 0):
                raise ValueError(f"true_kl: expected a finite KL >= 0, got {true_kl!r}")
            self.truth: Optional[KLTruth] = KLTruth(true_kl)
        else:
            self.truth = kl_divergence(p, q, mc_samples, seed=0)
        super().__init__(batch_size, steps, seed, eval_batches, eval_batch_size, train_pool=train_pool)

    @property
    def true_kl(self) -> Optional[float]:
        """``KL(P || Q)`` in nats, or ``None`` when unknown."""
        return None if self.truth is None else self.truth.value

    def identity(self) -> dict[str, Any]:
        return {"p": self.p.describe(), "q": self.q.describe()}

    def draw(self, n: int, generator: torch.Generator, held_out: bool = False) -> dict[str, Tensor]:
        """One batch of ``n`` samples of each of ``P`` and ``Q`` (the layout of the module docstring)."""
        z_p = self.p.sample(n, generator, held_out)
        z_q = self.q.sample(n, generator, held_out)
        zeros = torch.zeros(n, PLACEHOLDER_DIM)
        batch = {"x": z_p, "y": zeros, "x_marginal": z_q, "y_marginal": zeros.clone()}
        if self.truth is not None:
            batch["mi"] = torch.tensor(self.truth.value)
        return batch

    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, Tensor]:
        return self.draw(n, generator)

    def replica_batch(self, seed: int, step: int, stream: SubStream = SubStream.TRAIN) -> dict[str, Tensor]:
        """As the base, except that held-out batches come from the samplers' held-out parts (a :class:`SampleSet`'s
        rows kept out of training)."""
        if stream == SubStream.TRAIN:
            return super().replica_batch(seed, step, stream)
        generator = torch.Generator().manual_seed(step_seed(seed, stream, step))
        return self.draw(self.eval_batch_size, generator, held_out=True)

    def sample_sets(self, n: int, held_out: bool = False, seed: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """``n`` samples of ``P`` and ``n`` of ``Q`` (``[n, d]`` each), e.g. for
        :meth:`pdlightning.convex.EtaDVConvex.fit_divergence`; seeded by ``seed`` (default the datamodule's)."""
        stream = SubStream.TEST if held_out else SubStream.POOL
        generator = torch.Generator().manual_seed(step_seed(self.seed if seed is None else seed, stream, 10**6))
        batch = self.draw(n, generator, held_out)
        return batch["x"], batch["x_marginal"]
