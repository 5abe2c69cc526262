"""The base of every synthetic task: a seeded stream that resumes exactly, and held-out sets.

A task says how to draw ``n`` pairs from a generator (:meth:`SyntheticDataModule.sample`) and which
settings determine them (:meth:`~SyntheticDataModule.identity`); the base owns everything else:

- **The training stream.** Batch ``t`` is a pure function of ``(seed, t)``: it is drawn with a
  generator seeded from sub-stream :attr:`SubStream.TRAIN` of ``seed`` at ``t``
  (:func:`~.stream.step_seed`). One epoch is ``steps`` batches.
- **The loader position on resume.** The training loader (:class:`~.stream.StreamLoader`) starts at
  the restored trainer's ``global_step`` and checkpoints its next step and the stream's identity, so
  a fit killed and resumed sees exactly the batches of an uninterrupted one (and is warned when the
  settings changed since the checkpoint).
- **The held-out sets.** Validation and test (= predict) batches come from the sub-streams
  :attr:`SubStream.VAL` and :attr:`SubStream.TEST` of the same seed, never from the training one.
- **The finite-sample protocol** (``train_pool=N``): instead of a fresh batch every step, a fixed
  sample of ``N`` training pairs (one ``sample(N, ..., step=0)`` from :attr:`SubStream.POOL`) is
  served as minibatches in a seeded order reshuffled every pass (pass ``e``'s permutation drawn from
  :attr:`SubStream.SHUFFLE` at ``e``; the ``N mod batch_size`` pairs at its end sit that pass out);
  batch ``t`` is still a pure function of ``(seed, t)``, so this mode resumes exactly too. The
  tensors of the sample whose first dimension is ``N`` are per-pair (``x``, ``y``, a per-pair
  ``pmi``), the others (``mi``) are passed through. Evaluation stays on the held-out sub-streams,
  disjoint from the sample (an evaluation set of ``N`` pairs: ``eval_batches * eval_batch_size = N``).
- **Replicates** (``replicas=K``): every batch stacks ``K`` independent streams along a new first
  dimension (``x: [K, n, ...]``, ``mi: [K]``); replicate ``k`` is the stream of seed
  ``replica_seed(seed, k)``, the exact batches a datamodule with that seed yields. For vectorised
  ensembles; the MI modules of this package take unstacked batches (``replicas=None``).

A new synthetic task is one subclass: ``sample``, ``identity``, the ``x_dim`` / ``y_dim`` attributes
and its own arguments (validated, then the base's passed to ``super().__init__``); ``held_out_steps``
when its distribution changes over training (the MI staircase).
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Optional

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .batch import check_batch_sizes
from .stream import SeededStream, StreamLoader, replica_seed, step_seed

__all__ = ["SubStream", "SyntheticDataModule", "check_count"]


class SubStream(enum.IntEnum):
    """The disjoint sub-streams of one seed (the ``stream`` argument of :func:`~.stream.step_seed`)."""

    TRAIN = 0
    VAL = 1
    TEST = 2
    POOL = 3
    SHUFFLE = 4


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` if it is an integer ``>= minimum``, else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not (isinstance(value, int) and value >= minimum):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _generator(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, stream, index))


class _HeldOut(Dataset):
    """Held-out batch ``i`` of one sub-stream (map-style, so Lightning counts and limits it)."""

    def __init__(self, datamodule: "SyntheticDataModule", stream: SubStream) -> None:
        self.datamodule, self.stream = datamodule, stream

    def __len__(self) -> int:
        return len(self.datamodule.held_out_steps())

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.datamodule.batch_at(index, self.stream)


class SyntheticDataModule(L.LightningDataModule):
    """Base of the synthetic tasks (see the module docstring for what it owns).

    Args:
        batch_size: pairs per training batch.
        steps: training batches per epoch.
        seed: seed of every sub-stream.
        eval_batches: held-out batches per validation / test run (see :meth:`held_out_steps`).
        eval_batch_size: pairs per held-out batch (default ``batch_size``).
        replicas: stack this many independent replicate streams per batch (``None``: one, unstacked).
        train_pool: train on a fixed sample of this many pairs (the finite-sample protocol; ``None``:
            a fresh batch every step).
    """

    #: the sizes of ``x`` / ``y`` per pair (``[n, x_dim]``, ``[n, y_dim]``), set by the task
    #: (:class:`~.protocol.HasPairDims`)
    x_dim: int
    y_dim: int
    #: whether a batch's other pairs are its negatives (then a batch needs at least 2 pairs); a task
    #: that supplies explicit ``x_marginal`` / ``y_marginal`` pairs sets it to False.
    in_batch_negatives: ClassVar[bool] = True

    def __init__(
        self,
        batch_size: int,
        steps: int,
        seed: int = 0,
        eval_batches: int = 8,
        eval_batch_size: Optional[int] = None,
        replicas: Optional[int] = None,
        train_pool: Optional[int] = None,
    ) -> None:
        super().__init__()
        if self.in_batch_negatives:
            batch_size, eval_batch_size = check_batch_sizes(batch_size, eval_batch_size)
        else:
            batch_size = check_count(batch_size, "batch_size")
            eval_batch_size = check_count(batch_size if eval_batch_size is None else eval_batch_size, "eval_batch_size")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.steps, self.eval_batches = check_count(steps, "steps"), check_count(eval_batches, "eval_batches")
        self.replicas = None if replicas is None else check_count(replicas, "replicas")
        self.train_pool = None if train_pool is None else check_count(train_pool, "train_pool", batch_size)
        self.seed = seed
        self._pools: dict[int, dict[str, Tensor]] = {}
        self.train_stream = SeededStream(self.batch_at, self.steps, self.stream_identity, type(self).__name__)

    # ---------------------------------------------------------------------------- what a task defines
    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, Any]:
        """``n`` pairs drawn with ``generator`` as the training distribution stands at ``step``: a
        batch of the contract of :mod:`.batch` (``x``, ``y`` ``[n, ...]``, optionally ``mi`` ...)."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """The task's settings that determine its batches (beyond seed, batch size and steps)."""
        raise NotImplementedError

    def held_out_steps(self) -> list[int]:
        """Held-out batch ``i`` is drawn as the training distribution stands at step ``held_out_steps()[i]``
        (default: ``eval_batches`` batches at step 0, for a task whose distribution does not change)."""
        return [0] * self.eval_batches

    # ------------------------------------------------------------------------------ pure functions
    def stream_identity(self) -> dict[str, Any]:
        """Everything that determines the training batches (stored in checkpoints, compared on resume)."""
        options = {k: v for k, v in (("replicas", self.replicas), ("train_pool", self.train_pool)) if v is not None}
        return {"seed": self.seed, "batch_size": self.batch_size, "steps": self.steps, **self.identity(), **options}

    def batch_at(self, step: int, stream: SubStream = SubStream.TRAIN) -> dict[str, Any]:
        """Batch ``step`` of ``stream`` (training step, or held-out batch index): a pure function of
        the settings, ``step`` and ``stream``; with ``replicas`` the replicate batches stacked."""
        if self.replicas is None:
            return self.replica_batch(self.seed, step, stream)
        batches = [self.replica_batch(replica_seed(self.seed, k), step, stream) for k in range(self.replicas)]
        return {
            key: torch.stack([batch[key] for batch in batches])
            if isinstance(batches[0][key], Tensor)
            else batches[0][key]
            for key in batches[0]
        }

    def replica_batch(self, seed: int, step: int, stream: SubStream = SubStream.TRAIN) -> dict[str, Any]:
        """Batch ``step`` of ``stream`` of the single stream of ``seed``."""
        if stream != SubStream.TRAIN:
            return self.sample(self.eval_batch_size, _generator(seed, stream, step), self.held_out_steps()[step])
        size = self.train_pool
        if size is None:
            return self.sample(self.batch_size, _generator(seed, SubStream.TRAIN, step), step)
        if seed not in self._pools:  # the fixed sample: per-row tensors are [train_pool, ...]
            self._pools[seed] = self.sample(size, _generator(seed, SubStream.POOL, 0), 0)
        per_pass = size // self.batch_size
        order = torch.randperm(size, generator=_generator(seed, SubStream.SHUFFLE, step // per_pass))
        rows = order[(step % per_pass) * self.batch_size : (step % per_pass + 1) * self.batch_size]
        return {
            key: value[rows] if isinstance(value, Tensor) and value.dim() and value.shape[0] == size else value
            for key, value in self._pools[seed].items()
        }

    # ------------------------------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        # Resume where the restored trainer stands: batch t is a function of (seed, t) only.
        self.train_stream.start_step = self.trainer.global_step if self.trainer is not None else 0
        if self.trainer is not None and getattr(self.trainer, "world_size", 1) > 1:
            rank_zero_warn(
                f"data: every process draws the same training batches of {type(self).__name__} (batch t is a "
                f"function of the seed and t), so this {self.trainer.world_size}-process fit computes the "
                "one-process fit on every process; run it on one device, or use the devices for more members "
                "(model.init_args.members) in one fit",
                category=UserWarning,
            )
        return StreamLoader(self.train_stream, position=self._position)

    def _position(self) -> int:
        return self.trainer.global_step if self.trainer is not None else self.train_stream.start_step

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_HeldOut(self, SubStream.VAL), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(_HeldOut(self, SubStream.TEST), batch_size=None)

    def predict_dataloader(self) -> DataLoader:
        """The test batches: ``pdlightning predict`` gives the PMI of each held-out pair."""
        return self.test_dataloader()
