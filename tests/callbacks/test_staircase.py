"""Staircase figure pieces: the InfoNCE ceiling and the panel."""

import math

import numpy as np
import pytest

from pdlightning.bounds import DV, InfoNCE, Regularized, SMILE
from pdlightning.callbacks.figures import staircase_figure


def test_infonce_ceiling_is_log_of_the_candidates():
    """The ceiling is bound metadata: InfoNCE declares log K (K = k + 1 candidates per row), Re-X
    delegates to the bound it wraps, others have none."""
    assert InfoNCE().value_ceiling(63) == pytest.approx(math.log(64))
    assert Regularized(InfoNCE()).value_ceiling(31) == pytest.approx(math.log(32))
    assert SMILE().value_ceiling(63) is None and DV().value_ceiling(63) is None


def test_panel_draws_raw_ewm_truth_and_ceiling():
    steps = np.arange(100)
    figure = staircase_figure(steps, np.sin(steps), np.repeat([2.0, 4.0], 50), span=10, batch_limit=math.log(64))
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert any(label.startswith("estimate") for label in labels) and "true MI" in labels
    assert any(label.startswith("log batch") for label in labels)
    assert figure.axes[0].get_ylim() == (-1.0, 8.0)
