"""The records a fit hands to everything that observes it, and who each number belongs to.

One fit trains ``K >= 1`` *members* (estimators) at once (:class:`~pdlightning.modules.MIEstimationModule`).
What a step or an evaluation produced is handed over *stacked* over the members, ``[K]`` or ``[K, n]``
tensors that stay on the device, never split member by member (a split costs ``K`` operations per step,
and on a GPU every operation is a kernel launch):

- :class:`StepRecord`: a training step's values (loss, reported estimate, both bounds' terms, extras, the
  scores the reporting bound saw, which members stepped and reported) for the callbacks
  (``outputs["record"]`` in ``on_train_batch_end``, read with :func:`step_records`);
- :class:`PointwiseRecord`: an evaluation batch's per-pair PMI estimates next to the exact PMI;
- :class:`MemberInfo`: what never changes during a fit: a member's :class:`MemberId` and its bounds' labels.

Callbacks import this module and nothing of :mod:`pdlightning.modules`; modules import no callbacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

__all__ = [
    "MEMBER_NAME",
    "MemberId",
    "MemberInfo",
    "StepRecord",
    "PointwiseRecord",
    "member_ids",
    "step_records",
    "pointwise_records",
]

#: what a member's name may contain (it appears in metric tags, file names and table rows).
MEMBER_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True, order=True)
class MemberId:
    """One member of a fit: estimator ``key``, ``seed``, and the unique ``name`` it is logged under.

    Attributes:
        key: the estimator's fragment key (``nwj``, ``smile_tau5``), or for a bound given inline by
            ``class_path`` a name chosen for it.
        seed: the seed its critic was initialised from (and, with replica streams, its data stream's).
        name: its label in logs, tables and checkpoints; unique within a fit (letters, digits, ``_``, ``-``).
    """

    key: str
    seed: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.key, str) and MEMBER_NAME.match(self.key)):
            raise ValueError(f"member key: expected letters, digits, '_' or '-', got {self.key!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"member seed ({self.key}): expected an integer, got {self.seed!r}")
        if not self.name:
            object.__setattr__(self, "name", self.key)
        if not (isinstance(self.name, str) and MEMBER_NAME.match(self.name)):
            raise ValueError(f"member name: expected letters, digits, '_' or '-', got {self.name!r}")

    @classmethod
    def replicate(cls, key: str, seed: int) -> "MemberId":
        """The member of estimator ``key`` at ``seed`` in a fit of several seeds: named ``<key>_s<seed>``."""
        return cls(key, seed, f"{key}_s{seed}")

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "seed": self.seed, "name": self.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MemberId":
        return cls(str(data["key"]), int(data.get("seed", 0)), str(data.get("name") or data["key"]))

    @classmethod
    def from_legacy_name(cls, name: str, seed_offset: int = 0) -> "MemberId":
        """The identity behind a member name written before identities were stored: ``<key>-seed<s>``
        (the report's replicate ``s``, trained from seed ``seed_offset + s``), else the name is the key."""
        key, separator, index = name.rpartition("-seed")
        if separator and key and index.isdigit():
            return cls(key, seed_offset + int(index), name)
        return cls(name, seed_offset, name)

    def __str__(self) -> str:
        return self.name


def member_ids(entries: Optional[Sequence[Mapping[str, Any]]]) -> list[MemberId]:
    """:class:`MemberId` s of a stored list (``results.json``, ``run.json``, a checkpoint)."""
    return [MemberId.from_json(entry) for entry in entries or []]


@dataclass(frozen=True)
class MemberInfo:
    """What a callback may want to know about a member and that does not change during a fit.

    Attributes:
        id: the member's identity.
        label: its reporting bound's label with parameters (``SMILE(τ=5)``).
        training_label: its training bound's label.
        second_term_target: the value its training bound's regulariser pins the second term to (Re-X's ``C*``).
        ceiling_of: ``negatives per row -> the largest value the reporting bound can give`` (InfoNCE:
            ``log(k + 1)``), ``None`` when it has no ceiling; see :meth:`ceiling`. Not stored (not plain data).
    """

    id: MemberId
    label: str
    training_label: str
    second_term_target: Optional[float] = None
    ceiling_of: Optional[Callable[[int], Optional[float]]] = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.id.name

    def ceiling(self, negatives_per_row: int) -> Optional[float]:
        """The largest value the reporting bound can report with ``negatives_per_row`` marginal pairs per row."""
        return None if self.ceiling_of is None else self.ceiling_of(negatives_per_row)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.id.as_json(),
            "label": self.label,
            "training_label": self.training_label,
            "second_term_target": self.second_term_target,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MemberInfo":
        return cls(
            MemberId.from_json(data),
            data["label"],
            data.get("training_label", data["label"]),
            data.get("second_term_target"),
        )


@dataclass
class StepRecord:
    """A training step of every member, stacked (not frozen: Lightning's ``apply_to_collection`` rebuilds
    dataclasses it walks, which a frozen one refuses).

    Every tensor is detached and has the members on its leading axis, in the order of :attr:`members`.
    A member that did not report this step (its estimate was non-finite, or it is retired) has
    ``reported[k] = False`` and a meaningless ``estimate[k]``; one whose optimiser step was skipped has
    ``stepped[k] = False``. Read per member on the host: :meth:`host` moves the scalars in one transfer.

    Attributes:
        members: the members' :class:`MemberInfo`, ``K`` of them.
        batch: the batch the step trained on (with replica streams: all streams, ``[R, n, ...]``).
        loss: ``[K]`` training losses.
        estimate: ``[K]`` reported MI estimates (the reporting bound's value).
        first_term, second_term: ``[K]`` the reporting bound's terms (``estimate = first - second``).
        train_first_term, train_second_term: ``[K]`` the training bound's terms (equal to the reporting
            ones for a member without a separate estimator).
        extras: ``{name: [K]}`` the training bounds' extra scalars (``eta``, ``regularizer``, ...); NaN for
            members whose bound has no such extra.
        reported: ``[K]`` bool, the estimate is finite and the member is active.
        stepped: ``[K]`` bool, the member takes part in this step (active with a finite loss; a non-finite
            gradient found after backward can still skip it: counted by the guard).
        joint: ``[K, n]`` float32 scores of the joint pairs the reporting bound saw.
        marginal: ``[K, n, k]`` float32 scores of the product-of-marginals pairs (``k`` per row).
        true_mi: the batch's true MI (a float, read on the host before the batch moved), or ``None``.
    """

    members: tuple[MemberInfo, ...]
    batch: Optional[Mapping[str, Any]]
    loss: Tensor
    estimate: Tensor
    first_term: Tensor
    second_term: Tensor
    train_first_term: Tensor
    train_second_term: Tensor
    extras: dict[str, Tensor]
    reported: Tensor
    stepped: Tensor
    joint: Tensor
    marginal: Tensor
    true_mi: Optional[float] = None

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def negatives_per_row(self) -> int:
        return int(self.marginal.shape[-1])

    def ceilings(self) -> list[Optional[float]]:
        """Each member's value ceiling at this step's number of negatives per row."""
        return [m.ceiling(self.negatives_per_row) for m in self.members]

    def host(self, fields: Sequence[str] = ("estimate", "first_term", "second_term", "reported")) -> dict[str, list]:
        """``{field: [K] Python values}`` of the named ``[K]`` fields (``extras.<name>`` for an extra), moved to
        the host in one transfer; bool fields come back as bools."""
        tensors = [self.extras[f[len("extras.") :]] if f.startswith("extras.") else getattr(self, f) for f in fields]
        values = torch.stack([t.detach().float() for t in tensors]).cpu().tolist()
        return {
            f: [bool(v) for v in row] if t.dtype == torch.bool else row for f, row, t in zip(fields, values, tensors)
        }


@dataclass
class PointwiseRecord:
    """Estimated and exact PMI of one evaluation batch's pairs, for every member (not frozen: Lightning may
    rebuild dataclasses).

    Attributes:
        stage: ``"val"`` or ``"test"``.
        members: the members' :class:`MemberInfo`, ``K`` of them (those that evaluated this batch).
        pmi: ``[K, n]`` estimated ``log r_hat(x_i, y_i)`` of the joint pairs (float32).
        pmi_true: ``[n]`` their exact PMI.
        pmi_product: ``[K, n]`` estimated PMI of the batch's explicit product-of-marginals pairs, or ``None``.
        pmi_product_true: ``[n]`` their exact PMI (``-inf`` outside the joint support), or ``None``.
        true_mi: the batch's true MI (its level), or ``None``.
        up_to_constant: ``[K]`` per member, its estimate is defined only up to a constant
            (:attr:`~pdlightning.bounds.Bound.pmi_up_to_constant`: report shift-invariant statistics only).
    """

    stage: str
    members: tuple[MemberInfo, ...]
    pmi: Tensor
    pmi_true: Tensor
    pmi_product: Optional[Tensor] = None
    pmi_product_true: Optional[Tensor] = None
    true_mi: Optional[float] = None
    up_to_constant: tuple[bool, ...] = field(default_factory=tuple)


def _records(outputs: Any, kind: type) -> list[Any]:
    if not isinstance(outputs, Mapping):
        return []
    record = outputs.get("record")
    if isinstance(record, kind):
        return [record]
    if isinstance(record, (list, tuple)):
        return [r for r in record if isinstance(r, kind)]
    return []


def step_records(outputs: Any) -> list[StepRecord]:
    """The :class:`StepRecord` of a training step's ``outputs`` (as ``on_train_batch_end`` gets them): one,
    or none when the step produced nothing (it was skipped altogether)."""
    return _records(outputs, StepRecord)


def pointwise_records(outputs: Any) -> list[PointwiseRecord]:
    """The :class:`PointwiseRecord` of an evaluation step's ``outputs``; none when the batch had no exact PMI."""
    return _records(outputs, PointwiseRecord)
