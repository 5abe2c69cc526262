"""The task suite as a datamodule: the "Beyond Normal" benchmark's finite-sample protocol on any task.

The benchmark (Czyż et al., "Beyond Normal: On the Evaluation of Mutual Information Estimators", NeurIPS 2023)
draws ``N = n_samples`` pairs per task and seed, trains a neural estimator on one part and reports its estimate on
the held-out part (50/50 by default). :class:`TaskDataModule` serves that protocol through the seeded stream of
:class:`~.synthetic.SyntheticDataModule`:

- **training** (``stream=False``): a fixed sample of ``n_train = n_samples - n_test`` pairs (the base's
  ``train_pool``), served as minibatches reshuffled every pass; the estimator can overfit it, as in the benchmark.
  ``stream=True`` draws a fresh batch every step instead (the population limit of the same protocol).
- **evaluation**: ``n_test = round(test_fraction * n_samples)`` held-out pairs, drawn from the validation / test
  sub-streams of the seed (disjoint from the training sample), in ``n_test // eval_batch_size`` batches.

Every batch carries ``x``, ``y``, the task's exact ``mi`` and the exact PMI of each pair (``pmi``, from its
pre-image: :mod:`pdlightning.tasks`). Evaluation batches also carry one product-of-marginals pair per row for the
pointwise metrics: ``x_product = x``, ``y_product[i] = y[i + 1 mod n]`` and their exact PMI ``pmi_product``. The
bounds never read these keys (they take their negatives in-batch), so the reported MI estimate is unchanged.

``standardize`` (the benchmark's default too) maps every coordinate of ``x`` and ``y`` by the mean and standard
deviation of the training sample: a fixed invertible affine map of each variable, which leaves every pair's PMI and
the MI unchanged (see :mod:`pdlightning.tasks.base`). The statistics come from the training sample only, so nothing
of the held-out pairs leaks into training (the benchmark's code standardises before splitting).
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import Tensor

from ..tasks import Task, UnknownTaskError, resolve_task
from .stream import step_seed
from .synthetic import SubStream, SyntheticDataModule, check_count

__all__ = ["TaskDataModule", "DEFAULT_EVAL_BATCH_SIZE"]

#: held-out pairs per evaluation batch when ``eval_batch_size`` is not given (capped by the held-out set): a joint
#: critic scores ``eval_batch_size**2`` pairs at once, 500**2 x hidden floats stays small on a CPU, and the suite's
#: 2,500 held-out pairs are exactly 5 such batches.
DEFAULT_EVAL_BATCH_SIZE = 500

#: the tensors of a task batch that are per pair (the others, ``mi``, describe the task)
_STANDARDIZED = (("x", "x"), ("y", "y"), ("x_product", "x"), ("y_product", "y"))


def _as_task(task: Any) -> Task:
    """``task`` as a :class:`Task`: an instance, or a registered id (close matches listed when unknown)."""
    if not isinstance(task, (str, Task)):
        raise TypeError(
            f"task: expected a registered task id (str) or a pdlightning.tasks.Task, got {type(task).__name__}"
        )
    try:
        return resolve_task(task)
    except UnknownTaskError as error:
        raise UnknownTaskError(f"task: {error}") from None


class TaskDataModule(SyntheticDataModule):
    """A task of :mod:`pdlightning.tasks` under the suite's protocol (see the module docstring).

    ``x_dim`` / ``y_dim`` are the task's, so one estimator config runs on every task: the ``pdlightning`` CLI fills
    the critic's ``x_dim`` / ``y_dim`` from them when the config leaves them out.

    Args:
        task: a registered task id (e.g. ``1v1-normal-0.75``; ``pdlightning.tasks.available_tasks()``) or a
            :class:`~pdlightning.tasks.Task` (``class_path`` in YAML).
        n_samples: pairs per task and seed, ``N`` (training and held-out together; 5,000 in the benchmark).
        test_fraction: share of ``n_samples`` held out for evaluation, in ``(0, 1)`` (0.5 in the benchmark).
        seed: seed of the training sample, its order and the held-out pairs.
        batch_size: pairs per training batch (at most the ``n_train`` training pairs).
        steps: training batches (one epoch; set ``trainer.max_steps`` to the same).
        stream: train on a fresh batch every step instead of the fixed training sample.
        eval_batch_size: held-out pairs per evaluation batch (default ``min(n_test, 500)``); the
            ``n_test mod eval_batch_size`` pairs left over are not evaluated.
        standardize: map each coordinate by the training sample's mean and standard deviation (PMI unchanged).
        product_pairs: add ``x_product``, ``y_product``, ``pmi_product`` to the evaluation batches.
        replicas: stack this many independent replicate streams per batch (vectorised ensembles; see the base).
    """

    def __init__(
        self,
        task: Union[str, Task],
        n_samples: int = 5000,
        test_fraction: float = 0.5,
        seed: int = 0,
        batch_size: int = 256,
        steps: int = 2000,
        stream: bool = False,
        eval_batch_size: Optional[int] = None,
        standardize: bool = True,
        product_pairs: bool = True,
        replicas: Optional[int] = None,
    ) -> None:
        self.task = _as_task(task)
        self.x_dim, self.y_dim = self.task.x_dim, self.task.y_dim
        self.n_samples = check_count(n_samples, "n_samples", 4)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ValueError(
                f"test_fraction: expected the held-out share of n_samples in (0, 1), got {test_fraction!r}"
            )
        self.test_fraction = float(test_fraction)
        self.n_test = round(self.test_fraction * self.n_samples)
        self.n_train = self.n_samples - self.n_test
        if self.n_test < 2 or self.n_train < 2:
            raise ValueError(
                f"n_samples: {self.n_samples} pairs split by test_fraction={self.test_fraction:g} leave "
                f"{self.n_train} training and {self.n_test} held-out pairs; each side needs at least 2"
            )
        batch_size = check_count(batch_size, "batch_size", 2)
        if batch_size > self.n_train:
            raise ValueError(
                f"n_samples: the training sample of n_samples={self.n_samples} x (1 - test_fraction="
                f"{self.test_fraction:g}) = {self.n_train} pairs is smaller than one batch (batch_size={batch_size}); "
                f"raise n_samples to at least {self._samples_for(batch_size)} or lower batch_size"
            )
        if eval_batch_size is None:
            eval_batch_size = min(self.n_test, DEFAULT_EVAL_BATCH_SIZE)
        eval_batch_size = check_count(eval_batch_size, "eval_batch_size", 2)
        if eval_batch_size > self.n_test:
            raise ValueError(
                f"eval_batch_size: {eval_batch_size} is more than the {self.n_test} held-out pairs "
                f"(n_samples={self.n_samples} x test_fraction={self.test_fraction:g})"
            )
        self.stream, self.standardize, self.product_pairs = bool(stream), bool(standardize), bool(product_pairs)
        self._statistics: dict[int, dict[str, tuple[Tensor, Tensor]]] = {}
        super().__init__(
            batch_size,
            steps,
            seed,
            self.n_test // eval_batch_size,
            eval_batch_size,
            replicas,
            train_pool=None if self.stream else self.n_train,
        )

    def _samples_for(self, n_train: int) -> int:
        """The smallest ``n_samples`` whose training split holds ``n_train`` pairs at this ``test_fraction``."""
        n = n_train
        while n - round(self.test_fraction * n) < n_train:
            n += 1
        return n

    # ----------------------------------------------------------------------------- the task's part
    def identity(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "n_samples": self.n_samples,
            "test_fraction": self.test_fraction,
            "stream": self.stream,
            "standardize": self.standardize,
            "product_pairs": self.product_pairs,
        }

    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, Any]:
        """``n`` raw joint pairs with their exact PMI and pre-images (the latter are dropped from the batches)."""
        drawn = self.task.sample(n, generator)
        return {
            "x": drawn.x,
            "y": drawn.y,
            "mi": float(self.task.mi),
            "pmi": drawn.pmi,
            "latent_x": drawn.latent_x,
            "latent_y": drawn.latent_y,
        }

    def replica_batch(self, seed: int, step: int, stream: SubStream = SubStream.TRAIN) -> dict[str, Any]:
        """The base's batch, with product pairs on held-out batches and the standardisation applied."""
        batch = super().replica_batch(seed, step, stream)
        latent_x, latent_y = batch.pop("latent_x"), batch.pop("latent_y")
        if stream != SubStream.TRAIN and self.product_pairs:
            following = torch.roll(torch.arange(batch["x"].shape[0]), -1)  # row i pairs x_i with y_{i+1}
            batch["x_product"], batch["y_product"] = batch["x"], batch["y"][following]
            batch["pmi_product"] = self.task.pmi_of_latents(latent_x, latent_y[following]).to(batch["pmi"].dtype)
        if self.standardize:
            statistics = self.standardization(seed)
            for key, variable in _STANDARDIZED:
                if key in batch:
                    mean, scale = statistics[variable]
                    batch[key] = (batch[key] - mean) / scale
        return batch

    def _raw_training_sample(self, seed: int) -> dict[str, Any]:
        if seed in self._pools:
            return self._pools[seed]
        return self.sample(self.n_train, torch.Generator().manual_seed(step_seed(seed, SubStream.POOL, 0)), 0)

    def training_sample(self, seed: Optional[int] = None) -> dict[str, Any]:
        """All ``n_train`` pairs of the fixed training sample of ``seed`` (default: the datamodule's), as the
        training batches serve them (standardised; ``x``, ``y``, ``mi``, ``pmi``): for in-sample diagnostics
        such as overfitting (in stream mode: the sample the standardisation statistics come from)."""
        seed = self.seed if seed is None else seed
        batch = {k: v for k, v in self._raw_training_sample(seed).items() if not k.startswith("latent_")}
        if self.standardize:
            statistics = self.standardization(seed)
            for variable in ("x", "y"):
                mean, scale = statistics[variable]
                batch[variable] = (batch[variable] - mean) / scale
        return batch

    def standardization(self, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
        """Per-coordinate ``(mean, std)`` of ``x`` and ``y`` over the training sample of ``seed`` (in stream mode:
        the sample the finite mode would train on). A constant coordinate keeps scale 1."""
        if seed not in self._statistics:
            sample = self._raw_training_sample(seed)
            statistics = {}
            for variable in ("x", "y"):
                values = sample[variable]
                std = values.std(dim=0)
                statistics[variable] = (values.mean(dim=0), torch.where(std > 0, std, torch.ones_like(std)))
            self._statistics[seed] = statistics
        return self._statistics[seed]
