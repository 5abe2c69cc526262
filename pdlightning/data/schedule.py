"""The true-MI staircase of the benchmark protocol (SMILE / PD / ReMINE codes)."""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["MISchedule"]


class MISchedule:
    """``levels[k]`` nats for ``steps_per_level`` steps each, in order.

    Args:
        levels: true MI per level in nats (finite, positive), e.g. ``[2, 4, 6, 8, 10]``.
        steps_per_level: steps spent on each level (4,000 in the papers).
    """

    def __init__(self, levels: Sequence[float], steps_per_level: int) -> None:
        levels = list(levels)
        if not levels:
            raise ValueError("mi_schedule: expected at least one MI level, got an empty list")
        for index, value in enumerate(levels):
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(
                    f"mi_schedule: every level must be a finite MI > 0 nats, got {value!r} at index {index} "
                    f"of {levels!r}"
                )
        if isinstance(steps_per_level, bool) or not (isinstance(steps_per_level, int) and steps_per_level > 0):
            raise ValueError(f"steps_per_level: expected a positive integer, got {steps_per_level!r}")
        self.levels = [float(v) for v in levels]
        self.steps_per_level = steps_per_level

    @property
    def total_steps(self) -> int:
        return len(self.levels) * self.steps_per_level

    def level_index(self, step: int) -> int:
        """Level of training step ``step`` (steps past the end stay on the last level)."""
        return min(step // self.steps_per_level, len(self.levels) - 1)

    def mi_at(self, step: int) -> float:
        return self.levels[self.level_index(step)]
