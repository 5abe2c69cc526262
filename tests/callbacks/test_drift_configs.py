"""Each one-hot drift config runs through the `pdlightning` CLI on a tiny budget and writes its
diagnostics."""

from __future__ import annotations

import math
import os

import pytest

from pdlightning.callbacks import BiasVarianceMSE, DriftMonitor
from pdlightning.cli.main import build_cli
from pdlightning.data import OneHotDataModule

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DRIFT = os.path.join(REPO, "configs", "drift")


@pytest.mark.parametrize("estimator, batch_size", [("mine", 100), ("dv", 32), ("nwj", 32), ("remine", 32), ("renwj", 100)])
def test_drift_config_fits_and_writes_the_figure(estimator, batch_size, tmp_path):
    steps = 4
    cli = build_cli([
        "fit", "-c", os.path.join(DRIFT, f"onehot_{estimator}.yaml"),
        f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.enable_progress_bar=false",
        f"--trainer.max_steps={steps}", f"--data.init_args.steps={steps}",
        f"--data.init_args.batch_size={batch_size}",
        "--model.init_args.critic.init_args.hidden_dims=[16, 16]",
    ])
    assert cli.trainer.global_step == steps
    assert isinstance(cli.datamodule, OneHotDataModule) and cli.datamodule.batch_size == batch_size
    optimizer = cli.trainer.optimizers[0]
    assert type(optimizer).__name__ == "SGD" and optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    drift = next(cb for cb in cli.trainer.callbacks if isinstance(cb, DriftMonitor))
    assert len(drift.steps) == steps
    bias = next(cb for cb in cli.trainer.callbacks if isinstance(cb, BiasVarianceMSE))
    assert bias.statistics()[0].true_mi == pytest.approx(math.log(16), rel=1e-6)
    run_dir = cli.trainer.logger.log_dir
    assert os.path.exists(os.path.join(run_dir, "drift.png"))
    assert os.path.exists(os.path.join(run_dir, "bias_variance.csv"))


def test_drift_configs_follow_the_paper_protocol():
    import yaml

    for estimator in ("mine", "dv", "nwj", "remine", "renwj"):
        with open(os.path.join(DRIFT, f"onehot_{estimator}.yaml")) as f:
            config = yaml.safe_load(f)
        data = config["data"]["init_args"]
        assert data == {"num_classes": 16, "batch_size": 100, "steps": 3000, "seed": 0}
        critic = config["model"]["init_args"]["critic"]["init_args"]
        assert critic["x_dim"] == critic["y_dim"] == data["num_classes"]
        assert config["model"]["init_args"]["optimizer"] == {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}}
    with open(os.path.join(DRIFT, "trainer.yaml")) as f:
        assert yaml.safe_load(f)["max_steps"] == 3000
