"""A single member's StepRecord built from BoundOutputs, for callback tests on hand-made steps."""

from __future__ import annotations

from typing import Any, Optional

import torch

from pdlightning.bounds import Bound, BoundOutput
from pdlightning.modules.level_snapshots import batch_level
from pdlightning.records import MemberId, MemberInfo, StepRecord


def single_record(
    estimate: BoundOutput, batch: Any, bound: Bound, training: Optional[BoundOutput] = None
) -> StepRecord:
    """The record of one member that trained to ``training`` (default: ``estimate``) and reported ``estimate``."""
    trained = estimate if training is None else training
    info = MemberInfo(MemberId("member"), bound.label, bound.label, bound.second_term_target, bound.value_ceiling)

    def one(value: torch.Tensor) -> torch.Tensor:
        return value.detach().float().reshape(1)

    first, second = one(estimate.first_term), one(estimate.second_term)
    return StepRecord(
        members=(info,),
        batch=batch,
        loss=one(trained.loss),
        estimate=one(estimate.mi),
        first_term=first,
        second_term=second,
        # the same tensors when the member reports its training bound (what the engine hands over)
        train_first_term=first if training is None else one(trained.first_term),
        train_second_term=second if training is None else one(trained.second_term),
        extras={},
        reported=torch.isfinite(estimate.mi).reshape(1),
        stepped=torch.ones(1, dtype=torch.bool),
        joint=estimate.scores.joint.unsqueeze(0),
        marginal=estimate.scores.marginal.unsqueeze(0),
        true_mi=batch_level(batch),
    )
