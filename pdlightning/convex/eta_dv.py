"""η-MINE-convex: the η-DV bound with a linear witness on a fixed feature map, solved to its optimum.

Mroueh et al., "Improved Mutual Information Estimation" (AAAI 2021), Sec. 3 and Table 1. With samples of ``P`` (the
joint pairs, for MI) and of ``Q`` (product-of-marginals pairs) and a fixed feature map ``Φ``, the witness is
``f(z) = <w, Φ(z)>`` and the regularised empirical loss

    ``L(w, η) = e^{-η} E_Q[e^{<w, Φ>}] - E_P[<w, Φ>] + η - 1 + λ/2 ||w||²``

is jointly convex in ``(w, η)`` (Lemma 3: a log-sum-exp of affine functions of ``(w, η)``, plus affine and
quadratic terms), so it is solved, not stepped: full-batch L-BFGS with a strong-Wolfe line search (float64) until
the largest entry of the gradient is below ``tol``.

What a fit reports (:class:`ConvexSolution`), with ``r* = e^{f* - η*}`` the ratio estimate at the optimum:

- ``value = -L̂(w*, η*)`` without the penalty: the η-DV bound of the fitted witness on the fit's samples (the
  paper's KALE estimate ``D̂_DV``, Eq. 16);
- ``kale = E_Q[r* log r*]``: the reading of the dual, constrained ratio estimation (Theorem 1, Eq. 15, 18);
- ``normalisation = E_Q[r*]``: 1 at the optimum, since ``∂L/∂η = 1 - E_Q[r]``: ``η`` is the Lagrange multiplier
  of the constraint ``E_Q[r] = 1`` (Eq. 14-15).

At a stationary point ``w* = (E_P Φ - E_Q[r* Φ]) / λ``, so ``value = kale + λ ||w*||²`` exactly (and the
regularised primal optimum ``-min L = kale + λ/2 ||w*||² = kale + MMD²_Φ(r*q, p) / (2λ)``, the dual objective).
``value`` is the number to compare with a neural estimator's training value; :meth:`EtaDVConvex.estimate` gives the
η-DV bound of the fitted ``(w*, η*)`` on held-out samples, a lower bound of the true MI / KL in expectation.

Marginal pairs for MI: ``negatives`` per joint pair, ``(x_σ(i), y_σ(i+k))`` for ``k = 1..negatives`` after a seeded
shuffle ``σ``: each ``x`` meets ``negatives`` other ``y`` and never its own (the off-diagonal of the score matrix).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..bounds.base import log_mean_exp
from .features import FeatureMap, RandomFourierFeatures

__all__ = ["ConvexSolution", "EtaDVConvex", "eta_dv_loss", "solve_eta_dv", "fit_eta_dv_convex", "shifted_pairs"]

ArrayLike = Union[Tensor, np.ndarray]


def eta_dv_loss(w: Tensor, eta: Tensor, phi_p: Tensor, phi_q: Tensor, lam: float = 0.0) -> Tensor:
    """``e^{-η} mean_Q e^{Φ_q w} - mean_P Φ_p w + η - 1 + λ/2 ||w||²`` (the regularised η-DV loss, to minimise)."""
    return torch.exp(log_mean_exp(phi_q @ w) - eta) - (phi_p @ w).mean() + eta - 1.0 + 0.5 * lam * torch.dot(w, w)


@dataclass(frozen=True)
class ConvexSolution:
    """The optimum of one convex η-DV fit (see the module docstring for what each number means).

    Attributes:
        value: ``-L̂(w*, η*)`` without the penalty, the η-DV bound on the fit's samples (nats).
        kale: ``E_Q[r* log r*]``, the dual's ratio-estimation reading (nats).
        normalisation: ``E_Q[r*]`` (1 at the optimum).
        objective: the regularised loss at the solution, ``L̂(w*, η*) + λ/2 ||w*||²``.
        eta: ``η*``.
        weight_norm: ``||w*||``.
        gradient_norm: largest entry of the regularised loss's gradient at the solution.
        tolerance: the ``tol`` it was solved to; ``converged`` says whether ``gradient_norm <= tolerance``.
        iterations: L-BFGS iterations.
        seconds: wall time of the solve (features not included).
        num_p, num_q: samples of ``P`` and of ``Q`` in the fit.
        num_features: ``m``.
    """

    value: float
    kale: float
    normalisation: float
    objective: float
    eta: float
    weight_norm: float
    gradient_norm: float
    tolerance: float
    iterations: int
    converged: bool
    seconds: float
    num_p: int
    num_q: int
    num_features: int


def _check_settings(lam: float, tol: float, max_iter: int) -> None:
    if not (isinstance(lam, (int, float)) and not isinstance(lam, bool) and lam >= 0 and np.isfinite(lam)):
        raise ValueError(f"lam: expected a regularisation weight >= 0 (λ/2 ||w||²), got {lam!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol: expected a positive gradient tolerance, got {tol!r}")
    if isinstance(max_iter, bool) or not (isinstance(max_iter, int) and max_iter >= 1):
        raise ValueError(f"max_iter: expected an integer >= 1, got {max_iter!r}")


def solve_eta_dv(
    phi_p: Tensor,
    phi_q: Tensor,
    lam: float = 1e-3,
    tol: float = 1e-6,
    max_iter: int = 2000,
    w0: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, ConvexSolution]:
    """Minimise :func:`eta_dv_loss` over ``(w, η)`` for fixed features ``Φ_p [n_p, m]``, ``Φ_q [n_q, m]``.

    Full-batch L-BFGS (strong-Wolfe line search) in float64 from ``w0`` (default 0) and the ``η`` optimal for it
    (``log mean_Q e^{Φ_q w0}``), until the gradient's largest entry is at most ``tol`` or ``max_iter`` iterations
    (then a warning says how far it got). Returns ``(w*, η*, solution)``.
    """
    _check_settings(lam, tol, max_iter)
    if phi_p.dim() != 2 or phi_q.dim() != 2 or phi_p.shape[1] != phi_q.shape[1]:
        raise ValueError(
            f"phi_p, phi_q: expected feature matrices [n_p, m] and [n_q, m], got {tuple(phi_p.shape)} and "
            f"{tuple(phi_q.shape)}"
        )
    phi_p, phi_q = phi_p.double(), phi_q.to(phi_p.device).double()
    m = phi_p.shape[1]
    w_start = torch.zeros(m, dtype=torch.float64, device=phi_p.device) if w0 is None else w0.to(phi_p).clone()
    eta_start = log_mean_exp(phi_q @ w_start).reshape(1)
    theta = torch.cat([w_start, eta_start]).requires_grad_(True)

    def loss_of(t: Tensor) -> Tensor:
        return eta_dv_loss(t[:m], t[m], phi_p, phi_q, lam)

    optimizer = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tol,
        tolerance_change=1e-15,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = loss_of(theta)
        loss.backward()
        return loss

    start = time.perf_counter()
    optimizer.step(closure)
    seconds = time.perf_counter() - start
    iterations = int(optimizer.state[theta].get("n_iter", 0))
    theta = theta.detach()
    w, eta = theta[:m], theta[m]
    with torch.enable_grad():
        probe = theta.clone().requires_grad_(True)
        objective = loss_of(probe)
        (gradient,) = torch.autograd.grad(objective, probe)
    gradient_norm = float(gradient.abs().max())
    with torch.no_grad():
        f_p, log_r = phi_p @ w, phi_q @ w - eta
        r = torch.exp(log_r)
        normalisation = float(r.mean())
        kale = float((r * log_r).mean())
        value = float(f_p.mean() - torch.exp(log_mean_exp(phi_q @ w) - eta) - eta + 1.0)
    solution = ConvexSolution(
        value=value,
        kale=kale,
        normalisation=normalisation,
        objective=float(objective.detach()),
        eta=float(eta),
        weight_norm=float(w.norm()),
        gradient_norm=gradient_norm,
        tolerance=tol,
        iterations=iterations,
        converged=gradient_norm <= tol,
        seconds=seconds,
        num_p=phi_p.shape[0],
        num_q=phi_q.shape[0],
        num_features=m,
    )
    if not solution.converged:
        warnings.warn(
            f"convex η-DV: the gradient's largest entry is {gradient_norm:.3g} > tol={tol:g} after {iterations} "
            f"L-BFGS iterations (max_iter={max_iter}); raise max_iter or lam (λ = 0 may have no minimiser when "
            "the features separate P from Q)",
            RuntimeWarning,
            stacklevel=2,
        )
    return w, eta, solution


def _as_tensor(value: ArrayLike, name: str) -> Tensor:
    tensor = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(1)
    if tensor.dim() < 2 or tensor.shape[0] < 1:
        raise ValueError(f"{name}: expected samples of shape [n, ...], got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        tensor = tensor.float()
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name}: the samples must be finite")
    return tensor


def shifted_pairs(x: Tensor, y: Tensor, negatives: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``negatives`` product-of-marginals pairs per joint pair: ``(x_σ(i), y_σ(i+k mod n))``, ``k = 1..negatives``,
    with ``σ`` a permutation seeded by ``seed``; no pair is a joint pair. Returns ``[n * negatives, ...]`` each."""
    n = x.shape[0]
    if isinstance(negatives, bool) or not (isinstance(negatives, int) and 1 <= negatives <= n - 1):
        raise ValueError(f"negatives: expected an integer in [1, n - 1 = {n - 1}], got {negatives!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(x.device)
    xs = x[order].repeat(negatives, *([1] * (x.dim() - 1)))
    ys = torch.cat([y[order.roll(-k)] for k in range(1, negatives + 1)])
    return xs, ys


class EtaDVConvex(nn.Module):
    """η-MINE-convex: fit ``f = <w, Φ>`` and ``η`` on a fixed feature map to the optimum of the convex η-DV loss.

    Use it on paired samples (MI: :meth:`fit`, :meth:`estimate`, :meth:`pmi`) or on two sample sets (KL(P || Q):
    :meth:`fit_divergence`, :meth:`estimate_divergence`, :meth:`log_ratio`). A post-fit step on a trained critic is
    ``EtaDVConvex(CriticFeatures(critic)).fit(x, y)`` (the paper's η-MINE-convex; the fit starts from the critic's
    own last layer). The fitted ``w`` and ``η`` are buffers (saved with ``state_dict``).

    Args:
        features: the feature map ``Φ`` (:class:`~.features.RandomFourierFeatures`,
            :class:`~.features.CriticFeatures`, or any :class:`~.features.FeatureMap`).
        lam: ``λ >= 0`` of the penalty ``λ/2 ||w||²``.
        tol: the solve stops when the gradient's largest entry is at most this.
        max_iter: L-BFGS iterations at most.
        negatives: marginal pairs per joint pair for MI (see :func:`shifted_pairs`); the paper uses 1.
        seed: seed of the marginal pairs' shuffle.
        warm_start: start from the feature map's :meth:`~.features.FeatureMap.initial_weights` (a trained critic's
            last layer) instead of ``w = 0``; the optimum is the same (the problem is convex), only reached sooner.
    """

    w: Tensor
    eta: Tensor

    def __init__(
        self,
        features: FeatureMap,
        lam: float = 1e-3,
        tol: float = 1e-6,
        max_iter: int = 2000,
        negatives: int = 1,
        seed: int = 0,
        warm_start: bool = True,
    ) -> None:
        super().__init__()
        _check_settings(lam, tol, max_iter)
        if isinstance(negatives, bool) or not (isinstance(negatives, int) and negatives >= 1):
            raise ValueError(f"negatives: expected an integer >= 1, got {negatives!r}")
        if not isinstance(features, FeatureMap):
            raise ValueError(f"features: expected a FeatureMap, got {type(features).__name__}")
        self.features = features
        self.lam, self.tol, self.max_iter = float(lam), tol, max_iter
        self.negatives, self.seed, self.warm_start = negatives, seed, warm_start
        self.register_buffer("w", torch.zeros(features.out_dim, dtype=torch.float64))
        self.register_buffer("eta", torch.zeros((), dtype=torch.float64))
        self.solution: Optional[ConvexSolution] = None

    # ------------------------------------------------------------------------------------------ fits
    def _solve(self, phi_p: Tensor, phi_q: Tensor) -> ConvexSolution:
        w0 = self.features.initial_weights() if self.warm_start else None
        w, eta, solution = solve_eta_dv(phi_p, phi_q, self.lam, self.tol, self.max_iter, w0)
        self.w.copy_(w.to(self.w.device))
        self.eta.copy_(eta.to(self.eta.device))
        self.solution = solution
        return solution

    def fit(self, x: ArrayLike, y: ArrayLike) -> ConvexSolution:
        """Fit on joint pairs ``(x_i, y_i)`` (MI): ``Q`` is ``negatives`` shifted pairs per joint pair."""
        x, y = self._pairs(x, y)
        xq, yq = shifted_pairs(x, y, self.negatives, self.seed)
        self.features.prepare(torch.cat([x, xq]), torch.cat([y, yq]))
        return self._solve(self.features.features(x, y), self.features.features(xq, yq))

    def fit_divergence(self, p: ArrayLike, q: ArrayLike) -> ConvexSolution:
        """Fit on samples of ``P`` and of ``Q`` (``[n_p, d]``, ``[n_q, d]``): the η-DV bound of ``KL(P || Q)``."""
        p, q = self._sample_sets(p, q)
        self.features.prepare(torch.cat([p, q]))
        return self._solve(self.features.features(p), self.features.features(q))

    # ------------------------------------------------------------------------------ fitted witness
    def _check_fitted(self) -> None:
        if self.solution is None and not bool(self.w.any()):
            raise RuntimeError("EtaDVConvex: not fitted; call fit(x, y) or fit_divergence(p, q) first")

    def witness(self, x: ArrayLike, y: Optional[ArrayLike] = None) -> Tensor:
        """``f(z) = <w*, Φ(z)>`` (float64 ``[n]``) of pairs ``(x_i, y_i)`` or samples ``x_i`` (``y`` None)."""
        self._check_fitted()
        xt = _as_tensor(x, "x")
        yt = None if y is None else _as_tensor(y, "y")
        phi = self.features.features(xt, yt)
        return phi @ self.w.to(phi.device)

    def pmi(self, x: ArrayLike, y: ArrayLike) -> Tensor:
        """``log r(x_i, y_i) = f(x_i, y_i) - η*`` (float64 ``[n]``): the pointwise log-dependency of each pair,
        normalised on the fit's marginal pairs (``E_Q[r] = 1``); compare with :mod:`pdlightning.metrics`."""
        f = self.witness(x, y)
        return f - self.eta.to(f.device)

    def log_ratio(self, z: ArrayLike) -> Tensor:
        """``log r(z_i) = log dP/dQ(z_i)`` estimate ``f(z_i) - η*`` (float64 ``[n]``)."""
        f = self.witness(z)
        return f - self.eta.to(f.device)

    def _value(self, f_p: Tensor, f_q: Tensor) -> float:
        eta = self.eta.to(f_p.device)
        return float(f_p.mean() - torch.exp(log_mean_exp(f_q) - eta) - eta + 1.0)

    def estimate(self, x: ArrayLike, y: ArrayLike, seed: Optional[int] = None) -> float:
        """The η-DV bound of the fitted ``(w*, η*)`` on (held-out) pairs: ``E_P f - e^{-η*} E_Q e^f - η* + 1``, with
        ``Q`` their own shifted pairs (seeded by ``seed``, default the fit's). For a fixed witness this is a lower
        bound of the MI in expectation; on held-out pairs it carries no fitting bias."""
        self._check_fitted()
        x, y = self._pairs(x, y)
        xq, yq = shifted_pairs(x, y, self.negatives, self.seed if seed is None else seed)
        return self._value(self.witness(x, y), self.witness(xq, yq))

    def estimate_divergence(self, p: ArrayLike, q: ArrayLike) -> float:
        """The η-DV bound of ``KL(P || Q)`` of the fitted ``(w*, η*)`` on (held-out) samples of ``P`` and ``Q``."""
        self._check_fitted()
        p, q = self._sample_sets(p, q)
        return self._value(self.witness(p), self.witness(q))

    # ---------------------------------------------------------------------------------- inputs
    @staticmethod
    def _pairs(x: ArrayLike, y: ArrayLike) -> tuple[Tensor, Tensor]:
        xt, yt = _as_tensor(x, "x"), _as_tensor(y, "y")
        if xt.shape[0] != yt.shape[0]:
            raise ValueError(f"x and y: expected the same number of pairs, got {xt.shape[0]} and {yt.shape[0]}")
        if xt.shape[0] < 2:
            raise ValueError(f"x: need at least 2 pairs (marginal pairs come from the other pairs), got {xt.shape[0]}")
        return xt, yt

    @staticmethod
    def _sample_sets(p: ArrayLike, q: ArrayLike) -> tuple[Tensor, Tensor]:
        pt, qt = _as_tensor(p, "p"), _as_tensor(q, "q")
        if pt.shape[1:] != qt.shape[1:]:
            raise ValueError(
                f"q: samples of Q must have the shape of P's samples, {tuple(pt.shape[1:])}, got {tuple(qt.shape[1:])}"
            )
        return pt, qt


def fit_eta_dv_convex(
    x: ArrayLike,
    y: ArrayLike,
    features: Optional[FeatureMap] = None,
    lam: float = 1e-3,
    num_features: int = 512,
    bandwidth: Optional[float] = None,
    **options: int | float | bool,
) -> EtaDVConvex:
    """Fit η-MINE-convex on the pairs ``(x, y)`` and return the fitted estimator (its ``solution`` holds the
    numbers). Default features: :class:`~.features.RandomFourierFeatures` with ``num_features`` and ``bandwidth``
    (median heuristic when None) on ``z = [x; y]``. ``options``: the other arguments of :class:`EtaDVConvex`."""
    xt, yt = _as_tensor(x, "x"), _as_tensor(y, "y")
    if features is None:
        in_dim = xt.reshape(xt.shape[0], -1).shape[1] + yt.reshape(yt.shape[0], -1).shape[1]
        features = RandomFourierFeatures(in_dim, num_features, bandwidth)
    estimator = EtaDVConvex(features, lam=lam, **options)  # type: ignore[arg-type]
    estimator.fit(xt, yt)
    return estimator
