"""The one-hot drift task is one base config plus the estimator fragments of configs/mi/bounds/; each
composition runs through the `pdlightning` CLI on a tiny budget, writes its diagnostics into its own
run directory, and the drift summary tells the estimators apart."""

from __future__ import annotations

import importlib.util
import math
import os

import pytest
import yaml

from pdlightning.callbacks import BiasVarianceMSE, DriftMonitor
from pdlightning.cli.configs import fragment_key
from pdlightning.cli.main import build_cli
from pdlightning.data import OneHotDataModule

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIFT = os.path.join(REPO, "configs", "drift")
BOUNDS = os.path.join(REPO, "configs", "mi", "bounds")
ESTIMATORS = ("mine", "dv", "nwj", "remine", "renwj")


def drift_fit(tmp_path, estimator: str, batch_size: int, steps: int = 4):
    return build_cli(
        [
            "fit",
            "-c",
            os.path.join(DRIFT, "onehot.yaml"),
            "-c",
            os.path.join(BOUNDS, f"{estimator}.yaml"),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            f"--trainer.max_steps={steps}",
            f"--data.init_args.steps={steps}",
            f"--data.init_args.batch_size={batch_size}",
            "--model.init_args.critic.init_args.hidden_dims=[16, 16]",
        ]
    )


@pytest.mark.parametrize(
    "estimator, batch_size", [("mine", 100), ("dv", 32), ("nwj", 32), ("remine", 32), ("renwj", 100)]
)
def test_drift_config_fits_and_writes_the_figure(estimator, batch_size, tmp_path):
    steps = 4
    cli = drift_fit(tmp_path, estimator, batch_size, steps)
    assert cli.trainer.global_step == steps
    assert isinstance(cli.datamodule, OneHotDataModule) and cli.datamodule.batch_size == batch_size
    optimizer = cli.trainer.optimizers[0]
    # the config's SGD, as its member-aware version (pdlightning.modules.optim.member_optimizer)
    assert type(optimizer).__name__ == "MemberSGD" and optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    drift = next(cb for cb in cli.trainer.callbacks if isinstance(cb, DriftMonitor))
    assert len(drift.steps) == steps
    bias = next(cb for cb in cli.trainer.callbacks if isinstance(cb, BiasVarianceMSE))
    assert bias.statistics()[0].true_mi == pytest.approx(math.log(16), rel=1e-6)
    run_dir = cli.trainer.logger.log_dir
    assert run_dir == os.path.join(str(tmp_path), "drift", estimator, "version_0")  # its own run name
    assert os.path.exists(os.path.join(run_dir, "drift.png"))
    assert os.path.exists(os.path.join(run_dir, "bias_variance.csv"))


def test_drift_configs_follow_the_paper_protocol():
    with open(os.path.join(DRIFT, "onehot.yaml")) as f:
        config = yaml.safe_load(f)
    data = config["data"]["init_args"]
    assert data == {"num_classes": 16, "batch_size": 100, "steps": 3000, "seed": 0}
    critic = config["model"]["init_args"]["critic"]["init_args"]
    assert critic["x_dim"] == critic["y_dim"] == data["num_classes"]
    assert config["model"]["init_args"]["optimizer"] == {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}
    with open(os.path.join(DRIFT, "trainer.yaml")) as f:
        assert yaml.safe_load(f)["max_steps"] == 3000
    # Only the bound differs between the estimators, by construction: each is a fragment holding the bound alone.
    assert [fragment_key(os.path.join(BOUNDS, f"{e}.yaml")) for e in ESTIMATORS] == list(ESTIMATORS)
    assert sorted(os.listdir(DRIFT)) == ["onehot.yaml", "trainer.yaml"]


def test_the_old_drift_config_names_compose_the_same_run_with_a_warning(tmp_path, capsys):
    args = ["--print_config"]
    with pytest.raises(SystemExit):
        build_cli(["fit", "-c", os.path.join(DRIFT, "onehot.yaml"), "-c", os.path.join(BOUNDS, "renwj.yaml"), *args])
    composed = capsys.readouterr().out
    moved = r"onehot_renwj.yaml moved: use -c .*drift/onehot.yaml -c .*mi/bounds/renwj.yaml"
    with pytest.warns(FutureWarning, match=moved):
        with pytest.raises(SystemExit):
            build_cli(["fit", "-c", os.path.join(DRIFT, "onehot_renwj.yaml"), *args])
    assert capsys.readouterr().out == composed


@pytest.mark.slow
def test_drift_summary_tells_the_estimators_apart(tmp_path):
    spec = importlib.util.spec_from_file_location("drift_summary", os.path.join(REPO, "benchmarks", "drift_summary.py"))
    drift_summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drift_summary)
    run_dirs = [drift_fit(tmp_path, estimator, 32).trainer.logger.log_dir for estimator in ("dv", "nwj")]
    table = drift_summary.summarise(run_dirs, [(0, 4)]).splitlines()
    assert table[2].startswith("| dv/version_0 | 4 |") and table[3].startswith("| nwj/version_0 | 4 |")
