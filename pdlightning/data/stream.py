"""Seeded synthetic streams that resume exactly: batch ``t`` is a pure function of ``(seed, t)``."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator, Optional

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

__all__ = ["step_seed", "SeededStream", "StreamLoader"]


def step_seed(seed: int, stream: int, step: int) -> int:
    """Seed of batch ``step`` of sub-stream ``stream`` (0 = training, 1 = validation, 2 = test)."""
    return (seed * 1_000_003 + stream * 7_919 + step * 2_654_435_761) % (2**63 - 1)


class SeededStream(IterableDataset):
    """Yields whole batches ``batch_at(t)`` for ``t = start_step .. total_steps - 1``.

    ``start_step`` is where a resumed fit stands; ``len`` stays the whole epoch's length, so that
    Lightning's restored batch counter and the stream end together (a shorter ``len`` would end a
    resumed epoch early). Subclasses define ``total_steps``, ``sample(step, generator)`` and
    ``identity()`` (the settings that determine the batches).
    """

    total_steps: int
    seed: int

    def __init__(self) -> None:
        self.start_step = 0

    def sample(self, step: int, generator: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        raise NotImplementedError

    def batch_at(self, step: int, stream: int = 0) -> dict[str, Tensor]:
        return self.sample(step, torch.Generator().manual_seed(step_seed(self.seed, stream, step)))

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
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
            warnings.warn(f"data: resuming a {type(self.stream).__name__} whose settings changed since the "
                          f"checkpoint ({details}); the batches will not match the interrupted run", UserWarning)
        if "next_step" in state:
            self.stream.start_step = int(state["next_step"])
