"""The one training step of every module that trains on a bound: ``K`` members, stacked, at a cost that does
not grow with ``K`` in operations.

A subclass computes every member's scores, ``joint [K, n]`` and ``marginal [K, n, m]``, and returns
:meth:`EstimationEngine.finish_step` from ``training_step``. The engine then

1. evaluates the members' training and reporting bounds, one call per bound structure
   (:class:`~.bound_stack.BoundStack`);
2. watches them for non-finite values on the device (:class:`~.finite.MemberGuard`): a member whose loss is
   not finite leaves this step, and after backward one whose gradients are not finite too (the optimiser's
   update mask, :mod:`.optim`), with no host synchronisation;
3. returns the sum of the members' losses (member ``k``'s gradient is its own loss's) and one
   :class:`~pdlightning.records.StepRecord` of the stacked values for the callbacks;
4. on logging steps only (``log_every_n_steps``), moves the step's scalars and the guard's state to the host in
   one transfer, logs them (``mi/estimate[/<member>]``, ``train/loss``, ``bound/first_term``,
   ``bound/second_term``, the bounds' extras under ``bound/``, ``mi/true``, the guard's counts) and lets the
   guard act (raise, warn, retire: :meth:`~.finite.MemberGuard.sync`).

With one member the tags carry no member name, as a single fit's always did. Non-finite values are never
logged. Used by :class:`~pdlightning.modules.MIEstimationModule` (``K`` critics, stacked) and
:class:`~pdlightning.modules.ContrastiveSSLModule` (one member: encoders and a critic).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from ..records import MemberInfo, StepRecord
from ..step_logging import is_logging_step, log_host_scalars, logging_step
from .base import ConfiguredModule
from .bound_stack import BoundStack, StackedOutputs
from .finite import DivergencePolicy, MemberGuard, NonFinitePolicy
from .level_snapshots import batch_level
from .members import ResolvedMember
from .optim import MemberRows, RestoreLeftOut, _MemberOptimizer, member_optimizer
from .stacking import Stack

__all__ = ["EstimationEngine", "true_mi_of"]

true_mi_of = batch_level


class EstimationEngine(ConfiguredModule):
    """Base of the modules that train ``K`` members on bounds (module docstring).

    A subclass calls :meth:`setup_members` in its ``__init__`` (after ``super().__init__``) and implements
    :meth:`member_rows` (which parameters belong to which member).

    Args:
        optimizer, scheduler: factories (see :class:`~.base.ConfiguredModule`); ``torch.optim.Adam``, ``AdamW``
            and ``SGD`` run as their member-aware versions (:mod:`.optim`).
        non_finite, max_consecutive_skips, on_member_divergence: the guard's policies (:mod:`.finite`).
        aux_lr: learning rate of the bounds' own parameters (eta-DV's ``eta``, TUBA's learned ``log a``);
            default: the optimiser's.
        critic_updates_per_aux_step: ``n_c`` of eta-MINE's block-coordinate descent (Mroueh et al., AAAI 2021,
            Algorithm 1): the bounds' own parameters move once every ``n_c`` steps, the critic at every step;
            1 (default) moves them together.
    """

    lr_scale: Tensor  # a registered buffer: each member's learning rate over the optimiser's
    bounds: BoundStack
    guard: MemberGuard

    def __init__(
        self,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        non_finite: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
        on_member_divergence: DivergencePolicy = "stop",
        aux_lr: Optional[float] = None,
        critic_updates_per_aux_step: int = 1,
    ) -> None:
        super().__init__(optimizer, scheduler)
        if aux_lr is not None and not (isinstance(aux_lr, (int, float)) and aux_lr > 0):
            raise ValueError(f"aux_lr: expected a learning rate > 0 or None, got {aux_lr!r}")
        if isinstance(critic_updates_per_aux_step, bool) or not (
            isinstance(critic_updates_per_aux_step, int) and critic_updates_per_aux_step >= 1
        ):
            raise ValueError(
                f"critic_updates_per_aux_step: expected an integer n_c >= 1, got {critic_updates_per_aux_step!r}"
            )
        self._policies = (non_finite, max_consecutive_skips, on_member_divergence)
        self.aux_lr = aux_lr
        self.critic_updates_per_aux_step = critic_updates_per_aux_step
        self._stepping: Optional[Tensor] = None
        self._restore: Optional[RestoreLeftOut] = None
        self._last_step: Optional[tuple[StackedOutputs, Tensor, Optional[float], str, dict[str, float]]] = None

    # ------------------------------------------------------------------------------ set-up
    def setup_members(self, members: Sequence[ResolvedMember]) -> None:
        """Build the bounds, the guard and the member table of ``members``."""
        self.member_table = list(members)
        self.bounds = BoundStack([m.bound for m in members], [m.estimator for m in members])
        self.guard = MemberGuard(
            [m.name for m in members], self.bounds.descriptions, *self._policies[:2], self._policies[2]
        )
        infos = []
        for member, (training, reporting) in zip(members, self.bounds.descriptions):
            infos.append(
                MemberInfo(
                    member.id, reporting.label, training.label, training.second_term_target, reporting.value_ceiling
                )
            )
        self.members: tuple[MemberInfo, ...] = tuple(infos)
        base = None
        scales = [1.0 if m.lr is None else m.lr for m in members]
        if any(m.lr is not None for m in members):
            base = _factory_lr(self.optimizer_factory)
            scales = [1.0 if m.lr is None else m.lr / base for m in members]
        self.register_buffer("lr_scale", torch.tensor(scales), persistent=False)

    @property
    def num_members(self) -> int:
        return len(self.member_table)

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.member_table]

    def member_index(self, name: str) -> int:
        names = self.member_names
        if name not in names:
            raise KeyError(f"member {name!r}: this fit has {names}")
        return names.index(name)

    @property
    def retired(self) -> dict[str, dict[str, Any]]:
        """Retired members: name -> ``{"step", "error"}``."""
        return self.guard.retired

    def member_rows(self) -> MemberRows:
        """Which members each trainable parameter's rows belong to (see :data:`~.optim.MemberRows`); built once
        per device by :meth:`build_member_rows`."""
        device = self.lr_scale.device
        cached = getattr(self, "_rows_cache", None)
        if cached is None or cached[0] != device:
            cached = (device, self.build_member_rows())
            self._rows_cache = cached
        return cached[1]

    def build_member_rows(self) -> MemberRows:
        raise NotImplementedError

    @property
    def bound(self) -> Any:
        """A single fit's training bound (a standalone copy with its current state)."""
        return self.bounds.training_bound(0)

    @property
    def estimator(self) -> Any:
        """A single fit's reporting bound when it differs from the training bound, else ``None``."""
        return self.bounds.reporting_bound(0) if self.bounds.has_estimator[0] else None

    def _bound_rows(self) -> MemberRows:
        """The rows of the bounds' own parameters (stacked per bound structure)."""
        rows: MemberRows = {}
        device = self.lr_scale.device
        for stacks, members in (
            (self.bounds.objectives, self.bounds._training_members),
            (self.bounds.estimators, self.bounds._reporting_members),
        ):
            for stack, indices in zip(stacks, members):
                flat = getattr(stack, "flat", None)
                if flat is not None:
                    rows[flat] = torch.tensor(indices, device=device)
        return rows

    # ------------------------------------------------------------------------------ the step
    def finish_step(
        self,
        joint: Tensor,
        marginal: Tensor,
        batch: Optional[Mapping[str, Any]],
        true_mi: Optional[float],
        estimate_tag: str = "mi/estimate",
        extra_metrics: Optional[Mapping[str, float]] = None,
        outputs: Optional[StackedOutputs] = None,
        critic_loss: Optional[Tensor] = None,
    ) -> dict[str, Any]:
        """Bounds, guard, record and (on logging steps) logging of one training step; returns ``{"loss",
        "record"}`` for ``training_step``. ``outputs``: the bounds' values when the subclass evaluated them
        itself (the SSL module's symmetric loss); ``critic_loss``: ``[K]`` losses of the critics' own added to the
        members' (TRE's bridge loss; :attr:`~pdlightning.bounds.Bound.critic_loss`), watched by the guard as theirs."""
        joint, marginal = joint.float(), marginal.float()  # bounds compute in float32, under autocast too
        if outputs is None:
            outputs = self.bounds(joint, marginal)
        if critic_loss is not None:
            loss = outputs.loss + critic_loss
            value = loss.detach()
            outputs = dataclasses.replace(
                outputs, loss=loss, loss_value=value, loss_finite=outputs.loss_finite & torch.isfinite(value)
            )
        step = self.global_step
        reduce = self._all_members_agree if self._distributed else None
        stepping, reported = self.guard.observe(outputs, joint, marginal, step, reduce)
        self._stepping = stepping
        record = StepRecord(
            members=self.members,
            batch=batch,
            loss=outputs.loss_detached,
            estimate=outputs.estimate,
            first_term=outputs.first_term,
            second_term=outputs.second_term,
            train_first_term=outputs.train_first_term,
            train_second_term=outputs.train_second_term,
            extras=outputs.extras,
            reported=reported,
            stepped=stepping,
            joint=joint.detach(),
            marginal=marginal.detach(),
            true_mi=true_mi,
        )
        # logged (and the guard's decisions taken) after the optimiser step, on logging steps only
        self._last_step = (outputs, reported, true_mi, estimate_tag, dict(extra_metrics or {}))
        # A member out of this step (retired, non-finite loss) contributes no gradient at all.
        loss = torch.where(stepping, outputs.loss, torch.zeros_like(outputs.loss)).sum()
        return {"loss": loss, "record": record}

    @property
    def _distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def _all_members_agree(self, flags: Tensor) -> Tensor:
        """``flags`` and-reduced across processes (DDP averages the gradients of one step: a member steps on
        every process or on none)."""
        reduced = flags.float()
        torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.MIN)
        return reduced.bool()

    # ------------------------------------------------------------------------------- logging
    def _log_and_sync(
        self,
        outputs: StackedOutputs,
        reported: Tensor,
        true_mi: Optional[float],
        estimate_tag: str,
        extra_metrics: Mapping[str, float],
        to_loggers: bool = True,
    ) -> None:
        """One transfer of the step's scalars and the guard's state; log them; let the guard act."""
        fields = [
            outputs.loss_detached,
            outputs.estimate,
            outputs.train_first_term,
            outputs.train_second_term,
            reported,
            *outputs.extras.values(),
        ]
        values = torch.cat([torch.stack([f.detach().float() for f in fields]), self.guard.state_for_sync()]).cpu()
        host = values.tolist()
        count = len(fields)
        scalars = self._scalars(host[:count], list(outputs.extras), host[count:], true_mi, estimate_tag)
        scalars.update(extra_metrics)
        progress = (estimate_tag, "mi/true") if self.num_members == 1 else ("mi/true",)
        log_host_scalars(
            self.trainer, scalars, progress_bar=progress, single=self.num_members == 1, to_loggers=to_loggers
        )
        self.guard.sync(host[count:], self._describe_gradients)

    def _scalars(
        self,
        host: list[list[float]],
        extras: list[str],
        guard: list[list[float]],
        true_mi: Optional[float],
        estimate_tag: str,
    ) -> dict[str, float]:
        loss, estimate, first, second, reported = host[:5]
        single = self.num_members == 1
        scalars: dict[str, float] = {}
        skip = self.guard.policy == "skip"
        for k, name in enumerate(self.member_names):
            suffix = "" if single else f"/{name}"
            if skip:
                scalars[f"guard/skipped_steps{suffix}"] = guard[2][k]
                scalars[f"guard/skipped_reports{suffix}"] = guard[3][k]
            if name in self.guard.retired:
                continue
            values = {"train/loss": loss[k], "bound/first_term": first[k], "bound/second_term": second[k]}
            values.update({f"bound/{extra}": host[5 + i][k] for i, extra in enumerate(extras)})
            if reported[k]:
                values[estimate_tag] = estimate[k]
            scalars.update({f"{tag}{suffix}": v for tag, v in values.items() if math.isfinite(v)})
        if true_mi is not None:
            scalars["mi/true"] = true_mi
        return scalars

    # ----------------------------------------------------------------------- the optimiser step
    def configure_optimizers(self) -> Any:
        rows = self.member_rows()
        params = [p for p in self.optimized_parameters() if p.requires_grad]
        aux = {p for p in self._bound_rows()}
        groups: list[dict[str, Any]] = [{"params": [p for p in params if p not in aux]}]
        own = [p for p in params if p in aux]
        if own:
            groups.append({"params": own, **({"lr": self.aux_lr} if self.aux_lr is not None else {}), "aux": True})
        groups = [g for g in groups if g["params"]]
        optimizer = member_optimizer(self.optimizer_factory, groups)
        if isinstance(optimizer, _MemberOptimizer):
            optimizer.set_members(rows, self.lr_scale)
        else:
            self._restore = RestoreLeftOut(rows)
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"},
        }

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Decide on the device which members update: those stepping with finite gradients."""
        if self._stepping is None:
            return
        flags, masks = self._gradient_finiteness()
        update = self.guard.observe_update(self._stepping, flags, self.global_step)
        self._keep_bad_gradient_masks(masks)
        inner = getattr(optimizer, "optimizer", optimizer)
        if isinstance(inner, _MemberOptimizer):
            inner.update_mask = update
            self._aux_schedule(inner)
        elif self._restore is not None:
            self._restore.before(inner, update)
        self._stepping = None

    def _aux_schedule(self, optimizer: torch.optim.Optimizer) -> None:
        """eta-MINE's block-coordinate schedule: the bounds' own parameters move every ``n_c``-th step only."""
        if self.critic_updates_per_aux_step == 1:
            return
        moves = (self.global_step + 1) % self.critic_updates_per_aux_step == 0
        for group in optimizer.param_groups:
            if group.get("aux") and not moves:
                for p in group["params"]:
                    p.grad = None  # no update, no moment change: eta is fixed during the critic's steps

    def _gradient_finiteness(self) -> tuple[Tensor, dict[Tensor, Tensor]]:
        """``[K]`` bool: every gradient of each member is finite; and, per stack, which parts of each member's
        gradient are finite (what names them when the guard acts). A single fit's own tensors (the SSL module's): one
        reduction each.

        On a CPU, where a step is bound by memory passes, a stack's gradient is read once: one sum per parameter tensor
        of the template over each member's row, ``[rows, S]`` (a sum is finite exactly when every entry is: NaN and
        inf propagate; one whose entries are so large that the float32 sum overflows, beyond ~1e33, counts as
        non-finite, a diverged gradient anyway), where the element-wise test takes several passes (measured 10x the
        time at K = 65). On a GPU, where a step is bound by kernel launches, the element-wise test, ``[rows, P]``:
        two launches per stack whatever the number of parameter tensors."""
        flags = torch.ones(self.num_members, dtype=torch.bool, device=self.lr_scale.device)
        masks: dict[Tensor, Tensor] = {}
        segments = self._flat_segments()
        for p, members in self.member_rows().items():
            if p.grad is None:
                continue
            if members.dim() == 0:
                flags = flags & torch.isfinite(p.grad).all()
                continue
            rows = p.grad.reshape(len(members), -1)
            if p.device.type == "cpu" and not self.elementwise_finiteness:
                sums = [part.sum(1) for part in rows.split(segments[p], dim=1)] if p in segments else [rows.sum(1)]
                masks[p] = mask = torch.isfinite(torch.stack(sums, dim=1))
            else:
                masks[p] = mask = torch.isfinite(rows)
            if len(members) == self.num_members:  # every member, in order (one critic architecture)
                flags = flags & mask.all(1)
            else:
                flags = flags.index_put((members,), flags[members] & mask.all(1))
        return flags, masks

    #: test gradients element-wise on a CPU too (the GPU's way; for tests of that path on a machine without one).
    elementwise_finiteness = False

    def _flat_segments(self) -> dict[Tensor, list[int]]:
        """For each stack's flat parameter, the sizes of its template's parameters in it (cached)."""
        cached = self.__dict__.get("_segments_cache")
        if cached is None:
            cached = self.__dict__["_segments_cache"] = {
                stack.flat: [stop - start for _, start, stop in stack.parameter_names()]
                for stack in self.modules()
                if isinstance(stack, Stack) and stack.flat is not None
            }
        return cached

    def _keep_bad_gradient_masks(self, masks: dict[Tensor, Tensor]) -> None:
        """Keep, on the device, each stack's finiteness mask of the step where a member's gradients first went
        non-finite since the last sync, so the guard can name the parameters when it acts (one ``where`` per stack)."""
        new = getattr(self.guard, "gradient_events", None)
        if new is None:
            return
        kept = self.__dict__.setdefault("_bad_gradient_masks", {})
        rows = self.member_rows()
        for p, mask in masks.items():
            fresh = (new if len(rows[p]) == self.num_members else new[rows[p]])[:, None]
            kept[p] = torch.where(fresh, mask, kept[p]) if p in kept else mask | ~fresh

    def _describe_gradients(self, k: int, step: int) -> str:
        """Where member ``k``'s gradients were non-finite (``" in critic.first.weight"``) while the gradients of
        ``step`` are still there (the guard acts right after the step it saw); ``""`` otherwise."""
        bad = []
        kept = self.__dict__.get("_bad_gradient_masks", {})
        for owner, stack, position in self._stack_positions(k):
            if stack.flat is not None and stack.flat in kept:
                row = kept[stack.flat][position].cpu()  # one flag per parameter of the template, or per element
                names = stack.parameter_names()
                if row.numel() == len(names):
                    bad += [f"{owner}.{n}" for (n, _, _), ok in zip(names, row.tolist()) if not ok]
                else:
                    bad += [f"{owner}.{n}" for n, start, stop in names if not bool(row[start:stop].all())]
        if self._trainer is None or step != self.trainer.global_step - 1:  # own parameters: while the step's are there
            return " in " + ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "") if bad else ""
        for name, parameter in self._own_parameters():
            if parameter.grad is not None and not bool(torch.isfinite(parameter.grad).all()):
                bad.append(name)
        if not bad:
            return ""
        return " in " + ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")

    def _stack_positions(self, k: int) -> list[tuple[str, Any, int]]:
        """``(owner, stack, position)`` of member ``k`` in every stack holding it (its bounds'; a subclass adds its
        critic's)."""
        out = []
        for owner, stacks, members in (
            ("bound", self.bounds.objectives, self.bounds._training_members),
            ("estimator", self.bounds.estimators, self.bounds._reporting_members),
        ):
            for stack, indices in zip(stacks, members):
                if k in indices:
                    out.append((owner, stack, indices.index(k)))
        return out

    def _own_parameters(self) -> list[tuple[str, Any]]:
        """Trainable parameters outside the stacks (the SSL module's encoders, heads and critic)."""
        return [(n, p) for n, p in self.named_parameters() if ".flat" not in n and not n.startswith("probe.")]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """After the optimiser step: put back the members left out (generic optimisers); on logging steps, log the
        step and let the guard act (one host transfer)."""
        if self._restore is not None:
            self._restore.after()
        if self._last_step is not None and is_logging_step(self.trainer, logging_step(self.trainer)):
            self._log_and_sync(*self._last_step)
            self._last_step = None

    def on_train_end(self) -> None:
        """Act on what the guard saw since the last logging step; the trainer's metrics show the last step."""
        if self._last_step is not None and self._trainer is not None:
            self._log_and_sync(*self._last_step, to_loggers=False)
            self._last_step = None
        self.guard.sync(describe_gradients=self._describe_gradients)

    # ---------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._restore is not None:  # a checkpoint written by a callback's on_train_batch_end comes before ours:
            self._restore.after()  # put the left-out members back now (in place: the state dicts share storage)
        self.guard.sync()
        checkpoint["members"] = [m.id.as_json() for m in self.member_table]
        checkpoint["guard"] = self.guard.extra_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.guard.load_extra_state(checkpoint.get("guard"))


def _factory_lr(factory: Any) -> float:
    """The learning rate an optimiser factory sets (its ``lr`` keyword, else its class default)."""
    import inspect

    keywords = getattr(factory, "keywords", None) or {}
    if "lr" in keywords:
        return float(keywords["lr"])
    target = getattr(factory, "func", factory)
    default = inspect.signature(target).parameters.get("lr")
    if default is None or not isinstance(default.default, (int, float)):
        raise ValueError("members[].lr: the optimiser sets no learning rate to scale; give the optimiser an lr")
    return float(default.default)
