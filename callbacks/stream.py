"""The per-step stream ``(step, true MI, estimate)`` that the bias/variance and staircase callbacks
read. Values stay on the device as 0-d tensors until asked for, so recording costs no host sync."""

from __future__ import annotations

import csv
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from torch import Tensor

from pdlightning.bounds import StepRecord

from .output import logging_step

__all__ = ["EstimateStream", "MemberStreams"]


class EstimateStream:
    """Records the reported estimate and the batch's true MI of each training step."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self._true: list[Tensor | float] = []
        self._estimates: list[Tensor | float] = []
        #: candidates per row ``K = k + 1`` (joint + marginal pairs) of the first recorded step; the
        #: InfoNCE ceiling is ``log K`` (``log n`` for in-batch negatives).
        self.candidates: Optional[int] = None

    def __len__(self) -> int:
        return len(self.steps)

    def record_step(self, trainer: L.Trainer, record: Optional[StepRecord]) -> bool:
        """Record a training step's :class:`~pdlightning.bounds.StepRecord`; False (nothing recorded)
        when the step has no finite estimate or its batch carries no ``mi``."""
        if record is None or record.estimate is None:
            return False
        true_mi = record.true_mi
        if true_mi is None:
            return False
        self.record(logging_step(trainer), record.estimate.mi, true_mi)
        if self.candidates is None:
            self.candidates = int(record.estimate.scores.negatives_per_row) + 1
        return True

    def record(self, step: int, estimate: Tensor | float, true_mi: Tensor | float) -> None:
        self.steps.append(int(step))
        self._estimates.append(estimate.detach() if isinstance(estimate, Tensor) else float(estimate))
        self._true.append(true_mi.detach() if isinstance(true_mi, Tensor) else float(true_mi))

    @staticmethod
    def _floats(values: list[Tensor | float]) -> list[float]:
        tensors = {i: v for i, v in enumerate(values) if isinstance(v, Tensor)}
        if tensors:  # one transfer for everything recorded since the last call
            host = torch.stack([v.float().reshape(()) for v in tensors.values()]).cpu().tolist()
            for i, value in zip(tensors, host):
                values[i] = value  # cached: the next call transfers only what was recorded since
        return [v for v in values if not isinstance(v, Tensor)]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(steps, true_mi, estimates)`` as float64 arrays (steps as int64)."""
        return (
            np.asarray(self.steps, dtype=np.int64),
            np.asarray(self._floats(self._true), dtype=np.float64),
            np.asarray(self._floats(self._estimates), dtype=np.float64),
        )

    # ------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        steps, true_mi, estimates = self.arrays()
        return {
            "steps": steps.tolist(),
            "true_mi": true_mi.tolist(),
            "estimates": estimates.tolist(),
            "candidates": self.candidates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [int(s) for s in state["steps"]]
        self._true = [float(v) for v in state["true_mi"]]
        self._estimates = [float(v) for v in state["estimates"]]
        self.candidates = state.get("candidates")

    def to_csv(self, path: str) -> None:
        steps, true_mi, estimates = self.arrays()
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["step", "true_mi", "estimate"])
            writer.writerows(zip(steps.tolist(), true_mi.tolist(), estimates.tolist()))

    @classmethod
    def from_csv(cls, path: str) -> "EstimateStream":
        stream = cls()
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                stream.record(int(row["step"]), float(row["estimate"]), float(row["true_mi"]))
        return stream


class MemberStreams:
    """One :class:`EstimateStream` per ensemble member (``None``: a single module), with what the
    records said about each member's reporting bound (label, value ceiling)."""

    def __init__(self) -> None:
        self.streams: dict[Optional[str], EstimateStream] = {}
        self.labels: dict[Optional[str], str] = {}
        self.ceilings: dict[Optional[str], Optional[float]] = {}
        #: training steps that produced no estimate for a member (skipped, non-finite).
        self.skipped: dict[Optional[str], int] = {}

    def __getitem__(self, member: Optional[str]) -> EstimateStream:
        return self.streams.setdefault(member, EstimateStream())

    def record_step(self, trainer: L.Trainer, record: StepRecord) -> bool:
        """Record one member's step (see :meth:`EstimateStream.record_step`)."""
        member = record.member
        if member not in self.labels and record.reporting_bound is not None:
            self.labels[member] = record.reporting_bound.label
        if record.skipped or record.estimate is None:
            self.skipped[member] = self.skipped.get(member, 0) + 1
        recorded = self[member].record_step(trainer, record)
        if recorded and member not in self.ceilings:
            self.ceilings[member] = record.ceiling
        return recorded

    def recorded_members(self) -> list[Optional[str]]:
        """Members with at least one recorded step, in first-seen order."""
        return [m for m, stream in self.streams.items() if len(stream)]

    @property
    def is_ensemble(self) -> bool:
        return any(m is not None for m in self.streams)

    def title(self, member: Optional[str]) -> str:
        label = self.labels.get(member, "estimate")
        return label if member is None else f"{member}: {label}"

    def ceiling(self, member: Optional[str]) -> Optional[float]:
        return self.ceilings.get(member)

    # ------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        return {
            "members": [
                {
                    "member": m,
                    "stream": s.state_dict(),
                    "label": self.labels.get(m),
                    "ceiling": self.ceilings.get(m),
                    "skipped": self.skipped.get(m, 0),
                }
                for m, s in self.streams.items()
            ]
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        for entry in state.get("members", []):
            member = entry["member"]
            self[member].load_state_dict(entry["stream"])
            if entry.get("label") is not None:
                self.labels[member] = entry["label"]
            if len(self[member]):
                self.ceilings[member] = entry.get("ceiling")
            self.skipped[member] = int(entry.get("skipped", 0))
