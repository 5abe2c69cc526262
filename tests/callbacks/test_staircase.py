"""Staircase figure pieces: the InfoNCE ceiling and the panel."""

import math

import numpy as np
import pytest

from pdlightning.bounds import DV, SMILE, InfoNCE, Regularized
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
    assert "estimate (raw)" in labels and "estimate (EWM 10)" in labels and "true MI" in labels
    assert any(label.startswith("ceiling log K = 4.16") for label in labels)
    assert figure.axes[0].get_ylim() == (-1.0, 8.0)


def test_span_scales_with_the_level_length_and_limits_show_real_excursions():
    from pdlightning.callbacks.figures import auto_span, level_lengths

    assert level_lengths(np.repeat([2.0, 4.0, 6.0], [300, 300, 200])) == [300, 300, 200]
    assert auto_span(np.repeat([2.0, 4.0], 4000)) == 200.0  # the papers' protocol
    assert auto_span(np.repeat([2.0, 4.0], 300)) == 15.0  # a short CPU budget: a twentieth of a level
    assert auto_span(np.repeat([2.0], 40)) == 5.0 and auto_span(np.repeat([2.0], 40), span=50) == 50.0
    steps = np.arange(400)
    estimates = np.full(400, 2.0)
    estimates[100:140] = -5.7  # a real dip (the drift staircase's), and one far outlier
    estimates[300] = -1e6
    figure = staircase_figure(steps, estimates, np.full(400, 2.0))
    low, high = figure.axes[0].get_ylim()
    assert low == -5.7 and high == 6.0
    assert "1 raw points off the panel" in figure.axes[0].get_title()


def test_identical_critic_output_curves_are_named_not_hidden():
    from pdlightning.callbacks.figures import drift_figure

    steps = np.arange(50)
    same = {"mean": np.linspace(0, 1, 50)}
    figure = drift_figure(
        steps,
        {"first_term": steps * 0.0, "second_term": steps * 0.0, "mi_estimate": steps * 0.0},
        {"joint": same, "marginal_in_support": dict(same), "marginal_off_support": {"mean": -steps}},
        span=5,
    )
    labels = [line.get_label() for line in figure.axes[2].get_lines()]
    assert "T on joint = T on marginal in support (identical)" in labels and "T on marginal off support" in labels
    assert [ax.get_ylabel() for ax in figure.axes] == ["term value (nats)", "MI (nats)", "critic output T"]
