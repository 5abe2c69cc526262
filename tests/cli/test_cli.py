"""End to end through the `pdlightning` LightningCLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from pdlightning.cli.main import build_cli
from pdlightning.modules.optim import MemberSGD

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GAUSSIAN = os.path.join(REPO, "configs", "mi", "gaussian.yaml")
BOUNDS = os.path.join(REPO, "configs", "mi", "bounds")


def quiet(tmp_path, steps: int) -> list[str]:
    return [
        f"--trainer.default_root_dir={tmp_path}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        f"--trainer.max_steps={steps}",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("fragment", ["smile_tau5.yaml", "pd_classifier.yaml"])
def test_short_fit_at_two_nats_converges_within_0_3(fragment, tmp_path):
    steps = 1500
    cli = build_cli(
        [
            "fit",
            "-c",
            GAUSSIAN,
            "-c",
            os.path.join(BOUNDS, fragment),
            *quiet(tmp_path, steps),
            "--data.init_args.mi_schedule=[2.0]",
            f"--data.init_args.steps_per_level={steps}",
            "--data.init_args.eval_batch_size=1024",
            "--data.init_args.eval_batches_per_level=4",
            "--model.init_args.optimizer.init_args.lr=1e-3",
        ]
    )
    assert cli.trainer.global_step == steps
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    estimate = cli.trainer.callback_metrics["test/mi_estimate@2"].item()
    assert abs(estimate - 2.0) < 0.3, estimate


@pytest.mark.slow
def test_every_bound_fragment_composes_and_trains_a_few_steps(tmp_path):
    for fragment in sorted(os.listdir(BOUNDS)):
        cli = build_cli(
            [
                "fit",
                "-c",
                GAUSSIAN,
                "-c",
                os.path.join(BOUNDS, fragment),
                *quiet(tmp_path, 3),
                "--model.init_args.critic.init_args.hidden_dims=[16]",
                "--trainer.limit_val_batches=0",
            ]
        )
        assert cli.trainer.global_step == 3, fragment
        logged = cli.trainer.logged_metrics
        assert {"mi/estimate", "mi/true", "bound/first_term", "bound/second_term", "train/loss"} <= set(logged)
        assert torch.isfinite(logged["mi/estimate"]), fragment


def test_print_config_round_trips(tmp_path, capsys):
    args = ["-c", GAUSSIAN, "-c", os.path.join(BOUNDS, "renwj.yaml")]
    with pytest.raises(SystemExit):
        build_cli(["fit", *args, "--print_config"])
    first = capsys.readouterr().out
    printed = tmp_path / "printed.yaml"
    printed.write_text(first)
    with pytest.raises(SystemExit):
        build_cli(["fit", "-c", str(printed), "--print_config"])
    second = capsys.readouterr().out
    assert yaml.safe_load(first) == yaml.safe_load(second)
    bound = yaml.safe_load(first)["model"]["init_args"]["bound"]
    assert bound["class_path"] == "pdlightning.bounds.Regularized"
    assert bound["init_args"]["bound"]["class_path"] == "pdlightning.bounds.NWJ"


class UserPairs(L.LightningDataModule):
    """A user's own datamodule: x ~ N(0, I_4), y = x + noise, true MI known."""

    def __init__(self, noise: float = 0.5, batch_size: int = 32) -> None:
        super().__init__()
        self.noise, self.batch_size = noise, batch_size

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(320, 4, generator=generator)
        y = x + self.noise * torch.randn(320, 4, generator=generator)
        mi = 2.0 * torch.log(torch.tensor(1 + 1 / self.noise**2))  # 4 dims x 1/2 log(1 + SNR)
        data = [
            {"x": x[i : i + self.batch_size], "y": y[i : i + self.batch_size], "mi": mi}
            for i in range(0, 320, self.batch_size)
        ]
        return DataLoader(data, batch_size=None)


def test_a_user_datamodule_plugs_in_by_class_path(tmp_path):
    cli = build_cli(
        [
            "fit",
            "-c",
            GAUSSIAN,
            *quiet(tmp_path, 10),
            "--trainer.limit_val_batches=0",
            "--data=tests.cli.test_cli.UserPairs",
            "--data.init_args.noise=0.3",
            "--data.init_args.batch_size=32",
            "--model.init_args.critic.init_args.x_dim=4",
            "--model.init_args.critic.init_args.y_dim=4",
        ]
    )
    assert isinstance(cli.datamodule, UserPairs) and cli.datamodule.noise == 0.3
    assert cli.trainer.global_step == 10


def test_critic_dims_that_do_not_match_the_data_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="x_dim"):
        build_cli(["fit", "-c", GAUSSIAN, *quiet(tmp_path, 2), "--model.init_args.critic.init_args.x_dim=19"])


def test_unknown_bound_name_is_reported(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", "-c", GAUSSIAN, "--model.init_args.bound=pdlightning.bounds.NotABound"])
    assert exit_info.value.code != 0
    assert "NotABound" in capsys.readouterr().err


@pytest.mark.parametrize("schedule", ["[]", "[2.0, -1.0]", "[.nan]"])
def test_bad_schedule_is_reported_with_the_parameter(schedule, tmp_path, capsys):
    with pytest.raises((SystemExit, ValueError)) as info:
        build_cli(["fit", "-c", GAUSSIAN, *quiet(tmp_path, 2), f"--data.init_args.mi_schedule={schedule}"])
    message = str(info.value) + capsys.readouterr().err
    assert "mi_schedule" in message


@pytest.mark.slow
def test_console_script_runs_fit_and_test(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "pdlightning")
    common = [
        "-c",
        GAUSSIAN,
        *quiet(tmp_path, 5),
        "--data.init_args.steps_per_level=5",
        "--data.init_args.mi_schedule=[1.0]",
        "--model.init_args.critic.init_args.hidden_dims=[16]",
    ]
    fit = subprocess.run([script, "fit", *common], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert fit.returncode == 0, fit.stderr[-2000:]
    test = subprocess.run(
        [script, "test", *common, "--ckpt_path=last"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert test.returncode == 0, test.stderr[-2000:]
    assert "true MI" in test.stdout + test.stderr and "estimate" in test.stdout + test.stderr


def test_optimizer_and_scheduler_come_from_yaml(tmp_path):
    config = tmp_path / "optim.yaml"
    config.write_text(
        "model:\n  init_args:\n"
        "    optimizer:\n      class_path: torch.optim.SGD\n      init_args: {lr: 0.1, momentum: 0.5}\n"
        "    scheduler:\n      class_path: torch.optim.lr_scheduler.StepLR\n      init_args: {step_size: 2, gamma: 0.5}\n"
    )
    cli = build_cli(
        [
            "fit",
            "-c",
            GAUSSIAN,
            "-c",
            str(config),
            *quiet(tmp_path, 4),
            "--trainer.limit_val_batches=0",
            "--model.init_args.critic.init_args.hidden_dims=[8]",
        ]
    )
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, MemberSGD) and optimizer.defaults["momentum"] == 0.5  # the config's SGD, member-aware
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)  # stepped every optimiser step


def test_predict_writes_the_pmi_of_each_held_out_pair(tmp_path):
    common = [
        "-c",
        GAUSSIAN,
        *quiet(tmp_path, 4),
        "--data.init_args.steps_per_level=4",
        "--data.init_args.mi_schedule=[1.0]",
        "--data.init_args.eval_batches_per_level=2",
        "--model.init_args.critic.init_args.hidden_dims=[8]",
    ]
    build_cli(["fit", *common])
    output = tmp_path / "pmi.csv"
    build_cli(
        [
            "predict",
            *common,
            "--ckpt_path=last",
            "--trainer.callbacks+=pdlightning.callbacks.PMIWriter",
            f"--trainer.callbacks.output_path={output}",
        ]
    )
    rows = output.read_text().splitlines()
    assert rows[0] == "row,mi,pmi" and len(rows) == 1 + 2 * 64  # each pair with its true-MI level
    assert all(float(r.split(",")[1]) == 1.0 and math.isfinite(float(r.split(",")[2])) for r in rows[1:])


def test_a_diverged_run_and_a_misconfigured_trainer_print_their_message_without_a_stack(monkeypatch):
    """Fault cases 21/22 and 85/86 (docs/results/fault_cases.md): the message says it all."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from pdlightning.cli import main
    from pdlightning.cli.main import input_error_message
    from pdlightning.modules.finite import NonFiniteBoundError

    monkeypatch.setitem(main._PHASE, "running", False)  # before the first batch (an earlier fit may have set it)

    diverged = NonFiniteBoundError("the run diverged: 20 optimiser steps in a row were skipped")
    assert input_error_message(diverged) == "the run diverged: 20 optimiser steps in a row were skipped"
    wrapped = RuntimeError("while training")
    wrapped.__cause__ = diverged
    assert input_error_message(wrapped) == str(diverged)
    trainer = MisconfigurationException("`max_steps` must be a non-negative integer or -1. You passed in -5.")
    assert input_error_message(trainer) == str(trainer)
    assert input_error_message(RuntimeError("a bug")) is None
