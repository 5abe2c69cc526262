import math

import pytest

from pdlightning.applications.mi_benchmark import confidence_interval, format_table
from pdlightning.applications.self_consistency import consistency_ratios, plot_ratios
from pdlightning.applications.sweep import bound_override, held_out_mi_estimate


def test_ratios_use_the_papers_denominators():
    estimates = {
        ("baseline", 28): 10.0,
        ("baseline", 7): 4.0,
        ("independence", 7): 0.1,
        ("data_processing", 7): 4.4,
        ("additivity", 7): 6.0,
    }
    rows = {(r["setting"], r["rows"]): r for r in consistency_ratios(estimates, reference_rows=28)}
    assert rows[("baseline", 7)]["ratio"] == pytest.approx(0.4)
    assert rows[("independence", 7)]["ratio"] == pytest.approx(0.01)
    assert rows[("data_processing", 7)]["ratio"] == pytest.approx(1.1)
    assert rows[("additivity", 7)]["ratio"] == pytest.approx(1.5) and rows[("additivity", 7)]["ideal"] == 2.0
    assert math.isnan(consistency_ratios({("additivity", 7): 1.0}, 28)[0]["ratio"])  # no baseline


def test_plot_writes_a_png(tmp_path):
    rows = [
        dict(bound=b, setting=s, rows=t, ratio=t / 10)
        for b in ("A", "B")
        for s in ("baseline", "additivity")
        for t in (7, 14)
    ]
    plot_ratios(rows, str(tmp_path / "r.png"))
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_confidence_interval_and_table():
    mean, half = confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert math.isnan(confidence_interval([1.0])[1])
    rows = [
        dict(loss="NWJ", form=f, seed=s, mi_clipped=v, accuracy=0.9)
        for f, v in (("original", 1.0), ("regularized", 2.0))
        for s in (0, 1)
    ]
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


@pytest.mark.parametrize(
    "source, setting, channels",
    [
        ("cifar10", "data_processing", 6),
        ("cifar100", "baseline", 3),
        ("mnist", "additivity", 2),
        ("mnist", "independence", 1),
    ],
)
def test_self_consistency_channels_come_from_the_datamodule(source, setting, channels):
    """The critic's input channels are the datamodule's, set on every in_channels of the model's
    config: the sweep runs on the CIFAR sources too (no data is read to know them)."""
    from pdlightning.applications.self_consistency import channel_overrides

    overrides = channel_overrides(
        ["configs/consistency/mnist.yaml"], [f"--data.init_args.source={source}", f"--data.init_args.setting={setting}"]
    )
    assert overrides == [
        f"--model.init_args.critic.init_args.{e}.init_args.in_channels={channels}" for e in ("x_encoder", "y_encoder")
    ]


def test_the_table_runner_resumes_and_its_console_script_parses(tmp_path, capsys):
    import json
    import os

    from pdlightning.applications.mi_benchmark import main, run_mi_benchmark

    losses = {"NWJ": {"original": {"class_path": "pdlightning.bounds.NWJ"}}}
    overrides = [
        "--trainer.max_steps=2",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--data.init_args.source=digits",
        "--data.init_args.num_test=null",
        "--model.init_args.critic.init_args.x_encoder.init_args.image_size=8",
    ]
    args = dict(
        base=["configs/slb/mnist.yaml"], losses=losses, seeds=[0, 1], overrides=overrides, output_dir=str(tmp_path)
    )
    first = run_mi_benchmark(**args, max_runs=1)
    assert [(r["loss"], r["seed"]) for r in first] == [("NWJ", 0)]
    record = tmp_path / "runs" / "NWJ-original-seed0" / "run.json"
    stamp = record.stat().st_mtime_ns
    second = run_mi_benchmark(**args)
    assert [(r["loss"], r["seed"]) for r in second] == [("NWJ", 0), ("NWJ", 1)]
    assert record.stat().st_mtime_ns == stamp, "a finished run was redone"
    saved = json.loads(record.read_text())
    assert saved["spec"] == {"loss": "NWJ", "form": "original", "seed": 0} and saved["status"] == "ok"
    assert saved["command"].startswith("pdlightning fit -c ") and "test/accuracy" in saved["metrics"]
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "pdlightning-mi-benchmark" in capsys.readouterr().out and os.path.isfile(tmp_path / "table.md")
