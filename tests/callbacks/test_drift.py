"""DriftMonitor's per-step scalars on synthetic scores, and the drift figure."""

import numpy as np
import pytest
import torch

from pdlightning.bounds import DV, NWJ, PairScores
from pdlightning.callbacks import DriftMonitor
from pdlightning.callbacks.drift import pair_groups
from pdlightning.callbacks.figures import drift_figure

from .records import single_record


def _explicit_step(joint, marginal, flag, bound=DV(), training=None):
    out = bound(joint=torch.tensor(joint), marginal=torch.tensor(marginal))
    batch = {"x_marginal": torch.zeros(len(joint), 2), "in_joint_support": torch.tensor(flag)}
    return single_record(out, batch, bound, training)


def test_terms_and_output_statistics_match_their_definitions():
    joint = [1.0, 2.0, 3.0, 4.0, 5.0]
    marginal = [-1.0, 4.0, -3.0, 6.0, -5.0]
    flag = [False, True, False, True, False]
    (metrics,) = DriftMonitor(quantiles=(0.25, 0.5)).step_metrics(_explicit_step(joint, marginal, flag))
    assert metrics["first_term"] == pytest.approx(3.0)
    assert metrics["second_term"] == pytest.approx(np.log(np.mean(np.exp(marginal))), rel=1e-6)
    assert metrics["mi_estimate"] == pytest.approx(metrics["first_term"] - metrics["second_term"], rel=1e-6)
    assert metrics["T_joint_mean"] == pytest.approx(3.0) and metrics["T_joint_q25"] == pytest.approx(2.0)
    assert metrics["T_marginal_q50"] == pytest.approx(-1.0)
    assert metrics["T_marginal_in_support_mean"] == pytest.approx(5.0)
    assert metrics["T_marginal_off_support_mean"] == pytest.approx(-3.0)
    assert metrics["T_marginal_off_support_q50"] == pytest.approx(-3.0)
    assert "train_first_term" not in metrics and "true_mi" not in metrics


def test_empty_group_is_skipped_and_separate_training_bound_is_logged():
    training = NWJ()(joint=torch.tensor([1.0, 2.0]), marginal=torch.tensor([0.0, 1.0]))
    step = _explicit_step([1.0, 2.0], [0.0, 1.0], [False, False], training=training)
    (metrics,) = DriftMonitor().step_metrics(step)
    assert "T_marginal_in_support_mean" not in metrics and "T_marginal_off_support_mean" in metrics
    assert metrics["train_second_term"] == pytest.approx(np.mean(np.exp([0.0, 1.0]) / np.e), rel=1e-6)


def test_in_batch_negatives_have_no_support_split():
    pairs = PairScores.from_matrix(torch.arange(16.0).reshape(4, 4))
    groups = pair_groups(
        pairs.joint.unsqueeze(0), pairs.marginal.unsqueeze(0), {"in_joint_support": torch.ones(4, dtype=torch.bool)}
    )
    assert set(groups) == {"joint", "marginal"} and groups["marginal"].numel() == 12


def test_record_pads_tags_that_appear_late_with_nan():
    monitor = DriftMonitor()
    monitor._record(0, {"a": 1.0})
    monitor._record(1, {"a": 2.0, "b": 5.0})
    monitor._record(2, {"a": 3.0})
    steps, series = monitor.series()
    np.testing.assert_array_equal(steps, [0, 1, 2])
    np.testing.assert_array_equal(series["a"], [1, 2, 3])
    np.testing.assert_array_equal(np.isnan(series["b"]), [True, False, True])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"quantiles": (0.0,)}, "quantiles"),
        ({"quantiles": (0.101, 0.102)}, "quantiles"),
        ({"histogram_every_n_steps": -1}, "histogram_every_n_steps"),
        ({"ewm_span": 0}, "ewm_span"),
    ],
)
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DriftMonitor(**kwargs)


def test_drift_figure_has_the_three_panels():
    steps = np.arange(50)
    series = {"first_term": steps * 0.1, "second_term": steps * 0.1 - 2.0, "mi_estimate": np.full(50, 2.0)}
    outputs = {
        "joint": {"mean": steps * 0.1, "low": steps * 0.1 - 1, "high": steps * 0.1 + 1},
        "marginal_off_support": {"mean": -steps * 0.1},
    }
    figure = drift_figure(steps, series, outputs, span=10, c_star=0.0, true_mi=np.full(50, 2.0))
    assert len(figure.axes) == 3
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert "C* = 0" in labels


def test_history_survives_a_checkpoint_round_trip():
    monitor = DriftMonitor(quantiles=())
    monitor._record(0, {"a": 1.0})
    monitor._record(1, {"a": 2.0, "b": 5.0})
    restored = DriftMonitor()
    restored.load_state_dict(monitor.state_dict())
    steps, series = restored.series()
    np.testing.assert_array_equal(steps, [0, 1])
    np.testing.assert_array_equal(series["a"], [1.0, 2.0])
