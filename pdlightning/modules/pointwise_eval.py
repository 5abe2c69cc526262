"""What an evaluation step hands to the callbacks: each pair's estimated PMI next to its exact PMI.

For batches that carry the exact PMI of their pairs (key ``pmi``; the task suite's batches do, see
:class:`~pdlightning.data.TaskDataModule`), a module's ``validation_step`` / ``test_step`` returns
``{"record": PointwiseRecord}`` and callbacks (:class:`~pdlightning.callbacks.PointwiseAccuracy`) read it with
:func:`pointwise_records` in ``on_{validation,test}_batch_end``. The module -> callback contract of evaluation, as
:class:`~pdlightning.bounds.StepRecord` is that of training; an ensemble returns one record per member.

Each pair's PMI is a function of the pair alone (:func:`~.pmi_reference.reference_pmi`: batch statistics of DV /
SMILE / InfoNCE from the fixed reference sample), for the joint pairs ``(x_i, y_i)`` and, when the batch carries
them, the explicit product-of-marginals pairs ``(x_product_i, y_product_i)``. Those keys are read here only; the
bound's MI estimate of the batch stays the in-batch one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from ..bounds import Bound
from ..critics import Critic
from .pmi_reference import ReferenceSample, reference_pmi

__all__ = ["PointwiseRecord", "pointwise_record", "pointwise_records"]


@dataclass
class PointwiseRecord:
    """Estimated and exact PMI of one evaluation batch's pairs (not frozen: Lightning may rebuild dataclasses).

    Attributes:
        stage: ``"val"`` or ``"test"``.
        pmi: ``[n]`` estimated ``log r_hat(x_i, y_i)`` of the joint pairs (float32).
        pmi_true: ``[n]`` their exact PMI.
        pmi_product: ``[n]`` estimated PMI of the batch's explicit product-of-marginals pairs, or ``None``.
        pmi_product_true: ``[n]`` their exact PMI (``-inf`` outside the joint support), or ``None``.
        true_mi: the batch's true MI (its level), or ``None``.
        bound_label: the reporting bound's label (e.g. ``SMILE(τ=5)``).
        up_to_constant: the estimate is defined only up to a constant
            (:attr:`~pdlightning.bounds.Bound.pmi_up_to_constant`: report shift-invariant statistics only).
        member: name of the ensemble member (``None`` for a single module).
    """

    stage: str
    pmi: Tensor
    pmi_true: Tensor
    pmi_product: Optional[Tensor] = None
    pmi_product_true: Optional[Tensor] = None
    true_mi: Optional[float] = None
    bound_label: str = ""
    up_to_constant: bool = False
    member: Optional[str] = None


def pointwise_record(
    bound: Bound,
    critic: Critic,
    batch: Any,
    level: Optional[float],
    reference: Optional[ReferenceSample],
    stage: str,
    version: int = 0,
    member: Optional[str] = None,
) -> Optional[PointwiseRecord]:
    """The record of ``batch`` (``None`` when it carries no exact ``pmi``).

    ``reference=None`` takes a normalising bound's statistics from the batch: its own in-batch definition for the
    joint pairs, and the batch's pairs as the reference of its product pairs (whose in-batch matrix would mix the
    joint pairs into their negatives).
    """
    if not isinstance(batch, Mapping) or "pmi" not in batch:
        return None
    x, y = batch["x"], batch["y"]
    with torch.no_grad():
        pmi = reference_pmi(bound, critic, x, y, level, reference, version=version)
        product = None
        if "x_product" in batch:
            if reference is None and bound.pmi_normalizer is not None:
                reference = ReferenceSample({level: (x, y)})
            product = reference_pmi(
                bound, critic, batch["x_product"], batch["y_product"], level, reference, version=version
            ).float()
    return PointwiseRecord(
        stage=stage,
        pmi=pmi.float(),
        pmi_true=batch["pmi"],
        pmi_product=product,
        pmi_product_true=batch.get("pmi_product") if product is not None else None,
        true_mi=level,
        bound_label=bound.label,
        up_to_constant=bool(bound.pmi_up_to_constant),
        member=member,
    )


def pointwise_records(outputs: Any) -> list[PointwiseRecord]:
    """The :class:`PointwiseRecord` s of an evaluation step's ``outputs``: one for a single module, one per member
    for an ensemble, none when the batch had no exact PMI."""
    if not isinstance(outputs, Mapping):
        return []
    record = outputs.get("record")
    if isinstance(record, PointwiseRecord):
        return [record]
    if isinstance(record, (list, tuple)):
        return [r for r in record if isinstance(r, PointwiseRecord)]
    return []
