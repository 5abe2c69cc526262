"""The telescoping critic of TRE: one logistic classifier per bridge between waymark distributions, one shared body.

Rhodes, Xu & Gutmann, "Telescoping Density-Ratio Estimation" (NeurIPS 2020). Estimating ``r = p_0 / p_m`` by one
classifier fails when ``p_0`` and ``p_m`` are far apart (tens of nats: the "density chasm"); TRE inserts waymark
distributions ``p_0, p_1, ..., p_m`` and writes

    ``log r(x, y) = Σ_{k=0}^{m-1} log r_k(x, y)``,  ``r_k = p_k / p_{k+1}``,

each ``r_k`` the ratio of two close distributions, learned by a logistic classifier of waymark ``k`` (label 1)
against waymark ``k + 1`` (label 0), whose optimal logit is ``log r_k``. For MI, ``p_0 = p(x, y)`` and
``p_m = p(x)p(y)``. The paper's linear-mixing waymarks ``x_k = sqrt(1 - α_k²) x_0 + α_k x_m`` (``0 = α_0 < ... <
α_m = 1``) are applied here to ``y``, with ``x`` kept: from a joint pair ``(x, y)`` and a product pair
``(x, y')`` (``y'`` the ``y`` of another pair of the batch),

    ``waymark k = (x, sqrt(1 - α_k²) y + α_k y')``,

so waymark 0 is the joint pair and waymark ``m`` the product pair exactly, and every waymark sample is built from the
same ``(y, y')`` (the paper's coupled waymarks). For a Gaussian ``(X, Y)`` with unit variances and per-coordinate
correlation ``ρ``, waymark ``k`` is the Gaussian with correlation ``sqrt(1 - α_k²) ρ`` and the same marginals, so
each bridge's optimal ``log r_k`` is a difference of two closed-form Gaussian PMIs.

The bridges share a body (an MLP of ``[x; y]`` with the joint critic's split first layer; optionally with ``R``
squared linear projections of ``[x; y]`` beside it, ``quadratic_features``) and have one linear head each, all ``m``
heads one ``Linear(features, m)`` layer. With the squared projections a head is a quadratic form of the input of
rank ``R`` plus a function of the MLP's features; at ``R = x_dim + y_dim`` it can represent every Gaussian bridge
exactly (the TRE code's Gaussian experiments use a quadratic model). The waymark samples are stacked on a leading
axis and pass the body once, and every bridge's logit comes out of that one pass
(:meth:`TelescopingCritic.bridge_loss`), never a Python loop over bridges. :meth:`cross` / :meth:`pointwise` return
the telescoped ``Σ_k log r_k``, so every pointwise tool reads the critic's PMI as for any critic (with
:class:`~pdlightning.bounds.TRE`, which reports its mean).
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import activation_by_name, mlp
from .base import Critic

__all__ = ["TelescopingCritic", "linear_alphas"]

#: bridges (``m``) when neither ``num_waymarks`` nor ``alphas`` is given.
DEFAULT_BRIDGES = 4


def linear_alphas(num_waymarks: int) -> list[float]:
    """The paper's default schedule ``α_k = k / m`` (their code's ``get_poly_wmark_coefs`` with power 1)."""
    return [k / num_waymarks for k in range(num_waymarks + 1)]


def _check_schedule(num_waymarks: Optional[int], alphas: Optional[Sequence[float]]) -> list[float]:
    if num_waymarks is not None and (isinstance(num_waymarks, bool) or not isinstance(num_waymarks, int)):
        raise ValueError(f"num_waymarks: expected an integer number of bridges >= 1, got {num_waymarks!r}")
    if num_waymarks is not None and num_waymarks < 1:
        raise ValueError(
            f"num_waymarks: expected at least 1 bridge between p(x, y) and p(x)p(y) (1: a single classifier), "
            f"got {num_waymarks}"
        )
    if alphas is None:
        return linear_alphas(DEFAULT_BRIDGES if num_waymarks is None else num_waymarks)
    values = [float(a) for a in alphas]
    if len(values) < 2 or values[0] != 0.0 or values[-1] != 1.0:
        raise ValueError(
            f"alphas: expected a schedule from 0 (the joint p(x, y)) to 1 (the product p(x)p(y)), at least 2 values, "
            f"got {values}"
        )
    if not all(math.isfinite(a) for a in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"alphas: expected strictly increasing values in [0, 1], got {values}")
    if num_waymarks is not None and len(values) != num_waymarks + 1:
        raise ValueError(
            f"alphas: {len(values)} values make {len(values) - 1} bridges, but num_waymarks={num_waymarks}; give "
            "num_waymarks + 1 values (or only one of the two)"
        )
    return values


class TelescopingCritic(Critic):
    """TRE's critic: ``T(x, y) = Σ_k log r_k(x, y)`` over ``m`` bridges with a shared body and one head per bridge.

    Args:
        x_dim, y_dim: input features per sample.
        num_waymarks: the number ``m >= 1`` of bridges (ratios) between ``p_0 = p(x, y)`` and ``p_m = p(x)p(y)``
            (``m + 1`` waymark distributions; ``m = 1`` is a single classifier). Default 4, or ``len(alphas) - 1``.
        alphas: the mixing schedule ``0 = α_0 < α_1 < ... < α_m = 1`` (default linear, ``α_k = k / m``).
        hidden_dims: hidden widths of the shared body's MLP.
        activation: hidden activation name.
        quadratic_features: ``R`` squared linear projections ``(V [x; y])²`` added to the body's features (0: none;
            ``"full"``: ``R = x_dim + y_dim``, enough for any log-ratio quadratic in the input).
    """

    alphas: Tensor  # a registered buffer: [m + 1]

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        num_waymarks: Optional[int] = None,
        alphas: Optional[Sequence[float]] = None,
        hidden_dims: Sequence[int] = (256, 256),
        activation: str = "relu",
        quadratic_features: Union[int, Literal["full"]] = 0,
    ) -> None:
        super().__init__(x_dim, y_dim)
        schedule = _check_schedule(num_waymarks, alphas)
        if len(hidden_dims) < 1:
            raise ValueError("hidden_dims: the telescoping critic's body needs at least one hidden layer")
        if quadratic_features == "full":
            quadratic_features = x_dim + y_dim
        if isinstance(quadratic_features, bool) or not isinstance(quadratic_features, int) or quadratic_features < 0:
            raise ValueError(
                f"quadratic_features: expected a number of squared projections >= 0 or 'full', "
                f"got {quadratic_features!r}"
            )
        self.num_waymarks = len(schedule) - 1
        self.register_buffer("alphas", torch.tensor(schedule, dtype=torch.float32))
        self.first = nn.Linear(x_dim + y_dim, hidden_dims[0])
        self.first_activation = activation_by_name(activation)
        rest = mlp(hidden_dims[0], hidden_dims[1:-1], hidden_dims[-1], activation) if len(hidden_dims) > 1 else None
        self.rest = nn.Sequential(rest, activation_by_name(activation)) if rest is not None else nn.Identity()
        self.quadratic = nn.Linear(x_dim + y_dim, quadratic_features, bias=False) if quadratic_features else None
        self.heads = nn.Linear(hidden_dims[-1] + quadratic_features, self.num_waymarks)  # output k: log r_k

    # ------------------------------------------------------------------------------------------------ body
    def features(self, x: Tensor, y: Tensor) -> Tensor:
        """Body features of the pairs ``(x[..., :], y[..., :])``, broadcasting the leading dimensions: ``[..., h]``
        (the MLP's last hidden layer, then the squared projections when ``quadratic_features``).

        ``W [x; y] + b = W_x x + (W_y y + b)`` is computed per sample and broadcast, so ``x [n, 1, d]`` against
        ``y [1, m, d]`` scores all ``n m`` pairs without tiling them (as :class:`~.JointCritic`)."""
        weight_x, weight_y = self.first.weight.split([self.x_dim, self.y_dim], dim=1)
        hidden = self.first_activation(F.linear(x, weight_x, self.first.bias) + F.linear(y, weight_y))
        shape = hidden.shape
        features = self.rest(hidden.reshape(-1, shape[-1])).reshape(*shape[:-1], -1)  # one 2-d GEMM per layer
        if self.quadratic is None:
            return features
        quadratic_x, quadratic_y = self.quadratic.weight.split([self.x_dim, self.y_dim], dim=1)
        projection = F.linear(x, quadratic_x) + F.linear(y, quadratic_y)  # broadcast like the first layer
        return torch.cat([features, projection * projection], dim=-1)

    def bridge_log_ratios(self, x: Tensor, y: Tensor) -> Tensor:
        """``[..., m]``: every bridge's ``log r_k`` of the pairs (broadcast as in :meth:`features`)."""
        return self.heads(self.features(x, y))

    # --------------------------------------------------------------------------------------------- scores
    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = self._inputs(x, y)
        return self.bridge_log_ratios(x.unsqueeze(1), y.unsqueeze(0)).sum(-1)

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        self.check_paired(x, y)
        x, y = self._inputs(x, y)
        return self.bridge_log_ratios(x, y).sum(-1)

    # ---------------------------------------------------------------------------------------------- training
    def waymarks(self, y: Tensor, y_marginal: Tensor) -> Tensor:
        """``[m + 1, n, y_dim]``: waymark ``k``'s ``y`` is ``sqrt(1 - α_k²) y + α_k y_marginal``."""
        alphas = self.alphas.to(y.dtype).view(-1, 1, 1)
        return torch.sqrt(1.0 - alphas * alphas) * y.unsqueeze(0) + alphas * y_marginal.unsqueeze(0)

    def bridge_loss(self, x: Tensor, y: Tensor, y_marginal: Tensor) -> Tensor:
        """The sum over bridges of the logistic loss of waymark ``k`` (label 1) against waymark ``k + 1`` (label 0):

            ``Σ_k [ mean_i softplus(-log r_k(x_i, y_i^(k))) + mean_i softplus(log r_k(x_i, y_i^(k+1))) ]``

        with ``y^(k)`` the waymarks of :meth:`waymarks` (``y_marginal``: the batch's ``y`` re-paired by a
        permutation, ``y_marginal[i] = y[σ(i)]``). All waymarks pass the body once, stacked on a leading axis, and
        all heads score them at once; a scalar. With ``m = 1`` it is the balanced logistic loss of joint against
        product pairs (:class:`~pdlightning.bounds.ProbabilisticClassifier` with ``balanced=True``)."""
        self.check_paired(x, y)
        self.check_paired(x, y_marginal)
        x, y = self._inputs(x, y)
        _, y_marginal = self._inputs(x, y_marginal)
        logits = self.bridge_log_ratios(x.unsqueeze(0), self.waymarks(y, y_marginal))  # [m + 1, n, m]
        numerator = logits[:-1].diagonal(dim1=0, dim2=2)  # [n, m]: head k on waymark k
        denominator = logits[1:].diagonal(dim1=0, dim2=2)  # [n, m]: head k on waymark k + 1
        return (F.softplus(-numerator).mean(0) + F.softplus(denominator).mean(0)).sum()
