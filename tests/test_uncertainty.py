"""Intervals of held-out estimates and the results file (issue: numbers a researcher can cite)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pdlightning.results import EstimateResult, read_results, write_results
from pdlightning.uncertainty import mean_interval


def test_bootstrap_interval_has_the_analytic_width():
    """Units with known standard deviation sigma: the standard error is sigma / sqrt(n) and the 95%
    interval spans 2 * 1.96 standard errors (to the bootstrap's own sampling error)."""
    sigma, n = 0.7, 1600
    values = np.random.default_rng(1).normal(3.0, sigma, n)
    interval = mean_interval(values, "pair")
    analytic = sigma / math.sqrt(n)
    assert interval.stderr == pytest.approx(analytic, rel=0.1)
    assert interval.high - interval.low == pytest.approx(2 * 1.959964 * analytic, rel=0.1)
    assert interval.low < interval.estimate < interval.high and interval.method.startswith("percentile bootstrap")


def test_bootstrap_interval_covers_the_mean_at_the_nominal_rate():
    """Over 200 samples of 100 units the 95% interval contains the true mean 90-99% of the time."""
    rng = np.random.default_rng(2)
    covered = 0
    for seed in range(200):
        values = rng.exponential(1.0, 100)
        interval = mean_interval(values, "batch", resamples=500, seed=seed)
        covered += interval.low <= 1.0 <= interval.high
    assert 0.90 <= covered / 200 <= 0.99


def test_few_units_use_student_t_and_one_unit_gives_no_interval():
    three = mean_interval([1.0, 2.0, 3.0], "seed")
    assert three.method == "Student t, 2 dof" and three.stderr == pytest.approx(1 / math.sqrt(3))
    assert three.high - three.estimate == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    one = mean_interval([2.5], "seed")
    assert one.n == 1 and math.isnan(one.stderr) and math.isnan(one.low) and "n = 1" in one.describe()
    assert one.as_dict()["stderr"] is None


@pytest.mark.parametrize(
    "values, match", [([], "at least one"), ([1.0, float("nan")], "1 of 2 batch estimates"), ([1.0, 2.0], None)]
)
def test_bad_values_are_named(values, match):
    if match is None:
        mean_interval(values, "batch", confidence=0.9)
        with pytest.raises(ValueError, match="confidence"):
            mean_interval(values, "batch", confidence=1.5)
        return
    with pytest.raises(ValueError, match=match):
        mean_interval(values, "batch")


def test_results_file_round_trips(tmp_path):
    rows = [
        EstimateResult(
            mean_interval([1.9, 2.1, 2.0, 2.2], "batch"),
            "SMILE(τ=5)",
            member="smile",
            true_mi=2.0,
            weights="end of level 2",
        ),
        EstimateResult(mean_interval([3.5], "seed"), "NWJ", group="nwj", true_mi=4.0, weights="across seeds"),
    ]
    path = write_results(tmp_path / "run", rows, "test", 400, {"bound": {"class_path": "pdlightning.bounds.SMILE"}})
    document = read_results(tmp_path / "run")
    assert document == json.loads(path.read_text())
    first, second = document["results"]
    assert first["member"] == "smile" and first["estimate"] == pytest.approx(2.05) and first["n"] == 4
    assert first["low"] < 2.05 < first["high"] and first["unit"] == "batch" and first["label"] == "SMILE(τ=5)"
    assert second["n"] == 1 and second["stderr"] is None and second["low"] is None
    assert document["steps"] == 400 and document["config"]["bound"]["class_path"].endswith("SMILE")
    assert {"python", "torch", "lightning", "pdlightning"} <= set(document["versions"])
    with pytest.raises(FileNotFoundError, match="no results.json"):
        read_results(tmp_path / "elsewhere")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a pdlightning results file"):
        read_results(tmp_path / "bad.json")


def test_the_seeds_and_held_out_interval_adds_the_shared_held_out_error_to_the_seeds_spread():
    from pdlightning.uncertainty import Interval, seeds_and_held_out_interval

    def held_out(estimate: float, stderr: float, n: int = 50) -> Interval:
        return Interval(estimate, stderr, estimate - 2 * stderr, estimate + 2 * stderr, n, "pair", "t")

    # seeds that agree exactly: the held-out error alone (not divided by the number of seeds), about t_49 * 0.1
    same = seeds_and_held_out_interval([1.0, 1.0, 1.0], [held_out(1.0, 0.1)] * 3)
    assert same.stderr == pytest.approx(0.1) and same.high - same.estimate == pytest.approx(2.01 * 0.1, rel=0.01)
    # a held-out sample without error: the Student-t interval over the seeds
    values = [0.8, 1.0, 1.3]
    spread = seeds_and_held_out_interval(values, [held_out(v, 0.0) for v in values])
    t_over_seeds = mean_interval(values, "seed")
    assert spread.low == pytest.approx(t_over_seeds.low) and spread.high == pytest.approx(t_over_seeds.high)
    # both: a larger standard error than either alone (the degrees of freedom grow too: Welch-Satterthwaite)
    both = seeds_and_held_out_interval(values, [held_out(v, 0.1) for v in values])
    assert both.stderr == pytest.approx(math.sqrt(np.var(values, ddof=1) / 3 + 0.01))
    assert both.stderr > max(spread.stderr, same.stderr) and "4 dof" in both.method
    assert both.high - both.low > same.high - same.low
    # one held-out batch per seed: no held-out stderr; the interval is the seeds' and says the rest is unknown
    single = seeds_and_held_out_interval(values, [held_out(v, float("nan"), n=1) for v in values])
    assert single.stderr == pytest.approx(t_over_seeds.stderr) and "held-out error is unknown" in single.method
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seeds_and_held_out_interval([1.0], [held_out(1.0, 0.1)])
