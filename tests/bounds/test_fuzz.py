"""Fuzz every bound over random score matrices (hypothesis).

- moderate scores (|f| <= 30, where every exponential stays inside float32): finite loss, terms and
  gradients, for a score matrix and for explicit pairs;
- wild scores (up to 1e4 in magnitude, some -inf): a finite loss has NaN-free gradients, and any
  non-finite value is reported by the guard;
- InfoNCE never reports more than log K (K = n for a score matrix).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pdlightning.bounds import InfoNCE
from pdlightning.modules import NonFiniteBoundError
from pdlightning.modules.finite import non_finite_terms, raise_if_non_finite

from .zoo import BOUNDS, JOINT_ONLY_OBJECTIVE, MATRIX_ONLY

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def score_matrices(elements: st.SearchStrategy[float], max_n: int = 10) -> st.SearchStrategy[np.ndarray]:
    return st.integers(2, max_n).flatmap(lambda n: arrays(np.float32, (n, n), elements=elements))


MODERATE = st.floats(-30.0, 30.0, width=32)
WILD = st.one_of(st.floats(-1e4, 1e4, width=32), st.just(-math.inf), st.sampled_from([-80.0, 80.0, 0.0]))


def _loss_and_grad(name: str, scores: torch.Tensor):
    leaf = scores.clone().requires_grad_(True)
    bound = BOUNDS[name]()
    output = bound(leaf)
    grad = None
    if torch.isfinite(output.loss):
        output.loss.backward()
        grad = leaf.grad
    return bound, output, grad


def _float32_log(k: int) -> float:
    return torch.tensor(math.log(k), dtype=torch.float32).item()


@pytest.mark.parametrize("name", list(BOUNDS))
@FUZZ
@given(matrix=score_matrices(MODERATE))
def test_moderate_scores_give_finite_loss_terms_and_gradients(name: str, matrix: np.ndarray) -> None:
    bound, output, grad = _loss_and_grad(name, torch.from_numpy(matrix))
    assert non_finite_terms(output) == [], (name, matrix)
    assert grad is not None and torch.isfinite(grad).all(), (name, matrix)
    if isinstance(bound, InfoNCE):
        assert float(output.mi) <= _float32_log(matrix.shape[0])


@pytest.mark.parametrize("name", list(BOUNDS))
@FUZZ
@given(n=st.integers(1, 8), k=st.integers(1, 4), data=st.data())
def test_moderate_explicit_pairs_give_finite_loss_and_gradients(name: str, n: int, k: int, data: st.DataObject) -> None:
    joint = torch.from_numpy(data.draw(arrays(np.float32, (n,), elements=MODERATE))).requires_grad_(True)
    marginal = torch.from_numpy(data.draw(arrays(np.float32, (n, k), elements=MODERATE))).requires_grad_(True)
    bound = BOUNDS[name]()
    if name in MATRIX_ONLY and k != n - 1:
        with pytest.raises(ValueError, match="marginal scores"):
            bound(joint=joint, marginal=marginal)
        return
    output = bound(joint=joint, marginal=marginal)
    assert non_finite_terms(output) == []
    output.loss.backward()
    assert joint.grad is not None and torch.isfinite(joint.grad).all()
    if name in JOINT_ONLY_OBJECTIVE:
        assert marginal.grad is None or (marginal.grad == 0).all()
        return
    assert marginal.grad is not None and torch.isfinite(marginal.grad).all()
    if isinstance(bound, InfoNCE):
        assert float(output.mi) <= _float32_log(k + 1)


@pytest.mark.parametrize("name", list(BOUNDS))
@FUZZ
@given(matrix=score_matrices(WILD))
def test_wild_scores_are_finite_or_reported_never_nan_gradients(name: str, matrix: np.ndarray) -> None:
    bound, output, grad = _loss_and_grad(name, torch.from_numpy(matrix))
    if grad is not None:
        assert not torch.isnan(grad).any(), (name, matrix)
    bad = non_finite_terms(output)
    if bad:
        with pytest.raises(NonFiniteBoundError, match=type(bound).__name__):
            raise_if_non_finite(output, bound, "bound", 0)
    if isinstance(bound, InfoNCE) and "mi" not in bad:
        assert float(output.mi) <= _float32_log(matrix.shape[0])
