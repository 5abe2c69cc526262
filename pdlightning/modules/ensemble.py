"""Many MI estimators in one fit: a vectorised ensemble of critics, each member with its own bound.

A benchmark table is estimators x seeds fits of tiny critics; run one by one they are dominated by
per-step overhead (Python, Lightning, kernel launches), not arithmetic. :class:`MIEnsembleModule`
trains ``K`` members at once: one :class:`~pdlightning.critics.ensemble.CriticEnsemble` (weights
stacked ``[K, ...]``, one batched GEMM per layer for all members) gives ``[K, n, n]`` scores, and each
member's bound turns its slice into that member's loss. The loss is the *sum* of the members' losses,
so member ``k``'s gradient is its own loss's gradient, and an element-wise optimiser (Adam, AdamW,
SGD with momentum: every update is a function of each element's own gradient and state) on the
stacked tensors is exactly ``K`` independent optimisers. Each member therefore follows the run it
would follow alone, up to the float32 rounding of a batched versus an unbatched matrix product.

Data: ``data="shared"`` gives every member the same batch (the fair comparison of estimators);
``data="replicas"`` gives member ``k`` its own stream (a datamodule with ``replicas=K`` stacks ``K``
seeded streams as ``[K, n, ...]``: seed replicates).

Per member: logs (``mi/estimate/<name>``, ``train/loss/<name>``, ``bound/<term>/<name>``), a
:class:`~pdlightning.bounds.StepRecord` (``member=<name>``) for the callbacks, the non-finite policy
(one member's NaN never stops or skips the others: its step is skipped alone, counted in
``guard/skipped_steps/<name>``, and ``raise`` names it), and the test table's rows.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from ..bounds import Bound, BoundOutput, StepRecord
from ..bounds.stacked import StackedOutputs, evaluate_stacked, matrix_to_pairs
from ..critics import Critic
from ..critics.ensemble import CriticEnsemble
from ..data.batch import check_mi_batch
from ..results import EstimateResult, write_results
from ..step_logging import log_scalars
from ..uncertainty import mean_interval
from .base import ConfiguredModule
from .finite import NonFiniteBoundError, NonFiniteGuard, NonFinitePolicy
from .held_out import HeldOutEstimates, unit_of
from .level_snapshots import LevelSnapshots, batch_level
from .reporting import _level_order, gather_intervals, log_interval, results_table, run_directory

__all__ = ["EnsembleMember", "MIEnsembleModule"]

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass
class EnsembleMember:
    """One estimator of an ensemble.

    Attributes:
        name: the member's name in logs, tables and figures (letters, digits, ``_``, ``-``).
        bound: its training bound.
        estimator: its reporting bound (``None``: the training bound's value).
        seed: the seed its critic is initialised with: exactly the critic a standalone run
            constructs after ``torch.manual_seed(seed)``.
        critic: its own initial critic instead (same architecture as the other members).
        replica: with ``data="replicas"``, the data stream it trains on (default: its position), so
            several estimators can share one seed's stream (estimators x seeds in one fit).
        group: the estimator this member replicates (members of one group differ only in seed and
            stream): ``test`` then also reports the group's mean with an interval across seeds.
    """

    name: str
    bound: Bound
    estimator: Optional[Bound] = None
    seed: int = 0
    critic: Optional[Critic] = None
    replica: Optional[int] = None
    group: Optional[str] = None


def _check_members(members: Sequence[EnsembleMember], critic: Optional[Critic]) -> None:
    if not members:
        raise ValueError("members: expected at least one member (K = 0)")
    seen: set[str] = set()
    for index, member in enumerate(members):
        if not isinstance(member, EnsembleMember):
            raise ValueError(
                f"members[{index}]: expected an EnsembleMember (name, bound, estimator, seed), "
                f"got {type(member).__name__}"
            )
        if not (isinstance(member.name, str) and _NAME.match(member.name)):
            raise ValueError(f"members[{index}].name: expected letters, digits, '_' or '-', got {member.name!r}")
        if member.name in seen:
            raise ValueError(f"members[{index}].name: duplicate member name {member.name!r}")
        seen.add(member.name)
        if not isinstance(member.bound, Bound):
            raise ValueError(
                f"members[{index}].bound ({member.name}): expected a Bound, got {type(member.bound).__name__}"
            )
        if member.estimator is not None and not isinstance(member.estimator, Bound):
            raise ValueError(
                f"members[{index}].estimator ({member.name}): expected a Bound or None, got "
                f"{type(member.estimator).__name__}"
            )
        if member.critic is None and critic is None:
            raise ValueError(
                f"members[{index}].critic ({member.name}): no critic; pass the ensemble's `critic` "
                "(the architecture every member is initialised from) or one per member"
            )


def _member_critics(members: Sequence[EnsembleMember], critic: Optional[Critic]) -> list[Critic]:
    """Each member's initial critic: its own, or the ensemble's re-drawn under the member's seed."""
    critics: list[Critic] = []
    for index, member in enumerate(members):
        if member.critic is not None:
            own = member.critic
        else:
            assert critic is not None
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(member.seed)
                own = copy.deepcopy(critic).reset_parameters()
        if critics and (
            type(own) is not type(critics[0])
            or [p.shape for p in own.parameters()] != [p.shape for p in critics[0].parameters()]
        ):
            raise ValueError(
                f"members[{index}].critic ({member.name}): a {type(own).__name__} with parameter shapes "
                f"{[tuple(p.shape) for p in own.parameters()][:4]}...; member {members[0].name!r} has a "
                f"{type(critics[0]).__name__} with {[tuple(p.shape) for p in critics[0].parameters()][:4]}...: "
                "the members of an ensemble share one critic architecture"
            )
        critics.append(own)
    return critics


class MIEnsembleModule(ConfiguredModule):
    """``K`` MI estimators trained together (see the module docstring).

    Args:
        members: the estimators (:class:`EnsembleMember`: name, bound, estimator, seed).
        critic: the critic architecture; member ``k`` starts from a copy re-drawn under its seed.
        data: ``"shared"`` (one batch for all members) or ``"replicas"`` (``[K, n, ...]`` batches,
            member ``k`` trains on slice ``k``).
        optimizer, scheduler: factories for the stacked parameters (element-wise optimisers only;
            global gradient-norm clipping would couple the members and is refused).
        non_finite: ``"raise"`` (stop, naming the member) or ``"skip"`` (skip that member's step:
            its weights and optimiser moments are restored after the shared optimiser step).
        max_consecutive_skips: a member skipped this many steps in a row stops the run as diverged.
        on_member_divergence: ``"stop"`` (a member's :class:`NonFiniteBoundError` stops the fit) or
            ``"retire"`` (that member alone is retired: its weights stay at their last finite values, it
            leaves the loss, its stream and its held-out results end, :attr:`retired` says when and why,
            and the other members go on; they are unaffected, Adam being element-wise).
        level_snapshots: evaluate each MI level with the members' weights at the end of that level.
        summary: add the per-member bias/variance summary at the end of every fit with a true MI.
        chunk_size: members per batched critic call (default: all on a GPU, one at a time on a CPU;
            see :class:`~pdlightning.critics.ensemble.CriticEnsemble`).
    """

    def __init__(
        self,
        members: list[EnsembleMember],
        critic: Optional[Critic] = None,
        data: Literal["shared", "replicas"] = "shared",
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        non_finite: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
        on_member_divergence: Literal["stop", "retire"] = "stop",
        level_snapshots: bool = True,
        summary: bool = True,
        chunk_size: Optional[int] = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        if data not in ("shared", "replicas"):
            raise ValueError(f"data: expected 'shared' or 'replicas', got {data!r}")
        _check_members(members, critic)
        for index, member in enumerate(members):
            if member.replica is not None and (
                data != "replicas"
                or isinstance(member.replica, bool)
                or not isinstance(member.replica, int)
                or member.replica < 0
            ):
                raise ValueError(
                    f"members[{index}].replica ({member.name}): expected a stream index >= 0 with "
                    f"data='replicas', got {member.replica!r} with data={data!r}"
                )
        self.member_names = [m.name for m in members]
        self.member_groups = [m.group for m in members]
        #: the replica stream each member trains on (data="replicas").
        self.replica_of = [m.replica if m.replica is not None else k for k, m in enumerate(members)]
        self.num_replicas = max(self.replica_of) + 1
        self.critics = CriticEnsemble(_member_critics(members, critic), chunk_size=chunk_size)
        self.bounds = nn.ModuleList([m.bound for m in members])
        self.estimators = nn.ModuleList([m.estimator if m.estimator is not None else nn.Identity() for m in members])
        self._has_estimator = [m.estimator is not None for m in members]
        self.data_mode = data
        self.guards = [NonFiniteGuard(non_finite, max_consecutive_skips=max_consecutive_skips) for _ in members]
        if on_member_divergence not in ("stop", "retire"):
            raise ValueError(f"on_member_divergence: expected 'stop' or 'retire', got {on_member_divergence!r}")
        self.on_member_divergence = on_member_divergence
        #: retired members (``on_member_divergence="retire"``): name -> {"step": ..., "error": ...}.
        self.retired: dict[str, dict[str, Any]] = {}
        self.level_snapshots = LevelSnapshots() if level_snapshots else None
        self.summary = summary
        self._frozen: dict[int, list[tuple[Tensor, Tensor]]] = {}
        self._skipped_members: list[int] = []
        self._held_out = HeldOutEstimates()

    # ------------------------------------------------------------------------------- members
    @property
    def num_members(self) -> int:
        return len(self.member_names)

    def training_bound(self, k: int) -> Bound:
        return self.bounds[k]  # type: ignore[return-value]

    def reporting_bound(self, k: int) -> Bound:
        return self.estimators[k] if self._has_estimator[k] else self.bounds[k]  # type: ignore[return-value]

    def member_critic(self, name: str) -> Critic:
        """A standalone copy of member ``name``'s current critic (e.g. to save or evaluate it alone)."""
        return self.critics.member(self.member_names.index(name))

    # ------------------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        for side in ("x", "y"):
            expected = getattr(datamodule, f"{side}_dim", None)
            got = getattr(self.critics, f"{side}_dim")
            if isinstance(expected, int) and expected != got:
                raise ValueError(
                    f"critic {side}_dim: the ensemble's critic expects {got} features per sample of {side}, but "
                    f"the datamodule {type(datamodule).__name__} yields {expected}; set "
                    f"model.init_args.critic.init_args.{side}_dim: {expected}"
                )
        replicas = getattr(datamodule, "replicas", None)
        if self.data_mode == "replicas" and replicas is not None and replicas != self.num_replicas:
            raise ValueError(
                f"data: 'replicas' needs {self.num_replicas} streams (one per member, or as the members' "
                f"`replica` say): the datamodule stacks {replicas} (data.init_args.replicas)"
            )
        if self.data_mode == "shared" and replicas:
            raise ValueError(
                f"data: the datamodule stacks {replicas} replica streams; set model.init_args.data: "
                "replicas, or drop data.init_args.replicas for one shared batch"
            )
        clip = getattr(self.trainer, "gradient_clip_val", None) if self._trainer is not None else None
        algorithm = getattr(self.trainer, "gradient_clip_algorithm", "norm") if self._trainer is not None else None
        if clip and algorithm != "value":
            raise ValueError(
                "trainer.gradient_clip_val: clipping the global gradient norm couples the members of an "
                "ensemble (one member's large gradient would shrink every other's); use "
                "gradient_clip_algorithm: value (element-wise) or no clipping"
            )

    # ------------------------------------------------------------------------------- scoring
    def _member_batch(self, batch: Mapping[str, Any], k: int) -> Mapping[str, Any]:
        if self.data_mode == "shared":
            return batch
        replica = self.replica_of[k]
        return {
            key: (
                value[replica]
                if isinstance(value, Tensor) and value.dim() >= 1 and value.shape[0] == self.num_replicas
                else value
            )
            for key, value in batch.items()
        }

    def _per_member(self, value: Tensor) -> Tensor:
        """``[R, ...]`` replica streams -> ``[K, ...]`` member inputs (a gather when members share)."""
        if self.replica_of == list(range(self.num_members)):
            return value
        return value.index_select(0, torch.tensor(self.replica_of, device=value.device))

    def stacked_scores(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
        """Every member's scores: ``joint [K, n]`` and ``marginal [K, n, k]`` (explicit pairs, or the
        off-diagonal of each member's in-batch score matrix)."""
        replicas = self.data_mode == "replicas"
        if not isinstance(batch, Mapping) or "x" not in batch or "y" not in batch:
            raise ValueError("batch: expected a dict with keys 'x', 'y'")
        if replicas and (batch["x"].dim() < 3 or batch["x"].shape[0] != self.num_replicas):
            raise ValueError(
                f"batch['x']: data='replicas' expects [{self.num_replicas}, n, ...] stacked streams, "
                f"got {tuple(batch['x'].shape)} (set data.init_args.replicas: {self.num_replicas})"
            )
        check_mi_batch(self._member_batch(batch, 0))
        inputs = {
            key: (self._per_member(batch[key]) if replicas else batch[key])
            for key in ("x", "y", "x_marginal", "y_marginal")
            if key in batch
        }
        if "x_marginal" in inputs:
            joint = self.critics.pointwise(inputs["x"], inputs["y"], members_dim=replicas)
            marginal = self.critics.pointwise(inputs["x_marginal"], inputs["y_marginal"], members_dim=replicas)
            return joint, marginal.unsqueeze(-1)
        return matrix_to_pairs(self.critics(inputs["x"], inputs["y"], members_dim=replicas))

    def _evaluate_members(self, joint: Tensor, marginal: Tensor) -> tuple[StackedOutputs, list[BoundOutput]]:
        """Training outputs of every member (with finiteness flags) and reporting outputs (the training
        output itself where a member has no separate estimator)."""
        training = evaluate_stacked([self.training_bound(k) for k in range(self.num_members)], joint, marginal)
        reporting = list(training.outputs)
        with_estimator = [k for k in range(self.num_members) if self._has_estimator[k]]
        if with_estimator:
            index = torch.tensor(with_estimator, device=joint.device)
            with torch.no_grad():
                estimates = evaluate_stacked(
                    [self.reporting_bound(k) for k in with_estimator],  # each its estimator
                    joint.detach().index_select(0, index),
                    marginal.detach().index_select(0, index),
                )
            for position, k in enumerate(with_estimator):
                reporting[k] = estimates.outputs[position]
            training.report_finite[index] = estimates.report_finite
        return training, reporting

    # ------------------------------------------------------------------------------- training
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.observe_training_batch(self, self._member_batch(batch, 0))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[dict[str, Any]]:
        """The sum of the members' losses, and one :class:`StepRecord` per member."""
        joint, marginal = self.stacked_scores(batch)
        training, reporting = self._evaluate_members(joint, marginal)
        loss_ok, report_ok = self._finite_flags(training)
        step = self.global_step
        records = []
        self._skipped_members = []
        for k, (output, estimate) in enumerate(zip(training.outputs, reporting)):
            name, guard, member_batch = self.member_names[k], self.guards[k], self._member_batch(batch, k)
            reported = report_ok[k]
            if name not in self.retired and not (loss_ok[k] and reported):
                with self._retiring(k, step):
                    if not loss_ok[k]:
                        self._check(guard, output, self.training_bound(k), f"member '{name}': bound", step)
                    else:
                        self._check(
                            guard,
                            estimate,
                            self.reporting_bound(k),
                            f"member '{name}': estimator",
                            step,
                            reported_only=True,
                        )
            if name in self.retired or not loss_ok[k]:
                self._skipped_members.append(k)
                records.append(
                    StepRecord(
                        None,
                        None,
                        member_batch,
                        self.reporting_bound(k),
                        self.training_bound(k),
                        skipped=True,
                        member=name,
                    )
                )
                continue
            guard.count_completed_step()
            records.append(
                StepRecord(
                    output,
                    estimate if reported else None,
                    member_batch,
                    self.reporting_bound(k),
                    self.training_bound(k),
                    member=name,
                )
            )
        self._log_step(records, batch)
        good = [k for k in range(self.num_members) if k not in self._skipped_members]
        if not good:
            return None  # every member skipped: no optimiser step at all
        losses = torch.stack([training.outputs[k].loss for k in good])
        # A skipped member's own bound parameters get no gradient this step; under DDP every parameter
        # must take part in backward, so they enter with weight zero (their update is undone anyway).
        unused = [
            p
            for k in self._skipped_members
            for m in (self.bounds[k], self.estimators[k])
            for p in m.parameters()
            if p.requires_grad
        ]
        loss = losses.sum() + sum((p * 0).sum() for p in unused)
        return {"loss": loss, "record": records}

    def _finite_flags(self, outputs: StackedOutputs) -> tuple[list[bool], list[bool]]:
        """Per member: training output finite, reported values finite (one host transfer for all; under
        DDP a member is skipped on every process if it is non-finite on any)."""
        flags = torch.cat([outputs.loss_finite, outputs.report_finite]).float()
        if self._trainer is not None and self.trainer.world_size > 1:
            flags = self.trainer.strategy.reduce(flags, reduce_op="min")
        values = [bool(v) for v in flags.tolist()]
        return values[: self.num_members], values[self.num_members :]

    @staticmethod
    def _check(
        guard: NonFiniteGuard, output: BoundOutput, bound: Bound, role: str, step: int, reported_only: bool = False
    ) -> None:
        """Raise (naming the member) or warn and count, per the member's guard."""
        guard.check(output, bound, role, step, reported_only=reported_only)

    @contextlib.contextmanager
    def _retiring(self, k: int, step: int) -> Iterator[None]:
        """Under ``on_member_divergence="retire"``, a :class:`NonFiniteBoundError` of member ``k`` retires it
        (its step is skipped from now on) instead of stopping the fit."""
        try:
            yield
        except NonFiniteBoundError as error:
            if self.on_member_divergence != "retire":
                raise
            name = self.member_names[k]
            self.retired[name] = {"step": int(step), "error": str(error)}
            rank_zero_warn(f"member '{name}' retired at step {step}, the others go on: {error}")

    # ---------------------------------------------------------------- skipped members stay put
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Members whose loss was non-finite (no gradient) or whose gradients are non-finite keep their
        weights and optimiser moments: remember their slices now, put them back after the step."""
        bad_gradients = self._members_with_bad_gradients()
        step = self.global_step
        for k in bad_gradients:
            name = self.member_names[k]
            message = (
                f"member '{name}': non-finite gradients at step {step} (the loss was finite: look for an "
                "overflowing exp / log(0) in the bound or the critic)"
            )
            guard = self.guards[k]
            with self._retiring(k, step):
                if guard.policy == "raise":
                    raise NonFiniteBoundError(message)
                guard.report(message + "; non_finite='skip': skipping this member's step")
                guard.count_skipped_step(step)
        frozen = sorted(set(self._skipped_members) | set(bad_gradients))
        self._frozen = {k: self._member_slices(optimizer, k) for k in frozen}
        for k in frozen:  # a non-finite gradient must not reach the moments (restored anyway)
            for tensor in self._member_tensors(k, gradients=True):
                tensor.zero_()

    def _members_with_bad_gradients(self) -> list[int]:
        flags = []
        for k in range(self.num_members):
            grads = self._member_tensors(k, gradients=True)
            flags.append(
                torch.stack([torch.isfinite(g).all() for g in grads]).all()
                if grads
                else torch.tensor(True, device=self.device)
            )
        ok = torch.stack(flags).tolist()
        return [k for k, good in enumerate(ok) if not good and k not in self._skipped_members]

    def _member_tensors(self, k: int, gradients: bool = False) -> list[Tensor]:
        """Member ``k``'s slices of the stacked critic parameters and its bound's / estimator's
        parameters (or their gradients)."""
        tensors = []
        for parameter in self.critics.stacked.values():
            source = parameter.grad if gradients else parameter.data
            if source is not None:
                tensors.append(source[k])
        for module in (self.bounds[k], self.estimators[k]):
            for parameter in module.parameters():
                source = parameter.grad if gradients else parameter.data
                if source is not None:
                    tensors.append(source)
        return tensors

    def _member_slices(self, optimizer: torch.optim.Optimizer, k: int) -> list[tuple[Tensor, Tensor]]:
        """``(live view, saved copy)`` of member ``k``'s weights and per-element optimiser state."""
        state = getattr(optimizer, "optimizer", optimizer).state
        pairs = []
        stacked = set(map(id, self.critics.stacked.values()))
        own = [p for module in (self.bounds[k], self.estimators[k]) for p in module.parameters()]
        for parameter in [*self.critics.stacked.values(), *own]:
            index = k if id(parameter) in stacked else slice(None)
            views = [parameter.data[index]]
            for value in state.get(parameter, {}).values():
                if isinstance(value, Tensor) and value.shape == parameter.shape:
                    views.append(value[index])
            pairs += [(view, view.clone()) for view in views]
        return pairs

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for saved in self._frozen.values():
            for live, copy_ in saved:
                live.copy_(copy_)
        self._frozen = {}

    def on_train_end(self) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.training_ended(self)

    def configure_callbacks(self) -> list[L.Callback]:
        from pdlightning.callbacks import BiasVarianceMSE

        trainer = self._trainer
        if not self.summary or trainer is None:
            return []
        configured = trainer.callbacks  # type: ignore[attr-defined]  # Lightning sets it at run time, undeclared
        if any(isinstance(c, BiasVarianceMSE) for c in configured):
            return []
        return [BiasVarianceMSE()]

    # ------------------------------------------------------------------------------- logging
    def _log_step(self, records: Sequence[StepRecord], batch: Mapping[str, Any]) -> None:
        """Every member's scalars straight to the loggers, one host transfer, at Lightning's cadence
        and step (``self.log`` costs about a millisecond per scalar: 5 K calls per step)."""
        scalars: dict[str, Tensor] = {}
        for record in records:
            name = record.member
            if name is None:
                raise ValueError("an ensemble's step records name their member; got a record without one")
            guard = self.guards[self.member_names.index(name)]
            if guard.policy == "skip":
                scalars[f"guard/skipped_steps/{name}"] = torch.tensor(float(guard.skipped_steps))
            if record.bound is None:
                continue
            output = record.bound
            scalars[f"train/loss/{name}"] = output.loss.detach()
            scalars[f"bound/first_term/{name}"] = output.first_term
            scalars[f"bound/second_term/{name}"] = output.second_term
            for extra, value in output.extras.items():
                scalars[f"bound/{extra}/{name}"] = value.float()
            if record.estimate is not None:
                scalars[f"mi/estimate/{name}"] = record.estimate.mi
        if isinstance(batch, Mapping) and "mi" in batch:
            scalars["mi/true"] = torch.as_tensor(batch["mi"], dtype=torch.float32).mean()
        log_scalars(self._trainer, scalars)

    # ------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        level = batch_level(self._member_batch(batch, 0))
        if self.level_snapshots is not None:
            self.level_snapshots.use_for(self, level)
        joint, marginal = self.stacked_scores(batch)
        _, reporting = self._evaluate_members(joint, marginal)
        for k, estimate in enumerate(reporting):
            if self.member_names[k] in self.retired:
                continue  # a retired member's weights are those of its last finite step: nothing to report
            bound = self.reporting_bound(k)
            unit = unit_of(bound)
            values = bound.pmi(estimate.scores).joint if unit == "pair" else estimate.mi
            if bool(torch.isfinite(values).all()):
                self._held_out.add(self.member_names[k], level, values, unit)
            elif self.guards[k].policy == "raise":
                raise NonFiniteBoundError(
                    f"member '{self.member_names[k]}': non-finite {stage} estimate "
                    f"{float(estimate.mi)} at level {level}"
                )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.restore(self)
        intervals = gather_intervals(self, self._held_out)
        self._held_out.clear()
        if not intervals:
            return
        results: list[EstimateResult] = []
        order: dict[Optional[str], int] = {name: k for k, name in enumerate(self.member_names)}
        for (member, level), interval in sorted(
            intervals.items(), key=lambda item: (order[item[0][0]], _level_order(item[0][1]))
        ):
            k = order[member]
            log_interval(self, stage, interval, level, member)
            weights = self.level_snapshots.describe(level) if self.level_snapshots is not None else "final weights"
            results.append(
                EstimateResult(
                    interval, self.reporting_bound(k).label, member=member, group=None, true_mi=level, weights=weights
                )
            )
        results += self._group_results(intervals, stage)
        if stage == "test" and self.trainer.is_global_zero:
            path = write_results(run_directory(self.trainer), results, stage, self.global_step, dict(self.hparams))
            rank_zero_info(
                results_table(results, f"Held-out MI per member and level ({stage})") + f"\n(written to {path})"
            )

    def _group_results(self, intervals: dict, stage: str) -> list[EstimateResult]:
        """Across-seed rows: per replicate group and level, the members' estimates as units."""
        groups: dict[tuple[str, Optional[float]], list[float]] = defaultdict(list)
        labels: dict[str, str] = {}
        for (member, level), interval in intervals.items():
            k = self.member_names.index(member)
            group = self.member_groups[k]
            if group is not None:
                groups[(group, level)].append(interval.estimate)
                labels[group] = self.reporting_bound(k).label
        results = []
        for (group, level), estimates in sorted(
            groups.items(), key=lambda item: (item[0][0], _level_order(item[0][1]))
        ):
            interval = mean_interval(estimates, "seed")
            log_interval(self, stage, interval, level, group, group=True)
            results.append(EstimateResult(interval, labels[group], group=group, true_mi=level, weights="across seeds"))
        return results

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["non_finite_guards"] = {
            name: guard.state_dict() for name, guard in zip(self.member_names, self.guards)
        }
        if self.level_snapshots is not None:
            checkpoint["level_snapshots"] = self.level_snapshots.state_dict()
        checkpoint["retired_members"] = dict(self.retired)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("non_finite_guards", {})
        for name, guard in zip(self.member_names, self.guards):
            guard.load_state_dict(states.get(name))
        self.retired = dict(checkpoint.get("retired_members", {}))
        if self.level_snapshots is not None:
            self.level_snapshots.load_state_dict(checkpoint.get("level_snapshots"))
