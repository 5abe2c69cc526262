"""Per-level critic snapshots: each MI level of a staircase is evaluated by the critic as it was at the
end of that level's training, not by the final critic (trained last on the highest level).

On the MI staircase (SMILE / PD / ReMINE protocol) training moves through levels 2, 4, ..., 10 nats;
a critic trained last at 10 nats says nothing about how well the estimator did at 2 nats (it reads
e.g. -6.6 nats there). A snapshot of the module's state is taken whenever the training batches'
true MI changes level, and at the end of training; evaluation of a batch at level ``L`` then swaps in
the snapshot of ``L``. Snapshots are checkpointed, so a resumed fit keeps them.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

__all__ = ["LevelSnapshots", "batch_level"]


def batch_level(batch: Any) -> Optional[float]:
    """The true MI a batch carries (its mean, as a float), or ``None``. The package's datamodules give it as a
    Python number, which costs nothing to read; a tensor on a GPU costs a device synchronisation."""
    if not isinstance(batch, Mapping) or "mi" not in batch:
        return None
    value = batch["mi"]
    if isinstance(value, (int, float)):
        return float(value)
    return float(torch.as_tensor(value).double().mean())


class LevelSnapshots:
    """Snapshots of ``module``'s state at the end of each trained MI level, and swapping them in.

    ``state`` of a snapshot is the module's full ``state_dict`` (critic and bound state: MINE's
    average, a learned baseline, the classifier's prior ratio all belong to the level's estimator).
    """

    def __init__(self) -> None:
        self.snapshots: dict[float, dict[str, Tensor]] = {}
        self.training_level: Optional[float] = None
        self._live_state: Optional[dict[str, Tensor]] = None
        self._loaded: Optional[float] = None

    # --------------------------------------------------------------------------------- training
    def observe_training_batch(self, module: nn.Module, batch: Any) -> None:
        """Call before a training step: when the level changes, the weights are the previous
        level's final weights."""
        self.observe_level(module, batch_level(batch))

    def observe_level(self, module: nn.Module, level: Optional[float]) -> None:
        """As :meth:`observe_training_batch`, with the batch's level already read (on the host)."""
        if level is None:
            return
        if self.training_level is not None and level != self.training_level:
            self.snapshots[self.training_level] = _copy(module.state_dict())
        self.training_level = level

    def training_ended(self, module: nn.Module) -> None:
        """The last trained level ends with training (kept only when there are several levels:
        with one, the final weights are that level's)."""
        if self.training_level is not None and self.snapshots:
            self.snapshots[self.training_level] = _copy(module.state_dict())

    # ------------------------------------------------------------------------------- evaluation
    def describe(self, level: Optional[float]) -> str:
        """Which weights evaluate ``level``."""
        if level is not None and level == self.training_level:
            return f"end of level {level:g} (final)"
        if level is not None and level in self.snapshots:
            return f"end of level {level:g}"
        return "final weights"

    def use_for(self, module: nn.Module, level: Optional[float]) -> None:
        """Load the snapshot of ``level`` into ``module`` (or the live weights when there is none)."""
        target = level if level is not None and level in self.snapshots else None
        if target == self._loaded:
            return
        if self._live_state is None:
            self._live_state = _copy(module.state_dict())
        module.load_state_dict(self.snapshots[target] if target is not None else self._live_state)
        self._loaded = target

    @property
    def loaded(self) -> Optional[float]:
        """The level whose snapshot is in the module now (``None``: the live weights)."""
        return self._loaded

    def restore(self, module: nn.Module) -> None:
        """Put the live (latest) weights back after an evaluation."""
        if self._live_state is not None and self._loaded is not None:
            module.load_state_dict(self._live_state)
        self._live_state, self._loaded = None, None

    # ------------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": {repr(k): v for k, v in self.snapshots.items()}, "training_level": self.training_level}

    def load_state_dict(self, state: Optional[Mapping[str, Any]]) -> None:
        state = state or {}
        self.snapshots = {float(k): dict(v) for k, v in state.get("snapshots", {}).items()}
        self.training_level = state.get("training_level")


def _copy(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}
