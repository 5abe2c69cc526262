import math

import pytest

from pdlightning.applications.mi_benchmark import confidence_interval, format_table
from pdlightning.applications.self_consistency import consistency_ratios, plot_ratios
from pdlightning.applications.sweep import bound_override, held_out_mi_estimate


def test_ratios_use_the_papers_denominators():
    estimates = {("baseline", 28): 10.0, ("baseline", 7): 4.0, ("independence", 7): 0.1,
                 ("data_processing", 7): 4.4, ("additivity", 7): 6.0}
    rows = {(r["setting"], r["rows"]): r for r in consistency_ratios(estimates, reference_rows=28)}
    assert rows[("baseline", 7)]["ratio"] == pytest.approx(0.4)
    assert rows[("independence", 7)]["ratio"] == pytest.approx(0.01)
    assert rows[("data_processing", 7)]["ratio"] == pytest.approx(1.1)
    assert rows[("additivity", 7)]["ratio"] == pytest.approx(1.5) and rows[("additivity", 7)]["ideal"] == 2.0
    assert math.isnan(consistency_ratios({("additivity", 7): 1.0}, 28)[0]["ratio"])  # no baseline


def test_plot_writes_a_png(tmp_path):
    rows = [dict(bound=b, setting=s, rows=t, ratio=t / 10) for b in ("A", "B")
            for s in ("baseline", "additivity") for t in (7, 14)]
    plot_ratios(rows, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_confidence_interval_and_table():
    mean, half = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert math.isnan(confidence_interval([1.0])[1])
    rows = [dict(loss="NWJ", form=f, seed=s, mi_clipped=v, accuracy=0.9) for f, v in (("original", 1.0), ("regularized", 2.0)) for s in (0, 1)]
    table = format_table(rows, "SLB", true_mi=math.log(10))
    assert "| NWJ | 1.000 ± 0.000 | 2.000 ± 0.000 | 0.900 ± 0.000 | 0.900 ± 0.000 |" in table
    assert "2.303" in table


def test_sweep_helpers():
    assert bound_override({"class_path": "NWJ"}) == '--model.init_args.bound={"class_path": "NWJ"}'
    with pytest.raises(ValueError, match="class_path"):
        bound_override({"init_args": {}})
    assert held_out_mi_estimate({"test/mi_estimate@2.3": 2.0}) == 2.0
    assert held_out_mi_estimate({"test/mi_estimate": 1.0}) == 1.0
    assert held_out_mi_estimate({}) is None
