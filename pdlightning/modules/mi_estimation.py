"""LightningModule for neural MI / PD estimation: ``K >= 1`` estimators (members) trained as one.

A single fit is a fit of one member: ``MIEstimationModule(critic, bound)`` (YAML: ``model.init_args.bound``)
is shorthand for ``members=[<the bound's fragment key>]``. Every feature works at every ``K``: the held-out
intervals of ``validate`` / ``test``, ``predict`` and the pointwise PMI, per-level critic snapshots, replica
streams, retiring a diverged member, exact resume.

Members (:mod:`.members`) are named by fragment key and seed. Each member's critic is drawn under its seed
from the module's ``critic`` (or is its own); critics of one architecture are stacked
(:class:`~.stacking.StackedCritic`) and score the batch in one call, ``[K, n, n]``; the bounds are evaluated per
bound structure (:class:`~.bound_stack.BoundStack`); the step, the guard and the logging are the engine's
(:mod:`.engine`). Checkpoints store the member table; ``test`` / ``predict`` map the weights by member name,
never by position.
"""

from __future__ import annotations

import copy
import difflib
import math
from typing import Any, Literal, Optional, Union

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from ..bounds import Bound
from ..critics import Critic
from ..data.batch import check_mi_batch
from ..data.derangement import random_derangement
from ..records import PointwiseRecord, step_records
from ..results import EstimateResult, run_directory, write_results
from ..streams import MemberStreams, write_stream, write_summary
from .bound_stack import normalizer_fields, pmi_fields
from .engine import EstimationEngine, true_mi_of
from .finite import DivergencePolicy, NonFiniteBoundError, NonFinitePolicy, score_range
from .held_out import HeldOutEstimates, unit_of
from .level_snapshots import LevelSnapshots
from .members import Member, ResolvedMember, fragment_key_of, resolve_members
from .optim import MemberRows
from .pmi_reference import ReferenceSample, describe_normalizer, reference_from_loaders
from .reporting import brackets, gather_intervals, level_order, log_interval, results_table, seed_rows
from .stacking import StackedCritic, structure_key

__all__ = ["MIEstimationModule", "matrix_to_pairs"]

#: rows scored at once against a reference (a joint critic holds a ``[K, rows, size, hidden]`` activation).
_ROW_CHUNK = 128


def matrix_to_pairs(scores: Tensor) -> tuple[Tensor, Tensor]:
    """``[K, n, n]`` score matrices -> ``joint [K, n]`` (diagonals) and ``marginal [K, n, n - 1]`` (each row's
    off-diagonal entries, as :meth:`~pdlightning.bounds.PairScores.from_matrix`)."""
    k, n = scores.shape[0], scores.shape[1]
    if scores.dim() != 3 or scores.shape[2] != n:
        raise ValueError(f"scores: expected [K, n, n] matrices, got {tuple(scores.shape)}")
    if n < 2:
        raise ValueError(f"scores: batch size must be >= 2 to have negative pairs, got n={n}")
    off_diagonal = scores.flatten(1)[:, 1:].view(k, n - 1, n + 1)[:, :, :-1].reshape(k, n, n - 1)
    return scores.diagonal(dim1=1, dim2=2), off_diagonal


def _reads_joint_only(member: ResolvedMember) -> bool:
    """The member's training objective and its reported (plug-in) estimate read only the joint pairs' scores."""
    reporting = member.estimator if member.estimator is not None else member.bound
    return (
        not member.bound.objective_reads_marginal
        and not reporting.has_partition_term
        and reporting.pmi_normalizer is None
    )


class MIEstimationModule(EstimationEngine):
    """Estimate MI / PD between ``batch['x']`` and ``batch['y']`` with one or many estimators.

    Learning and inference are separate choices (PD paper, Table 1): a member's ``bound`` gives the loss and
    its gradients, its ``estimator`` (default: the bound) the reported MI from the same scores, e.g. learn with
    ``JS`` and report with ``NWJ``. Logged every logging step: ``mi/estimate``, ``train/loss``,
    ``bound/first_term``, ``bound/second_term``, the bound's extras under ``bound/``, ``mi/true`` (with several
    members each tag ends in ``/<member>``). Each training step returns a
    :class:`~pdlightning.records.StepRecord` for the callbacks; each validation / test step on a batch with the
    exact PMI of its pairs (``pmi``: the task suite) a :class:`~pdlightning.records.PointwiseRecord`.

    Args:
        critic: the critic architecture: a single fit's critic as given; a member of ``members`` starts from a
            copy drawn again under its seed (unless it has its own).
        bound: shorthand for one member: its training bound (named after the bound's fragment key).
        estimator: with ``bound``, its reporting bound (default: the bound's own value).
        members: the estimators, by fragment key or as :class:`~.members.Member` (see :mod:`.members`).
        data: ``"shared"`` (one batch for every member) or ``"replicas"`` (``[R, n, ...]`` batches of ``R``
            seeded streams; member ``k`` trains on its ``replica``, default its position).
        optimizer, scheduler: factories for the stacked parameters (element-wise optimisers only; global
            gradient-norm clipping would couple the members and is refused).
        non_finite, max_consecutive_skips, on_member_divergence: the guard's policies (:mod:`.finite`).
        level_snapshots: on an MI staircase, keep each level's final weights and evaluate every level with
            its own (:mod:`.level_snapshots`); ``False``: the final weights evaluate every level.
        pmi_reference_size: for ``predict`` and the pointwise evaluation with a bound whose PMI needs batch
            statistics (DV, MINE, SMILE, InfoNCE), estimate them once per level on this many held-out pairs,
            so each pair's PMI is a function of the pair alone (:mod:`.pmi_reference`); 0 uses each batch's own.
        summary: at the end of every fit whose batches carry the true MI, print and write
            (``bias_variance.md`` / ``.csv``) the per-level mean / bias / variance / MSE of each member's
            training estimates, unless a callback of the trainer writes it (``BiasVarianceMSE``).
        stream_path: write every member's per-step estimate to this CSV at the end of the fit (``step, true_mi,
            estimate``, and a ``member`` column for several members); ``None``: not written.
        chunk_size: members per batched critic call (default: all at once; 1: a loop over members).
        aux_lr, critic_updates_per_aux_step: eta-MINE's block-coordinate descent (:mod:`.engine`).
        marginal_pairs: the product-of-marginals pairs of a training step when the batch gives none: ``"all"``
            (default: the ``n(n - 1)`` off-diagonal pairs of the in-batch score matrix) or ``"derangement"`` (one per
            row, ``(x_i, y_σ(i))`` with ``σ`` a random derangement of the batch, drawn each step: no pair is a joint
            pair; f-DIME's sampling, Letizia et al. 2024; ``n`` scores instead of ``n²``). Evaluation always
            scores the whole matrix.
    """

    _critic_order: Tensor  # registered buffers
    _replica_index: Tensor

    def __init__(
        self,
        critic: Optional[Critic] = None,
        bound: Optional[Bound] = None,
        estimator: Optional[Bound] = None,
        members: Optional[list[Union[str, Member]]] = None,
        data: Literal["shared", "replicas"] = "shared",
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        non_finite: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
        on_member_divergence: DivergencePolicy = "stop",
        level_snapshots: bool = True,
        pmi_reference_size: int = 1024,
        summary: bool = True,
        stream_path: Optional[str] = None,
        chunk_size: Optional[int] = None,
        aux_lr: Optional[float] = None,
        critic_updates_per_aux_step: int = 1,
        marginal_pairs: Literal["all", "derangement"] = "all",
    ) -> None:
        super().__init__(
            optimizer,
            scheduler,
            non_finite,
            max_consecutive_skips,
            on_member_divergence,
            aux_lr,
            critic_updates_per_aux_step,
        )
        if data not in ("shared", "replicas"):
            raise ValueError(f"data: expected 'shared' or 'replicas', got {data!r}")
        if isinstance(pmi_reference_size, bool) or not (
            isinstance(pmi_reference_size, int) and (pmi_reference_size == 0 or pmi_reference_size >= 2)
        ):
            raise ValueError(
                f"pmi_reference_size: expected 0 (in-batch statistics) or an integer >= 2, got {pmi_reference_size!r}"
            )
        if marginal_pairs not in ("all", "derangement"):
            raise ValueError(f"marginal_pairs: expected 'all' or 'derangement', got {marginal_pairs!r}")
        resolved = self._resolve(critic, bound, estimator, members, data)
        if marginal_pairs == "derangement":
            matrix_only = [m.name for m in resolved if m.bound.pmi_normalizer == "column"]
            if matrix_only:
                raise ValueError(
                    f"marginal_pairs: 'derangement' gives one product pair per row, but {matrix_only} normalise each "
                    "y over the batch's other x (a column of the in-batch score matrix); use marginal_pairs: all"
                )
        self.marginal_pairs = marginal_pairs
        self.setup_members(resolved)
        self.data_mode = data
        #: the replica stream each member trains on (data="replicas").
        self.replica_of = [m.replica if m.replica is not None else k for k, m in enumerate(resolved)]
        self.num_replicas = max(self.replica_of) + 1
        self._build_critics(resolved, critic, chunk_size)
        self.level_snapshots = LevelSnapshots() if level_snapshots else None
        self.pmi_reference_size = pmi_reference_size
        self.summary = summary
        self.stream_path = stream_path
        self.streams = MemberStreams()
        #: the fixed reference sample of the PMI's batch statistics (set at the start of every evaluation).
        self.pmi_reference: Optional[ReferenceSample] = None
        self._held_out = HeldOutEstimates()
        #: the rows of the last evaluation per stage (``"val"`` / ``"test"``): what ``results.json`` holds.
        self.held_out_results: dict[str, list[EstimateResult]] = {}
        self._batch_level: Optional[float] = None
        #: members of a loaded checkpoint that this evaluation leaves out (a subset was asked for).
        self.left_out: list[str] = []

    # ------------------------------------------------------------------------------- members
    @staticmethod
    def _resolve(
        critic: Optional[Critic],
        bound: Optional[Bound],
        estimator: Optional[Bound],
        members: Optional[list[Any]],
        data: str,
    ) -> list[ResolvedMember]:
        if members is not None and (bound is not None or estimator is not None):
            raise ValueError(
                "members: give either `members` or the one member's `bound` (and `estimator`), not both "
                "(a config listing members sets `bound: null`)"
            )
        if members is None:
            if bound is None:
                raise ValueError("bound: expected a Bound (or a list of `members`), got None")
            if not isinstance(bound, Bound):
                raise ValueError(f"bound: expected a Bound, got {type(bound).__name__}")
            if estimator is not None and not isinstance(estimator, Bound):
                raise ValueError(f"estimator: expected a Bound or None, got {type(estimator).__name__}")
            from ..records import MemberId

            key = fragment_key_of(bound, estimator)
            return [ResolvedMember(MemberId(key, torch.initial_seed()), bound, estimator, None, None, None, True)]
        dims = (critic.x_dim, critic.y_dim) if isinstance(critic, Critic) else None
        return resolve_members(members, data=data, critic_dims=dims)

    def _build_critics(
        self, members: list[ResolvedMember], critic: Optional[Critic], chunk_size: Optional[int]
    ) -> None:
        """Each member's initial critic, stacked per architecture."""
        critics: list[nn.Module] = []
        for index, member in enumerate(members):
            if member.critic is not None and member.own_critic:
                own: nn.Module = member.critic
            elif member.critic is None and critic is not None and len(members) == 1 and member.own_critic:
                own = critic  # a single fit: the critic as given
            else:
                base = member.critic if member.critic is not None else critic
                if base is None:
                    raise ValueError(
                        f"members[{index}].critic ({member.name}): no critic; pass the module's `critic` (the "
                        "architecture every member is drawn from) or one for the member"
                    )
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(member.id.seed)
                    own = copy.deepcopy(base).reset_parameters()
            if not isinstance(own, Critic):
                raise ValueError(
                    f"members[{index}].critic ({member.name}): expected a Critic, got {type(own).__name__}"
                )
            critics.append(own)
        dims = {(getattr(c, "x_dim", None), getattr(c, "y_dim", None)) for c in critics}
        if len(dims) > 1:
            first = (critics[0].x_dim, critics[0].y_dim)
            index = next(i for i, c in enumerate(critics) if (c.x_dim, c.y_dim) != first)
            raise ValueError(
                f"members[{index}].critic ({members[index].name}): a {type(critics[index]).__name__} for inputs of "
                f"{critics[index].x_dim} x {critics[index].y_dim} features; member {members[0].name!r}'s critic takes "
                f"{first[0]} x {first[1]}: every member scores the same data"
            )
        groups: dict[Any, list[int]] = {}
        for k, own in enumerate(critics):
            groups.setdefault(structure_key(own), []).append(k)
        self.critics = nn.ModuleList(
            [StackedCritic([critics[k] for k in indices], chunk_size=chunk_size) for indices in groups.values()]
        )
        self._critic_members = list(groups.values())
        self._critic_losses = self._own_critic_losses(members, critics)
        #: stacks none of whose members reads its product-of-marginals scores in training (TRE: a zero objective and a
        #: plug-in estimate of the joint scores): a training step scores only their joint pairs.
        self._joint_only_stacks = {
            s for s, indices in enumerate(self._critic_members) if all(_reads_joint_only(members[k]) for k in indices)
        }
        order = [k for indices in self._critic_members for k in indices]
        self._critic_natural = order == list(range(len(members)))
        position = {k: p for p, k in enumerate(order)}
        self.register_buffer("_critic_order", torch.tensor([position[k] for k in range(len(members))]), False)
        self.register_buffer("_replica_index", torch.tensor(self.replica_of), False)
        self.x_dim, self.y_dim = critics[0].x_dim, critics[0].y_dim

    def _own_critic_losses(self, members: list[ResolvedMember], critics: list[nn.Module]) -> list[tuple[int, str]]:
        """``(stack, method)`` of the critic stacks whose members learn through a loss of the critic's own
        (:attr:`Bound.critic_loss`: TRE's bridge loss), checked now (not at the first step)."""
        out = []
        for s, indices in enumerate(self._critic_members):
            methods = {getattr(members[k].bound, "critic_loss", None) for k in indices}
            if methods == {None}:
                continue
            if len(methods) > 1:
                raise ValueError(
                    f"members: {[members[k].name for k in indices]} share a critic architecture but not how it learns "
                    f"({sorted(str(m) for m in methods)}); give the members of a critic-loss bound their own critic"
                )
            method = str(next(iter(methods)))
            if not callable(getattr(critics[indices[0]], method, None)):
                raise ValueError(
                    f"members[{indices[0]}].critic ({members[indices[0]].name}): the bound "
                    f"{type(members[indices[0]].bound).__name__} learns through critic.{method}(x, y, y_marginal), "
                    f"which {type(critics[indices[0]]).__name__} does not have"
                )
            out.append((s, method))
        return out

    def critic_losses(self, batch: Any) -> Optional[Tensor]:
        """``[K]``: the critic's own loss of each member whose training bound learns through it (TRE:
        ``critic.bridge_loss(x, y, y_marginal)``, ``y_marginal`` the batch's ``y`` re-paired by a random derangement,
        one for every member), ``0`` for the others; ``None`` when no member has one. One call per stack."""
        if not self._critic_losses:
            return None
        losses: Optional[Tensor] = None
        for s, method in self._critic_losses:
            stack, indices = self.critic_stacks[s], self._critic_members[s]
            inputs, per_member = self._member_inputs(batch, indices)
            x, y = inputs["x"], inputs["y"]
            n = y.shape[1] if per_member else y.shape[0]
            order = random_derangement(n).to(y.device)
            y_marginal = y.index_select(1 if per_member else 0, order)
            dims = (0, 0, 0) if per_member else (None, None, None)
            values = stack.vmap(
                lambda critic, a, b, c, name=method: getattr(critic, name)(a, b, c), x, y, y_marginal, in_dims=dims
            ).float()
            if losses is None:
                losses = values.new_zeros(self.num_members)
            losses = losses.index_put((torch.tensor(indices, device=values.device),), values)
        return losses

    @property
    def critic_stacks(self) -> list[StackedCritic]:
        """The stacks of the members' critics (one per architecture), typed."""
        return [stack for stack in self.critics if isinstance(stack, StackedCritic)]

    def member_critic(self, name: str) -> Critic:
        """A standalone copy of member ``name``'s current critic."""
        k = self.member_index(name)
        for stack, indices in zip(self.critic_stacks, self._critic_members):
            if k in indices:
                return stack.member(indices.index(k))  # type: ignore[return-value]
        raise KeyError(name)

    def member_bound(self, name: str, reporting: bool = True) -> Bound:
        """A standalone copy of member ``name``'s reporting (or training) bound, with its current state."""
        k = self.member_index(name)
        return self.bounds.reporting_bound(k) if reporting else self.bounds.training_bound(k)

    @property
    def reporting_bound(self) -> Bound:
        """The reporting bound of a single fit (its description: class, label, settings)."""
        return self.bounds.descriptions[0][1]

    @property
    def critic(self) -> Critic:
        """A single fit's critic (a standalone copy of its current weights)."""
        return self.member_critic(self.member_names[0])

    def _stack_positions(self, k: int) -> list[tuple[str, Any, int]]:
        positions = super()._stack_positions(k)
        for stack, indices in zip(self.critic_stacks, self._critic_members):
            if k in indices:
                positions.insert(0, ("critic", stack, indices.index(k)))
        return positions

    def build_member_rows(self) -> MemberRows:
        rows = self._bound_rows()
        for stack, indices in zip(self.critic_stacks, self._critic_members):
            if stack.flat is not None:
                rows[stack.flat] = torch.tensor(indices, device=self.lr_scale.device)
        return rows

    # ------------------------------------------------------------------------------- set-up
    def setup(self, stage: str) -> None:
        """Fail at set-up, not at the first batch, when the critics' input sizes, the replica streams or the
        gradient clipping do not fit."""
        datamodule = getattr(self.trainer, "datamodule", None)
        for side in ("x", "y"):
            expected = getattr(datamodule, f"{side}_dim", None)
            got = getattr(self, f"{side}_dim")
            if isinstance(expected, int) and isinstance(got, int) and expected != got:
                raise ValueError(
                    f"critic {side}_dim: the critic expects {got} features per sample of {side}, but the datamodule "
                    f"{type(datamodule).__name__} yields {expected} ({side}_dim); set "
                    f"model.init_args.critic.init_args.{side}_dim: {expected}"
                )
        replicas = getattr(datamodule, "replicas", None)
        if self.data_mode == "replicas" and replicas is not None and replicas != self.num_replicas:
            raise ValueError(
                f"data: 'replicas' needs {self.num_replicas} streams (one per member, or as the members' `replica` "
                f"say): the datamodule stacks {replicas} (data.init_args.replicas)"
            )
        if self.data_mode == "shared" and replicas:
            raise ValueError(
                f"data: the datamodule stacks {replicas} replica streams; set model.init_args.data: replicas, or "
                "drop data.init_args.replicas for one shared batch"
            )
        clip = getattr(self.trainer, "gradient_clip_val", None)
        if clip and getattr(self.trainer, "gradient_clip_algorithm", "norm") != "value":
            raise ValueError(
                "trainer.gradient_clip_val: clipping the global gradient norm couples the members (one member's "
                "large gradient would shrink every other's); use gradient_clip_algorithm: value (element-wise) or "
                "no clipping"
            )

    # ------------------------------------------------------------------------------- scoring
    def _member_inputs(self, batch: Any, indices: list[int]) -> tuple[dict[str, Tensor], bool]:
        keys = [k for k in ("x", "y", "x_marginal", "y_marginal") if k in batch]
        if self.data_mode == "shared":
            return {k: batch[k] for k in keys}, False
        index = self._replica_index if len(indices) == self.num_members else self._replica_index[indices]
        if self.replica_of == list(range(self.num_members)) and len(indices) == self.num_members:
            return {k: batch[k] for k in keys}, True
        return {k: batch[k].index_select(0, index) for k in keys}, True

    def stacked_scores(self, batch: Any, derangement: bool = False, training: bool = False) -> tuple[Tensor, Tensor]:
        """Every member's scores: ``joint [K, n]`` and ``marginal [K, n, m]`` (explicit pairs, or the
        off-diagonal of each member's in-batch score matrix; with ``derangement``, one pair ``(x_i, y_σ(i))`` per
        row for a batch that gives none). ``training``: the stacks whose members read no marginal scores in training
        (TRE) score only their joint pairs, and their ``marginal`` is the joint scores repeated (a placeholder of
        the batch's shape, as :meth:`member_pmi`'s)."""
        if not isinstance(batch, dict) or "x" not in batch or "y" not in batch:
            raise ValueError("batch: expected a dict with keys 'x', 'y'")
        if self.data_mode == "replicas":
            x = batch["x"]
            if x.dim() < 3 or x.shape[0] != self.num_replicas:
                raise ValueError(
                    f"batch['x']: data='replicas' expects [{self.num_replicas}, n, ...] stacked streams, got "
                    f"{tuple(x.shape)} (set data.init_args.replicas: {self.num_replicas})"
                )
            check_mi_batch(
                {k: (v[0] if isinstance(v, Tensor) and v.dim() > 1 else v) for k, v in batch.items() if k != "mi"}
            )
        else:
            check_mi_batch({k: v for k, v in batch.items() if k != "mi"})
        parts = []
        order = None
        if derangement and "x_marginal" not in batch:
            order = random_derangement(batch["y"].shape[-2 if self.data_mode == "replicas" else 0])
        for s, (stack, indices) in enumerate(zip(self.critic_stacks, self._critic_members)):
            inputs, per_member = self._member_inputs(batch, indices)
            if training and s in self._joint_only_stacks:
                joint = stack.pointwise(inputs["x"], inputs["y"], members_dim=per_member)
                m = 1 if order is not None or "x_marginal" in inputs else joint.shape[1] - 1
                parts.append((joint, joint.detach().unsqueeze(-1).expand(-1, -1, m)))
                continue
            if order is not None:
                order = order.to(inputs["y"].device)
                inputs = {
                    **inputs,
                    "x_marginal": inputs["x"],
                    "y_marginal": inputs["y"].index_select(int(per_member), order),
                }
            if "x_marginal" in inputs:
                joint = stack.pointwise(inputs["x"], inputs["y"], members_dim=per_member)
                marginal = stack.pointwise(inputs["x_marginal"], inputs["y_marginal"], members_dim=per_member)
                parts.append((joint, marginal.unsqueeze(-1)))
            else:
                parts.append(matrix_to_pairs(stack(inputs["x"], inputs["y"], members_dim=per_member)))
        if len(parts) == 1:
            return parts[0]
        joint, marginal = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if not self._critic_natural:
            joint, marginal = joint.index_select(0, self._critic_order), marginal.index_select(0, self._critic_order)
        return joint, marginal

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Pointwise log-dependency ``log r(x_i, y_j)`` for all pairs of a batch: ``[n, n]`` for a single fit,
        ``[K, n, n]`` for several members (each by its reporting bound, with in-batch statistics)."""
        joint, marginal = self.stacked_scores({"x": x, "y": y})
        pmi_joint, pmi_marginal = self.bounds.pmi(joint, marginal)
        n = x.shape[0]
        matrix = torch.empty(pmi_joint.shape[0], n, n, device=pmi_joint.device)
        matrix.diagonal(dim1=1, dim2=2).copy_(pmi_joint)
        matrix.flatten(1)[:, 1:].view(-1, n - 1, n + 1)[:, :, :-1].copy_(pmi_marginal.reshape(-1, n - 1, n))
        return matrix[0] if self.num_members == 1 else matrix

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        """The sum of the members' losses and the step's :class:`~pdlightning.records.StepRecord`."""
        joint, marginal = self.stacked_scores(batch, derangement=self.marginal_pairs == "derangement", training=True)
        outputs = self.finish_step(joint, marginal, batch, self._batch_level, critic_loss=self.critic_losses(batch))
        # recorded here, not in on_train_batch_end: Lightning runs the callbacks' hook first, and a checkpoint
        # written there must hold this step's row (a fit resumed from it would otherwise lack the row)
        for record in step_records(outputs):
            self.streams.record(self._logging_step(), record)
        return outputs

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_level = true_mi_of(batch)
        if self.level_snapshots is not None:
            self.level_snapshots.observe_level(self, self._batch_level)

    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._batch_level = true_mi_of(batch)

    on_test_batch_start = on_validation_batch_start
    on_predict_batch_start = on_validation_batch_start

    def _logging_step(self) -> int:
        from ..step_logging import logging_step

        return logging_step(self.trainer)

    def on_train_end(self) -> None:
        super().on_train_end()
        if self.level_snapshots is not None:
            self.level_snapshots.training_ended(self)

    def on_fit_end(self) -> None:
        """The per-level summary of every member's training estimates (``summary``), and the stream."""
        trainer = self.trainer
        if not trainer.is_global_zero or not len(self.streams):
            return
        directory = run_directory(trainer)
        if self.stream_path:
            write_stream(self.streams, self.stream_path)
        configured = [c for c in trainer.callbacks if getattr(c, "writes_level_summary", False)]  # type: ignore[attr-defined]
        if self.summary and not configured:
            write_summary(self.streams, directory, trainer)

    def write_stream_to(self, path: Optional[str] = None) -> None:
        """Write every member's per-step estimate so far to ``path`` (default: ``stream_path``); the runner calls
        it for a fit that stopped early, whose ``on_fit_end`` never came."""
        target = path or self.stream_path
        if target and len(self.streams):
            write_stream(self.streams, target)

    # ------------------------------------------------------------------------------- evaluation
    def _use_weights_for(self, level: Optional[float]) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.use_for(self, level)

    def _restore_weights(self) -> None:
        if self.level_snapshots is not None:
            self.level_snapshots.restore(self)

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> Optional[dict[str, Any]]:
        n = batch["x"].shape[-2] if self.data_mode == "replicas" and batch["x"].dim() > 2 else batch["x"].shape[0]
        if n < 2 and "x_marginal" not in batch:
            rank_zero_warn(
                f"{stage}: a batch holds a single pair (rows % data.init_args.eval_batch_size == 1); the bound needs "
                "in-batch negatives, so that pair is left out of the estimate (counted in "
                f"{stage}/skipped_batches). Choose eval_batch_size so that no batch holds one pair."
            )
            self._held_out.skipped += 1
            return None
        level = self._batch_level
        self._use_weights_for(level)
        joint, marginal = self.stacked_scores(batch)
        outputs = self.bounds(joint, marginal)
        usable = self._eval_usable(outputs, joint, marginal, stage)
        if self.num_members == 1 and bool(usable[0]):
            self.log(f"{stage}/loss", outputs.loss[0], batch_size=n)
        for group in self.bounds.reporting_groups(joint.device):
            unit = unit_of(group.bound)
            if unit == "pair":
                j, m = joint.index_select(0, group.index), marginal.index_select(0, group.index)
                values, _ = group.vmap(pmi_fields, j, m, in_dims=(0, 0))
            else:
                values = outputs.estimate.index_select(0, group.index).unsqueeze(1)
            keep = [k for k in group.members if bool(usable[k])]
            if keep == group.members:
                self._held_out.add(group.members, level, values, unit)
            elif keep:
                rows = torch.tensor([group.members.index(k) for k in keep], device=values.device)
                self._held_out.add(keep, level, values.index_select(0, rows), unit)
        return self._pointwise_outputs(batch, level, stage)

    def _eval_usable(self, outputs: Any, joint: Tensor, marginal: Tensor, stage: str) -> list[bool]:
        """Per member: its evaluation values are finite and it is active. A non-finite one raises under
        ``non_finite="raise"`` (naming the member, bound, terms and scores), else it is left out of this batch."""
        host = (
            torch.stack(
                [outputs.loss_finite, outputs.report_finite, self.guard.active, outputs.loss.detach(), outputs.estimate]
            )
            .cpu()
            .tolist()
        )
        usable = []
        for k in range(self.num_members):
            active, ok = bool(host[2][k]), bool(host[0][k]) and bool(host[1][k])
            if active and not ok:
                if self.guard.policy == "raise":
                    training, reporting = self.bounds.descriptions[k]
                    role, bound = ("bound", training) if not host[0][k] else ("estimator", reporting)
                    who = f"member '{self.member_names[k]}': " if self.num_members > 1 else ""
                    raise NonFiniteBoundError(
                        f"{who}{stage} {role} {type(bound).__name__}: non-finite values (loss={host[3][k]:.4g}, "
                        f"mi={host[4][k]:.4g}) at step {self.global_step} ({score_range('joint', joint[k])}; "
                        f"{score_range('marginal', marginal[k])})"
                    )
                who = f"member '{self.member_names[k]}': " if self.num_members > 1 else ""
                self.guard._warn(
                    f"{who}{stage} bound {type(self.bounds.descriptions[k][0]).__name__}: non-finite values (loss="
                    f"{host[3][k]:.4g}, mi={host[4][k]:.4g}); non_finite='skip': the batch is left out of its estimate"
                )
                self._held_out.skipped += 1
            usable.append(active and ok)
        return usable

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[dict[str, Any]]:
        """The batch's held-out MI estimates; ``{"record": PointwiseRecord}`` for batches with exact PMI."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[dict[str, Any]]:
        """As :meth:`validation_step`, logged under ``test/``."""
        return self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        self._restore_weights()
        intervals = gather_intervals(self, self._held_out)
        if self._held_out.skipped:
            self.log(f"{stage}/skipped_batches", float(self._held_out.skipped), sync_dist=True)
        self._held_out.clear()
        single = self.num_members == 1
        results: list[EstimateResult] = []
        for (k, level), interval in sorted(intervals.items(), key=lambda item: (item[0][0], level_order(item[0][1]))):
            member = self.member_table[k]
            log_interval(self, stage, interval, level, None if single else member.name)
            weights = self.level_snapshots.describe(level) if self.level_snapshots is not None else "final weights"
            results.append(
                EstimateResult(
                    interval,
                    self.members[k].label,
                    member=None if single else member.name,
                    true_mi=level,
                    weights=weights,
                    key=member.id.key,
                    seed=member.id.seed,
                )
            )
        groups = seed_rows(results)
        for row in groups:
            assert row.interval is not None and row.group is not None
            log_interval(self, stage, row.interval, row.true_mi, row.group, group=True)
        results += groups
        for name, info in self.retired.items():
            member = self.member_table[self.member_index(name)]
            results.append(
                EstimateResult(
                    None,
                    self.members[self.member_index(name)].label,
                    member=name,
                    key=member.id.key,
                    seed=member.id.seed,
                    status="retired",
                    extra={
                        "retired_step": info["step"],
                        "error": info["error"],
                        "note": f"at step {info['step']}: {info['error']}",
                    },
                )
            )
        self.held_out_results[stage] = list(results)
        if not results or stage != "test" or self._trainer is None or not self.trainer.is_global_zero:
            return
        notes = []
        if self.left_out:
            notes.append(f"left out (in the checkpoint, not asked for): {', '.join(self.left_out)}")
        two_sided = brackets(results, self._bound_side)
        notes += [b.describe() for b in two_sided]
        title = self._table_title(stage)
        path = write_results(
            run_directory(self.trainer),
            results,
            stage,
            self.global_step,
            dict(self.hparams),
            members=[m.id.as_json() for m in self.member_table],
            left_out=self.left_out,
            brackets=[b.as_dict() for b in two_sided],
        )
        rank_zero_info(results_table(results, title, notes) + f"\n(written to {path})")

    def _bound_side(self, result: EstimateResult) -> Optional[str]:
        """Which side of the MI a member's reported estimate is on (its reporting bound's class metadata)."""
        if result.member is None and self.num_members > 1:
            return None
        reporting = self.bounds.descriptions[0 if result.member is None else self.member_index(result.member)][1]
        return "lower" if reporting.is_lower_bound else "upper" if reporting.is_upper_bound else None

    def _table_title(self, stage: str) -> str:
        if self.num_members > 1:
            return f"Held-out MI per member and level ({stage})"
        training, reporting = self.bounds.descriptions[0]
        return f"Held-out MI, reported by {reporting.label}" + (
            f" (trained with {training.label})" if reporting is not training else ""
        )

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------ pointwise evaluation (PMI)
    def member_pmi(self, x: Tensor, y: Tensor, level: Optional[float]) -> Tensor:
        """``[K, n]`` PMI ``log r_hat(x_i, y_i)`` of each pair by every member's reporting bound, a function of the
        pair alone: batch statistics (a DV partition, InfoNCE's row normaliser) come from the fixed reference
        sample of ``level`` (``pmi_reference_size``), else from this batch."""
        reference = self.pmi_reference
        joint = self._pointwise(x, y)
        out = torch.empty_like(joint, dtype=torch.float32)
        for group in self.bounds.reporting_groups(joint.device):
            j = joint.index_select(0, group.index).float()
            kind = group.bound.pmi_normalizer
            if kind is None:  # a function of each score; the placeholder marginal only gives the batch's shape
                marginal = j.unsqueeze(-1).expand(-1, -1, max(x.shape[0] - 1, 1))
                out[group.index] = group.vmap(pmi_fields, j, marginal, in_dims=(0, 0))[0]
            elif reference is None:
                if x.shape[0] < 2:
                    raise ValueError(
                        f"predict batch: {type(group.bound).__name__} reads the PMI off in-batch statistics, which "
                        f"need at least 2 pairs; got {x.shape[0]} (set model.init_args.pmi_reference_size > 1 for a "
                        "fixed reference sample, or raise the datamodule's eval_batch_size)"
                    )
                jm, mm = self._matrix_pairs(x, y, group.index)
                out[group.index] = group.vmap(pmi_fields, jm, mm, in_dims=(0, 0))[0]
            elif kind == "global":
                out[group.index] = j - self._global_normalizer(group, level).unsqueeze(1)
            elif kind == "column":  # one statistic per y (L1Out): log mean_k exp s(x_ref_k, y_i) over the reference x
                x_reference, _ = reference.for_level(level)
                columns = self._cross(x_reference, y).index_select(0, group.index).float()  # [K, m, n]
                out[group.index] = j - (torch.logsumexp(columns, dim=1) - math.log(columns.shape[1]))
            else:
                _, y_reference = reference.for_level(level)
                rows = max(1, _ROW_CHUNK // max(len(group.members), 1))
                chunks = []
                for start in range(0, x.shape[0], rows):
                    part = slice(start, start + rows)
                    marginal = self._cross(x[part], y_reference).index_select(0, group.index).float()
                    chunks.append(group.vmap(normalizer_fields, j[:, part], marginal, in_dims=(0, 0)))
                out[group.index] = j - torch.cat(chunks, dim=1)
        return out

    def _pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        parts = [stack.pointwise(x, y) for stack in self.critic_stacks]
        return self._in_member_order(parts)

    def _cross(self, x: Tensor, y: Tensor) -> Tensor:
        return self._in_member_order([stack.cross(x, y) for stack in self.critic_stacks])

    def _in_member_order(self, parts: list[Tensor]) -> Tensor:
        if len(parts) == 1:
            return parts[0]
        joined = torch.cat(parts)
        return joined if self._critic_natural else joined.index_select(0, self._critic_order)

    def _matrix_pairs(self, x: Tensor, y: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        return matrix_to_pairs(self._cross(x, y).index_select(0, index))

    def _global_normalizer(self, group: Any, level: Optional[float]) -> Tensor:
        """The group's global statistic on the reference of ``level`` (cached per weights version)."""
        reference = self.pmi_reference
        assert reference is not None
        key = (tuple(group.members), level, self._weights_version())
        if key not in reference.cache:
            x, y = reference.for_level(level)
            jm, mm = self._matrix_pairs(x, y, group.index)
            reference.cache[key] = group.vmap(normalizer_fields, jm, mm, in_dims=(0, 0))
        return reference.cache[key]

    def _weights_version(self) -> int:
        return hash(self.level_snapshots.loaded if self.level_snapshots is not None else None)

    def _pointwise_outputs(self, batch: Any, level: Optional[float], stage: str) -> Optional[dict[str, Any]]:
        """``{"record": PointwiseRecord}`` of a batch with exact PMI, else ``None``."""
        record = self.pointwise_record(batch, level, stage)
        return None if record is None else {"record": record}

    def pointwise_record(self, batch: Any, level: Optional[float], stage: str) -> Optional[PointwiseRecord]:
        """Every member's PMI of the batch's joint pairs (and its explicit product pairs ``x_product`` /
        ``y_product``) next to the exact PMI the batch carries (``pmi``); ``None`` for a batch without it.

        Each pair's PMI is a function of the pair alone (:meth:`member_pmi`: batch statistics from
        :attr:`pmi_reference`); without a reference the joint pairs use their own batch, and the product pairs
        the batch's joint pairs as their reference (their in-batch matrix would mix the joint pairs into their
        negatives)."""
        if not isinstance(batch, dict) or "pmi" not in batch or self.data_mode == "replicas":
            return None
        with torch.no_grad():
            pmi = self.member_pmi(batch["x"], batch["y"], level)
            product = None
            if "x_product" in batch:
                saved = self.pmi_reference
                if saved is None and any(g.bound.pmi_normalizer for g in self.bounds.reporting_groups(pmi.device)):
                    self.pmi_reference = ReferenceSample({level: (batch["x"], batch["y"])})
                try:
                    product = self.member_pmi(batch["x_product"], batch["y_product"], level)
                finally:
                    self.pmi_reference = saved
        record = PointwiseRecord(
            stage=stage,
            members=self.members,
            pmi=pmi,
            pmi_true=batch["pmi"],
            pmi_product=product,
            pmi_product_true=batch.get("pmi_product") if product is not None else None,
            true_mi=level,
            up_to_constant=tuple(bool(d[1].pmi_up_to_constant) for d in self.bounds.descriptions),
        )
        return record

    def _fix_pmi_reference(self, loaders: Any, require_key: Optional[str] = None, announce: bool = True) -> None:
        """Fix the reference sample of bounds whose PMI needs batch statistics (one pass over the evaluation
        data, the first ``pmi_reference_size`` pairs of each level; see :mod:`.pmi_reference`)."""
        self.pmi_reference = None
        needs = [d[1] for d in self.bounds.descriptions if d[1].pmi_normalizer is not None]
        if not needs or self.pmi_reference_size == 0 or self.data_mode == "replicas":
            return
        self.pmi_reference = reference_from_loaders(loaders, self.pmi_reference_size, self.device, require_key)
        if announce and (self.pmi_reference is not None or require_key is None):
            for note in dict.fromkeys(describe_normalizer(b, self.pmi_reference) for b in needs):
                if note:
                    rank_zero_info(note)

    def _reference_loaders(self, stage: str, loaders: Any) -> Any:
        """Fresh loaders from the datamodule where it has them: for ``predict`` on map-style data Lightning wraps
        the batch sampler in one shared iterator, which the reference pass would use up."""
        datamodule = getattr(self.trainer, "datamodule", None)
        make = getattr(datamodule, f"{stage}_dataloader", None)
        if callable(make):
            try:
                return make()
            except (NotImplementedError, MisconfigurationException):
                pass
        return loaders

    def on_validation_start(self) -> None:
        loaders = self._reference_loaders("val", self.trainer.val_dataloaders)
        self._fix_pmi_reference(loaders, require_key="pmi", announce=False)

    def on_test_start(self) -> None:
        self._fix_pmi_reference(self._reference_loaders("test", self.trainer.test_dataloaders), require_key="pmi")

    # ----------------------------------------------------------------------------------- predict
    def on_predict_start(self) -> None:
        self._fix_pmi_reference(self._reference_loaders("predict", self.trainer.predict_dataloaders))

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Per pair ``(x_i, y_i)``: ``pmi = log r_hat(x_i, y_i)`` (``[n]``; ``[n, K]`` for several members, in the
        order of ``members``), evaluated with the weights of the pair's MI level and, for bounds whose PMI needs
        batch statistics, normalised on the fixed reference (``pmi_reference_size``). Returned with the batch's
        ``index``, ``label``, true MI level (``mi``) and exact PMI (``pmi_true``) when present. Write it with
        ``pdlightning.callbacks.PMIWriter``."""
        level = self._batch_level
        self._use_weights_for(level)
        pmi = self.member_pmi(batch["x"], batch["y"], level)
        n = pmi.shape[1]
        out: dict[str, Any] = {"pmi": pmi[0] if self.num_members == 1 else pmi.T.contiguous()}
        if self.num_members > 1:
            out["members"] = self.member_names
        if level is not None:
            out["mi"] = torch.full((n,), level, dtype=torch.float32, device=pmi.device)
        for key in ("index", "label"):
            if key in batch:
                out[key] = batch[key]
        if "pmi" in batch:
            out["pmi_true"] = batch["pmi"]
        return out

    def on_predict_epoch_end(self) -> None:
        self._restore_weights()

    # -------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["member_layout"] = self.member_layout()
        checkpoint["streams"] = self.streams.state_dict()
        if self.level_snapshots is not None:
            checkpoint["level_snapshots"] = self.level_snapshots.state_dict()

    def member_layout(self) -> dict[str, Any]:
        """Where each member's tensors live: its stack and position, per kind (critic, training, reporting)."""
        layout: dict[str, Any] = {"critics": {}, "training": {}, "estimators": {}}
        names = self.member_names
        for g, indices in enumerate(self._critic_members):
            for p, k in enumerate(indices):
                layout["critics"][names[k]] = [g, p]
        for kind, groups in (
            ("training", self.bounds._training_members),
            ("estimators", self.bounds._reporting_members),
        ):
            for g, indices in enumerate(groups):
                for p, k in enumerate(indices):
                    layout[kind][names[k]] = [g, p]
        return layout

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        stored = [m["name"] for m in checkpoint.get("members", [])]
        ours = self.member_names
        if stored and stored != ours or checkpoint.get("member_layout", self.member_layout()) != self.member_layout():
            self._map_by_name(checkpoint, stored)
        if "state_dict" in checkpoint:
            self._check_shapes(checkpoint["state_dict"])
        self.streams.load_state_dict(checkpoint.get("streams", {}), self.members)
        if self.level_snapshots is not None:
            self.level_snapshots.load_state_dict(checkpoint.get("level_snapshots"))

    def _check_shapes(self, state: dict[str, Tensor]) -> None:
        """A checkpoint whose tensors do not fit this module (another critic, other bounds) is an error naming the
        parts, not ``load_state_dict``'s."""
        ours = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}
        differ = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
        missing = sorted(ours.keys() - theirs.keys())
        if differ or missing:
            key = (differ or missing)[0]
            detail = f"{key}: checkpoint {theirs.get(key, 'absent')}, model {ours[key]}"
            raise ValueError(
                f"ckpt_path: the checkpoint's weights do not fit this model ({detail}); evaluate it with the critic "
                "and bounds it was trained with (its run directory's config.yaml)"
            )

    def _map_by_name(self, checkpoint: dict[str, Any], stored: list[str]) -> None:
        """Rewrite the checkpoint's weights for this module's members, by name (a config listing the members in
        another order, or a subset of them); resuming a fit needs the checkpoint's members exactly."""
        ours = self.member_names
        missing = [name for name in ours if name not in stored]
        if missing:
            close = {n: difflib.get_close_matches(n, stored, n=1) for n in missing}
            hints = "; ".join(f"{n!r}" + (f" (did you mean {c[0]!r}?)" if c else "") for n, c in close.items())
            raise ValueError(
                f"members: the checkpoint has no member {hints}; it holds {stored}. Evaluate the members it was "
                "trained with (or a subset of them)"
            )
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == "fit":
            raise ValueError(
                f"members: resuming a fit needs the checkpoint's members in its order, {stored}; this config lists "
                f"{ours}. Resume with the config the run was trained with (its config.yaml)"
            )
        self.left_out = [name for name in stored if name not in ours]
        layout = checkpoint.get("member_layout")
        if layout is None:
            raise ValueError("ckpt_path: the checkpoint records no member layout (not written by this version)")
        checkpoint["state_dict"] = self._remapped(checkpoint["state_dict"], layout, stored)
        snapshots = checkpoint.get("level_snapshots")
        if snapshots:
            for level, state in snapshots.get("snapshots", {}).items():
                snapshots["snapshots"][level] = self._remapped(state, layout, stored)

    def _remapped(self, state: dict[str, Tensor], layout: dict[str, Any], stored: list[str]) -> dict[str, Tensor]:
        """``state`` (the checkpoint's, members as ``layout`` places them) rewritten for this module's members."""
        current = self.state_dict()
        out = {}
        names = self.member_names
        places = {
            "critics.": ("critics", self._critic_members),
            "bounds.objectives.": ("training", self.bounds._training_members),
            "bounds.estimators.": ("estimators", self.bounds._reporting_members),
        }
        for key, value in current.items():
            prefix = next((p for p in places if key.startswith(p)), None)
            if prefix is not None:
                kind, groups = places[prefix]
                group, _, suffix = key[len(prefix) :].partition(".")
                rows = []
                for position, k in enumerate(groups[int(group)]):
                    where = layout[kind].get(names[k])
                    if where is None and kind == "estimators" and not suffix.startswith(("flat", "frozen")):
                        rows.append(value[position])  # a reporting bound asked for at evaluation: its own settings
                        continue
                    if where is None:
                        raise ValueError(
                            f"members: member {names[k]!r} reports with a bound that has learned state "
                            f"({prefix}{group}.{suffix}) the checkpoint does not hold, so it cannot report for this "
                            "critic; choose a reporting bound without learned parameters"
                            if kind == "estimators"
                            else f"members: member {names[k]!r} has a {kind} bound here but not in the checkpoint"
                        )
                    source = f"{prefix}{where[0]}.{suffix}"
                    if source not in state or state[source].shape[1:] != value.shape[1:]:
                        raise ValueError(
                            f"members: member {names[k]!r} was trained with another {kind.rstrip('s')} "
                            f"({source} is {tuple(state[source].shape[1:]) if source in state else 'absent'} in the "
                            f"checkpoint, {tuple(value.shape[1:])} here); evaluate it with the bound and critic it "
                            "was trained with"
                        )
                    rows.append(state[source][where[1]])
                out[key] = torch.stack(rows)
            elif key.startswith("guard.") and value.dim() == 1 and key in state:
                out[key] = state[key][[stored.index(name) for name in names]]
            else:
                out[key] = state.get(key, value)
        return out
