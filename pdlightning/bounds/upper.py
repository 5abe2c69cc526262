"""Variational upper bounds of the MI from a conditional density ``q(y | x)``: CLUB and L1Out.

The critic's score is the conditional log-likelihood ``s(x, y) = log q(y | x)``
(:class:`~pdlightning.critics.ConditionalGaussianCritic`); both bounds fit ``q`` by maximum likelihood on the joint
pairs (their training objective is ``E_p[log q(y | x)]``, as the CLUB paper prescribes) and report a bound built
from the same scores:

- **CLUB** (Cheng, Hao, Dai, Liu, Gan & Carin, "CLUB: A Contrastive Log-ratio Upper Bound of Mutual Information",
  ICML 2020, Sec. 3): ``I_CLUB = E_{p(x, y)}[log q(y | x)] - E_{p(x)} E_{p(y)}[log q(y | x)]``. The paper proves it
  an upper bound with ``q = p(y | x)``, and with a learned ``q`` whenever ``KL(p(x, y) || q(y|x) p(x))`` does not
  exceed ``KL(p(x)p(y) || q(y|x) p(x))``. For a Gaussian with per-coordinate correlation ``ρ`` and the true
  conditional, ``I_CLUB = d ρ² / (1 - ρ²)`` (against ``I = -d/2 log(1 - ρ²)``): 34.4 nats at the TRE protocol's
  10-nat level.
- **L1Out** (Poole, Ozair, van den Oord, Alemi & Tucker, "On Variational Bounds of Mutual Information", ICML 2019,
  Eq. 13): ``I <= E[1/n Σ_i log q(y_i | x_i) / (1/(n-1) Σ_{j≠i} q(y_i | x_j))]``, an upper bound in expectation when
  ``q`` is the true conditional (the leave-one-out mixture estimates ``p(y_i)``, and ``E log`` of it is at most
  ``log p(y_i)`` by Jensen). It normalises each ``y_i`` over the batch's *other* ``x``: a column of the score matrix,
  so it needs the in-batch matrix (:meth:`PairScores.to_matrix`), not explicit marginal pairs.
"""

from __future__ import annotations

from torch import Tensor

from .base import Bound, PairScores, log_mean_exp

__all__ = ["CLUB", "L1Out"]


class CLUB(Bound):
    """CLUB: ``mean_i log q(y_i | x_i) - mean over the marginal pairs of log q(y_j | x_i)`` (with in-batch pairs the
    ``n(n-1)`` off-diagonal pairs; with one explicit pair per row, e.g. a derangement, the paper's sampled CLUB).

    Learns ``q`` by maximum likelihood (objective ``mean_i log q(y_i | x_i)``). Pointwise,
    ``log r_hat(x, y) = log q(y | x) - c`` with ``c`` the mean marginal log-likelihood (a ``"global"`` statistic), so
    the mean over the joint pairs is the reported value.
    """

    is_upper_bound = True
    pmi_normalizer = "global"

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return pairs.joint.mean(), pairs.marginal.mean()

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        return pairs.joint.mean(), {}

    def log_normalizer(self, pairs: PairScores) -> Tensor:
        return pairs.marginal.mean()

    def pointwise(self, pairs: PairScores) -> PairScores:
        shift = self.log_normalizer(pairs)
        return PairScores(pairs.joint - shift, pairs.marginal - shift)


class L1Out(Bound):
    """L1Out: ``mean_i [log q(y_i | x_i) - log 1/(n-1) Σ_{j≠i} q(y_i | x_j)]`` over an in-batch score matrix.

    Learns ``q`` by maximum likelihood (objective ``mean_i log q(y_i | x_i)``). Pointwise,
    ``log r_hat(x_i, y_j) = log q(y_j | x_i) - log 1/(n-1) Σ_{k≠j} q(y_j | x_k)`` (a ``"column"`` statistic: one per
    ``y``). Explicit marginal pairs (``k = 1`` per row) are a ValueError: they do not hold the other ``x`` of a
    ``y``. (With ``n = 2`` one pair per row has the shape of a matrix and is read as one.)
    """

    is_upper_bound = True
    pmi_normalizer = "column"

    @staticmethod
    def _matrix(pairs: PairScores) -> Tensor:
        n, k = pairs.marginal.shape
        if k != n - 1:
            raise ValueError(
                f"marginal scores: L1Out normalises each y_i over the batch's other x_j (a column of the in-batch "
                f"score matrix: n - 1 = {n - 1} pairs per row); got k = {k} explicit marginal pair(s) per row, which "
                "do not hold them (use in-batch negatives, not x_marginal / y_marginal)"
            )
        return pairs.to_matrix()

    def log_normalizer(self, pairs: PairScores) -> Tensor:
        """``[n]``: ``log 1/(n-1) Σ_{k≠j} q(y_j | x_k)`` for each ``y_j``."""
        columns = PairScores.from_matrix(self._matrix(pairs).T)  # row j holds column j's off-diagonal scores
        return log_mean_exp(columns.marginal, dim=1)

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return pairs.joint.mean(), self.log_normalizer(pairs).mean()

    def objective(self, pairs: PairScores) -> tuple[Tensor, dict[str, Tensor]]:
        self._matrix(pairs)  # the layout error at the first batch, not only at evaluation
        return pairs.joint.mean(), {}

    def pointwise(self, pairs: PairScores) -> PairScores:
        return PairScores.from_matrix(self._matrix(pairs) - self.log_normalizer(pairs).unsqueeze(0))
