"""The one interface every MI / PD objective implements.

A critic produces scores ``T(x, y)``. A bound sees them as a :class:`PairScores`: the scores of the
``n`` joint pairs ``(x_i, y_i) ~ p(x, y)`` and, per row, ``k`` scores of product-of-marginals pairs.
The usual in-batch construction (all ``n(n-1)`` off-diagonal pairs of the score matrix, as in the
public codes of the SMILE, PD and ReMINE papers) is :meth:`PairScores.from_matrix`; a task that draws
its own marginal pairs (the one-hot drift task) passes them with :meth:`PairScores.from_pairs`. Bounds
only ever read ``joint`` and ``marginal``, so no bound re-implements that split.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional, overload

import torch
from torch import Tensor, nn

__all__ = ["Bound", "BoundOutput", "PairScores", "log_mean_exp", "as_pair_scores"]


class _LogMeanExp(torch.autograd.Function):
    """``logsumexp(values, dim) - log(count)`` whose gradient (the softmax) is 0, not NaN, over a slice of all
    ``-inf``. One fused forward and backward: few operations, also under ``torch.vmap``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(values: Tensor, dim: int) -> Tensor:
        return torch.logsumexp(values, dim) - math.log(values.shape[dim])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, int], output: Tensor) -> None:
        values, dim = inputs
        ctx.save_for_backward(values)
        ctx.dim = dim

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (values,) = ctx.saved_tensors
        weights = torch.softmax(values, ctx.dim).nan_to_num(0.0)  # all -inf: 0/0 -> 0
        return grad.unsqueeze(ctx.dim) * weights, None


def log_mean_exp(values: Tensor, dim: Optional[int] = None) -> Tensor:
    """``log mean exp(values)`` over ``dim`` (all entries if None), computed like ``logsumexp``.

    Unlike ``torch.logsumexp``, a slice whose entries are all ``-inf`` gives ``-inf`` with a *zero*
    gradient instead of NaN (``exp`` of it is 0, so ``e^{lme}``-based terms stay finite and
    differentiable when every marginal score underflows).
    """
    if dim is None:
        values, dim = values.reshape(-1), 0
    return _LogMeanExp.apply(values, dim % values.dim())


@dataclass(frozen=True)
class PairScores:
    """Critic scores split into joint and product-of-marginals pairs.

    Attributes:
        joint: ``[n]`` scores ``T(x_i, y_i)`` of pairs drawn from ``p(x, y)``.
        marginal: ``[n, k]`` scores of pairs drawn from ``p(x)p(y)``; row ``i`` holds the negatives
            that share ``x_i`` when they come from a score matrix (InfoNCE normalises per row).
    """

    joint: Tensor
    marginal: Tensor

    def __post_init__(self) -> None:
        if self.joint.dim() != 1:
            raise ValueError(f"joint scores: expected shape [n], got {tuple(self.joint.shape)}")
        if self.marginal.dim() != 2 or self.marginal.shape[0] != self.joint.shape[0]:
            raise ValueError(
                f"marginal scores: expected shape [n={self.joint.shape[0]}, k], got {tuple(self.marginal.shape)}"
            )
        if self.marginal.shape[1] < 1:
            raise ValueError("marginal scores: need at least one marginal pair per row (k >= 1)")

    @property
    def batch_size(self) -> int:
        return self.joint.shape[0]

    @property
    def negatives_per_row(self) -> int:
        return self.marginal.shape[1]

    @classmethod
    def from_matrix(cls, scores: Tensor) -> "PairScores":
        """Diagonal = joint pairs, the ``n(n-1)`` off-diagonal entries = marginal pairs."""
        if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
            raise ValueError(f"scores: expected a square [n, n] matrix, got {tuple(scores.shape)}")
        n = scores.shape[0]
        if n < 2:
            raise ValueError(f"scores: batch size must be >= 2 to have negative pairs, got n={n}")
        off_diagonal = scores.flatten()[1:].view(n - 1, n + 1)[:, :-1].reshape(n, n - 1)
        return cls(joint=scores.diagonal(), marginal=off_diagonal)

    @classmethod
    def from_pairs(cls, joint: Tensor, marginal: Tensor) -> "PairScores":
        """Explicit marginal pairs: ``marginal`` of shape ``[n]`` (one per row) or ``[n, k]``."""
        if marginal.dim() == 1:
            marginal = marginal.unsqueeze(1)
        return cls(joint=joint, marginal=marginal)

    def to_matrix(self) -> Tensor:
        """The ``[n, n]`` score matrix :meth:`from_matrix` split (its inverse): ``marginal`` must hold each row's
        ``n - 1`` off-diagonal scores. Tensor ops only (vmap-compatible); a ValueError for other layouts."""
        n, k = self.marginal.shape
        if k != n - 1:
            raise ValueError(
                f"marginal scores: a score matrix has n - 1 = {n - 1} off-diagonal pairs per row, got k = {k} "
                "(explicit marginal pairs have no matrix)"
            )
        # from_matrix read flat[1:] as [n-1, n+1] rows whose last entry is the next diagonal element: put them back.
        rows = torch.cat([self.marginal.reshape(n - 1, n), self.joint[1:].unsqueeze(1)], dim=1)
        return torch.cat([self.joint[:1], rows.reshape(-1)]).view(n, n)

    def float(self) -> "PairScores":
        if self.joint.dtype == torch.float32 and self.marginal.dtype == torch.float32:
            return self
        return PairScores(self.joint.float(), self.marginal.float())

    def as_matrix(self) -> Tensor:
        """Rows ``[joint_i, marginal_i...]``: shape ``[n, k + 1]`` (the InfoNCE logits)."""
        return torch.cat([self.joint.unsqueeze(1), self.marginal], dim=1)


def as_pair_scores(
    scores: Optional[Tensor | PairScores] = None,
    joint: Optional[Tensor] = None,
    marginal: Optional[Tensor] = None,
) -> PairScores:
    """Accept a score matrix, a :class:`PairScores`, or explicit ``joint``/``marginal`` tensors."""
    if isinstance(scores, PairScores):
        return scores
    if scores is not None:
        if joint is not None or marginal is not None:
            raise ValueError("pass either a score matrix or explicit joint/marginal scores, not both")
        return PairScores.from_matrix(scores)
    if joint is None or marginal is None:
        raise ValueError("pass a score matrix `scores`, or both `joint` and `marginal` scores")
    return PairScores.from_pairs(joint, marginal)


@dataclass
class BoundOutput:
    """What a bound returns for one batch.

    Attributes:
        loss: scalar to minimise (carries the gradient).
        mi: reported MI estimate in nats (detached); ``mi = first_term - second_term``.
        first_term: joint-pair term of the reported estimate (detached).
        second_term: marginal / partition term of the reported estimate (detached).
        scores: the float32 scores the bound saw (detached), for diagnostics.
        extras: other named scalars (detached), e.g. a regulariser's value or a learned ``eta``.
    """

    loss: Tensor
    mi: Tensor
    first_term: Tensor
    second_term: Tensor
    scores: PairScores
    extras: dict[str, Tensor] = field(default_factory=dict)


class Bound(nn.Module, metaclass=ABCMeta):
    """Base class of MI bounds and PD/PMI objectives.

    A subclass implements :meth:`terms` (its own value as ``(first_term, second_term)``, with
    gradient) and :meth:`pointwise` (``log r`` of every pair); it overrides :meth:`objective` when it
    learns with something other than its value (JS, SMILE, the PD estimators) and :meth:`estimate`
    when it reports something other than its terms (plug-in estimators). Everything runs in float32
    with autocast disabled, whatever the caller's precision.

    What a callback, the report or a wrapper needs to know about a bound is declared here, once, as
    class attributes (override them in the subclass): :attr:`is_lower_bound`,
    :attr:`has_partition_term`, :attr:`log_domain_second_term`, :attr:`optimal_second_term`, and the
    methods :meth:`value_ceiling` and :attr:`second_term_target`.
    """

    #: the reported value is a lower bound of the MI in expectation.
    is_lower_bound: ClassVar[bool] = False
    #: the reported value is an upper bound of the MI in expectation (CLUB, L1Out: under their stated conditions).
    is_upper_bound: ClassVar[bool] = False
    #: the value has a marginal / partition term (False: a plug-in ``E_p[log r_hat]``, nothing for
    #: Re-X to regularise).
    has_partition_term: ClassVar[bool] = True
    #: the second term is a log-partition ``log E[e^f]`` (DV family), not a positive average
    #: ``E[e^f]`` (NWJ family): the log-Euclidean Re-X distance needs the latter.
    log_domain_second_term: ClassVar[bool] = False
    #: value of the second term at the optimal critic: the ``C*`` Re-X pulls it towards by default
    #: (0 for the DV family, whose partition may settle anywhere; 1 for the NWJ family).
    optimal_second_term: ClassVar[Optional[float]] = None
    #: the training objective reads the product-of-marginals scores (False: TRE, whose objective on the scores is
    #: zero; it learns through its critic's own loss). A fit whose members' objectives and plug-in estimates read
    #: only the joint scores does not score their critic on the in-batch matrix while training.
    objective_reads_marginal: ClassVar[bool] = True
    #: short human name used in labels (default: the class name).
    short_name: ClassVar[Optional[str]] = None
    #: what :meth:`pointwise` takes from the batch besides each pair's own score: ``None`` (nothing:
    #: ``log r`` is a function of the score), ``"global"`` (one statistic over all marginal pairs,
    #: e.g. a DV partition), ``"row"`` (one per ``x``, over its marginal pairs: InfoNCE) or ``"column"`` (one per
    #: ``y``, over the batch's ``x``: L1Out's ``log mean_j q(y | x_j)``). For those
    #: ``pointwise = score - log_normalizer(pairs)``, which lets evaluation take the
    #: statistic from a fixed reference sample so a pair's PMI does not depend on its batch.
    pmi_normalizer: ClassVar[Optional[Literal["global", "row", "column"]]] = None
    #: :meth:`pointwise` gives ``log r`` only up to an additive constant (e.g. the raw critic of an objective
    #: invariant to shifting the critic, with no normaliser subtracted): a constant error is then no error, and the
    #: pointwise evaluation reports only shift-invariant statistics (rank correlation, centred RMSE). False for the
    #: package's bounds: the DV family subtracts its estimated log-partition and InfoNCE its row normaliser, which
    #: fixes the constant (``E_{p(x)p(y)}[r_hat] = 1`` on the statistic's sample).
    pmi_up_to_constant: ClassVar[bool] = False
    #: plain settings (attribute names) whose values the computation reads from a buffer instead, so that bounds that
    #: differ only in them run as one stacked call (SMILE's ``tau``); labels still read the attribute.
    stacked_settings: ClassVar[tuple[str, ...]] = ()

    def forward(
        self,
        scores: Optional[Tensor | PairScores] = None,
        *,
        joint: Optional[Tensor] = None,
        marginal: Optional[Tensor] = None,
    ) -> BoundOutput:
        pairs = as_pair_scores(scores, joint, marginal)
        with torch.autocast(device_type=pairs.joint.device.type, enabled=False):
            pairs = pairs.float()
            if type(self).objective is Bound.objective and type(self).estimate is Bound.estimate:
                first, second = self.terms(pairs)  # learns and reports its own value: the terms once
                objective, extras = first - second, dict[str, Tensor]()
            else:
                objective, extras = self.objective(pairs)
                first, second = self.estimate(pairs)
            mi = self.value(first, second, pairs)
        return BoundOutput(
            loss=-objective,
            mi=mi.detach(),
            first_term=first.detach(),
            second_term=second.detach(),
            scores=PairScores(pairs.joint.detach(), pairs.marginal.detach()),
            extras={k: v.detach() for k, v in extras.items()},
        )

    def report(self, pairs: PairScores) -> tuple[Tensor, Tensor, Tensor]:
        """``(mi, first_term, second_term)`` of the reported estimate alone (no training objective, no
        gradient): what a reporting bound (``estimator``) computes. float32, autocast off, as :meth:`forward`."""
        with torch.no_grad(), torch.autocast(device_type=pairs.joint.device.type, enabled=False):
            pairs = pairs.float()
            first, second = self.estimate(pairs)
            return self.value(first, second, pairs), first, second

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        """The training objective to *maximise*, and named extras to log; default: the bound's own
        value ``first_term - second_term``."""
        first, second = self.terms(pairs)
        return first - second, {}

    def estimate(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        """The reported MI as ``(first_term, second_term)``; default: the bound's own terms."""
        return self.terms(pairs)

    def value(self, first: Tensor, second: Tensor, pairs: PairScores) -> Tensor:
        """The reported MI ``first - second``, clamped to :meth:`value_ceiling` when the bound has
        one: the exact value never exceeds it, so the clamp removes only float32 rounding."""
        ceiling = self.value_ceiling(pairs.negatives_per_row)
        difference = first - second
        return difference if ceiling is None else torch.clamp(difference, max=ceiling)

    def value_ceiling(self, negatives_per_row: int) -> Optional[float]:
        """The largest value the bound can report with ``negatives_per_row`` marginal pairs per joint
        pair (InfoNCE: ``log(k + 1)``); ``None`` when it has no such ceiling."""
        return None

    @property
    def second_term_target(self) -> Optional[float]:
        """The value a regulariser pins the second term to (Re-X's ``C*``); ``None`` if none does."""
        return None

    @abstractmethod
    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        """``(first_term, second_term)`` of this bound's own value, with gradient."""

    def second_term(self, pairs: PairScores) -> Tensor:
        """The marginal / partition term of the bound's value (what Re-X regularises)."""
        return self.terms(pairs)[1]

    def log_second_term(self, pairs: PairScores) -> Tensor:
        """``log second_term``; bounds whose second term is an exponential average override this
        with an exact ``logsumexp`` form."""
        return torch.log(self.second_term(pairs))

    @overload
    def pmi(self, scores: Tensor) -> Tensor: ...

    @overload
    def pmi(
        self,
        scores: Optional[PairScores] = None,
        *,
        joint: Optional[Tensor] = None,
        marginal: Optional[Tensor] = None,
    ) -> PairScores: ...

    def pmi(
        self,
        scores: Optional[Tensor | PairScores] = None,
        *,
        joint: Optional[Tensor] = None,
        marginal: Optional[Tensor] = None,
    ) -> PairScores | Tensor:
        """Pointwise log-dependency ``log r(x, y)`` estimated from the critic's scores.

        Returns the same layout as the input: an ``[n, n]`` matrix for a score matrix, otherwise a
        :class:`PairScores` of the joint and marginal pairs. Batch statistics a bound needs (a DV
        partition, InfoNCE row normalisers) are taken from the given batch.
        """
        pairs = as_pair_scores(scores, joint, marginal)
        with torch.no_grad(), torch.autocast(device_type=pairs.joint.device.type, enabled=False):
            result = self.pointwise(pairs.float())
        if isinstance(scores, Tensor):
            matrix = torch.empty_like(scores, dtype=torch.float32)
            n = matrix.shape[0]
            matrix.diagonal().copy_(result.joint)
            matrix.flatten()[1:].view(n - 1, n + 1)[:, :-1].copy_(result.marginal.reshape(n - 1, n))
            return matrix
        return result

    @abstractmethod
    def pointwise(self, pairs: PairScores) -> PairScores:
        """Log-dependency of every pair in ``pairs`` (no gradient needed)."""

    def log_normalizer(self, pairs: PairScores) -> Tensor:
        """The batch statistic :meth:`pointwise` subtracts from the scores: a scalar (``"global"``)
        or ``[n]`` (``"row"``: per ``x_i``; ``"column"``: per ``y_j``); only for bounds with a
        :attr:`pmi_normalizer`."""
        raise NotImplementedError(f"{type(self).__name__}'s pointwise estimate takes no batch statistic")

    def hyperparameters(self) -> dict[str, Any]:
        """The settings that make this bound differ from another of its class (for labels)."""
        return {}

    @property
    def label(self) -> str:
        """Human label with the parameters, e.g. ``SMILE(τ=5)``, ``ReMINE(λ=1)``, ``NWJ``."""
        name = self.short_name or type(self).__name__
        settings = ", ".join(f"{k}={_format_setting(v)}" for k, v in self.hyperparameters().items())
        return f"{name}({settings})" if settings else name


def _format_setting(value: Any) -> str:
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:g}"
    return str(value)
