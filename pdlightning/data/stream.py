"""Seeded streams that resume exactly: batch ``t`` is a pure function of ``(seed, t)``."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator, Mapping, Optional

import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

__all__ = ["step_seed", "replica_seed", "SeededStream", "StreamLoader"]


def step_seed(seed: int, stream: int, step: int) -> int:
    """Seed of batch ``step`` of sub-stream ``stream`` of ``seed`` (see :class:`~.synthetic.SubStream`)."""
    return (seed * 1_000_003 + stream * 7_919 + step * 2_654_435_761) % (2**63 - 1)


def replica_seed(seed: int, replica: int) -> int:
    """The seed of replicate stream ``replica`` of ``seed``: NumPy's ``SeedSequence`` hash of
    ``(seed, replica)``, a 63-bit integer, so replicate streams of nearby seeds do not overlap."""
    state = np.random.SeedSequence([seed % (2**63 - 1), replica]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) % (2**63 - 1)


class SeededStream(IterableDataset):
    """Yields whole batches ``batch_at(t)`` for ``t = start_step .. total_steps - 1``.

    ``start_step`` is where a resumed fit stands; ``len`` stays the whole epoch's length, so that
    Lightning's restored batch counter and the stream end together (a shorter ``len`` would end a
    resumed epoch early).

    Args:
        batch_at: the batch of training step ``t`` (a pure function of the stream's settings and ``t``).
        total_steps: batches per epoch.
        identity: the settings that determine the batches (checked when a checkpoint is loaded).
        name: what warnings call the stream (its datamodule's class name).
    """

    def __init__(
        self,
        batch_at: Callable[[int], Mapping[str, Tensor]],
        total_steps: int,
        identity: Callable[[], dict[str, Any]],
        name: str = "stream",
    ) -> None:
        self.batch_at, self.total_steps, self.identity, self.name = batch_at, total_steps, identity, name
        self.start_step = 0

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for step in range(self.start_step, self.total_steps):
            yield self.batch_at(step)

    def __len__(self) -> int:
        return self.total_steps


class StreamLoader(DataLoader):
    """The training loader of a :class:`SeededStream`, resumable in Lightning's sense.

    Lightning checkpoints a loader that has ``state_dict`` / ``load_state_dict`` (and otherwise warns
    that a mid-epoch resume "can cause unreliable results"). The state is the step of the next batch
    (the trainer's ``global_step`` when the checkpoint is written) and the stream's identity; loading
    it restarts the stream there, and warns if the seed, sizes or schedule changed since.
    """

    def __init__(self, stream: SeededStream, position: Optional[Callable[[], int]] = None) -> None:
        super().__init__(stream, batch_size=None)
        self.stream = stream
        self.position = position

    def state_dict(self) -> dict[str, Any]:
        step = self.position() if self.position is not None else self.stream.start_step
        return {"next_step": int(step), "stream": self.stream.identity()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        current = self.stream.identity()
        changed = {k: (v, current.get(k)) for k, v in state.get("stream", {}).items() if current.get(k) != v}
        if changed:
            details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            warnings.warn(
                f"data: resuming a {self.stream.name} whose settings changed since the checkpoint "
                f"({details}); the batches will not match the interrupted run",
                UserWarning,
                stacklevel=2,
            )
        if "next_step" in state:
            self.stream.start_step = int(state["next_step"])
