"""The report's tables are a function of the run files alone: rendering a checked-in sweep (a real
two-seed ensemble run, trimmed to the files the report reads) gives the checked-in ``report.md``.

The committed ``docs/results`` tables are rendered the same way from their sweeps (commands in each
``docs/results/*/README.md``); this test keeps the renderer honest without training. Regenerate the
fixture after an intended change of the tables with::

    pdlightning-report --out /tmp/fx --steps-per-level 20 --levels 2 4 --tasks gaussian \\
        --critics separable --seeds 2 --threads 1 --estimators infonce pd_classifier
    # copy run.json, estimates.csv and tb/results.json of the run and report.md into tests/fixtures/report_sweep
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pdlightning.report.main import render

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "report_sweep"


def test_the_checked_in_sweep_renders_to_the_checked_in_report(tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(FIXTURE, out)
    markdown = render(out, 0.0, lambda line: None)
    assert markdown == (FIXTURE / "report.md").read_text()
    assert (out / "results.csv").is_file() and (out / "staircase_grid.png").stat().st_size > 0


def test_the_rendered_tables_carry_seeds_and_uncertainty():
    markdown = (FIXTURE / "report.md").read_text()
    assert "each cell is the mean over the 2 seeds ± its standard error across seeds" in markdown
    # every cell is mean ± standard error; † marks levels shorter than the estimator's budget rule
    assert re.search(r"\| CPC \(InfoNCE\) † \| \d+\.\d\d ± \d+\.\d\d \| \d+\.\d\d ± \d+\.\d\d \|", markdown)
    assert "(n = 2 seeds)" in markdown  # the held-out section: count of units, not an invented interval
