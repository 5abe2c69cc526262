"""EWM against its definition (the adjusted weights of pandas' ``ewm(span).mean()``)."""

import numpy as np
import pytest

from pdlightning.callbacks import ewm


def test_matches_the_weighted_mean_definition():
    rng = np.random.default_rng(0)
    x, span = rng.normal(size=300), 20.0
    alpha = 2 / (span + 1)
    expected = [
        np.sum((1 - alpha) ** np.arange(t, -1, -1) * x[: t + 1]) / np.sum((1 - alpha) ** np.arange(t + 1))
        for t in range(len(x))
    ]
    np.testing.assert_allclose(ewm(x, span), expected, rtol=1e-10)


def test_constant_series_and_step_response():
    np.testing.assert_allclose(ewm(np.full(50, 3.0), 200), 3.0)
    y = ewm(np.r_[np.zeros(1000), np.ones(1000)], span=200)
    assert y[999] == 0.0 and 0.6 < y[1199] < 0.9 and y[-1] > 0.99  # lags the step by ~span


def test_non_finite_values_are_skipped():
    y = ewm([1.0, np.nan, 1.0, np.inf], span=5)
    np.testing.assert_allclose(y, 1.0)


def test_bad_span_is_named():
    with pytest.raises(ValueError, match="span"):
        ewm([1.0], span=0.5)
