"""The task suite through the `pdlightning` CLI: one estimator config on tasks of any dimensions (the critic's
x_dim / y_dim come from the task), fit and test with the pointwise PMI metrics in TensorBoard (read with
TensorBoard's own EventAccumulator), and bad input reported by parameter name."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pdlightning.cli.main import build_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPU = os.path.join(REPO, "configs", "suite", "cpu.yaml")
GPU = os.path.join(REPO, "configs", "suite", "gpu.yaml")
CLASSIFIER = os.path.join(REPO, "configs", "mi", "bounds", "pd_classifier.yaml")


def tiny(tmp_path, steps: int = 8) -> list[str]:
    """The CPU suite config on a tiny budget: 600 pairs, batch 64, validation every 4 steps."""
    return [
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        f"--trainer.max_steps={steps}",
        f"--data.init_args.steps={steps}",
        "--trainer.val_check_interval=4",
        "--data.init_args.n_samples=600",
        "--data.init_args.batch_size=64",
        "--data.init_args.eval_batch_size=100",
        "--checkpoint.every_n_train_steps=4",
    ]


def tensorboard_tags(root) -> dict[str, set[str]]:
    """Every scalar / histogram / image tag in the event files under ``root`` (any run directory)."""
    tags: dict[str, set[str]] = {"scalars": set(), "histograms": set(), "images": set()}
    directories = {
        os.path.dirname(p) for p in glob.glob(os.path.join(str(root), "**", "events.out.tfevents.*"), recursive=True)
    }
    for directory in directories:
        events = EventAccumulator(directory, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
        events.Reload()
        for kind in tags:
            tags[kind] |= set(events.Tags()[kind])
    return tags


TASKS = [
    ("1v1-additive-0.1", (1, 1)),
    ("swissroll_x-normal_cdf-1v1-normal-0.75", (2, 1)),
    ("multinormal-sparse-5-5-2-2.0", (5, 5)),
]
ESTIMATORS = {"smile": [], "classifier": ["-c", CLASSIFIER]}  # the CPU config's SMILE, or the PD classifier


@pytest.mark.slow
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize(("task", "dims"), TASKS)
def test_fit_and_test_on_a_task_log_the_pmi_metrics_to_tensorboard(tmp_path, task, dims, estimator):
    common = ["-c", CPU, *ESTIMATORS[estimator], f"--data.init_args.task={task}", *tiny(tmp_path)]
    fit = build_cli(["fit", *common])
    assert (fit.model.critic.x_dim, fit.model.critic.y_dim) == dims  # from the task, not the config
    assert fit.trainer.global_step == 8
    test = build_cli(["test", *common, "--ckpt_path=last"])
    assert type(test.model.reporting_bound).__name__ == ("SMILE" if estimator == "smile" else "ProbabilisticClassifier")
    assert -1.0 <= test.trainer.callback_metrics["test/pmi_joint_spearman"] <= 1.0
    tags = tensorboard_tags(tmp_path)
    for stage in ("val", "test"):
        for metric in (
            "pmi_joint_rmse",
            "pmi_joint_mae",
            "pmi_joint_spearman",
            "pmi_joint_plug_in_bias",
            "pmi_product_rmse",
            "pmi_product_spearman",
            "pmi_plug_in_mi",
        ):
            assert f"{stage}/{metric}" in tags["scalars"], (stage, metric)
        assert {f"{stage}/pmi_profile/exact", f"{stage}/pmi_profile/estimated"} <= tags["histograms"]
        assert f"{stage}/pmi_profile" in tags["images"]
    assert any(t.startswith("test/mi_estimate@") for t in tags["scalars"])


def test_the_saved_config_leaves_the_dims_to_the_task_and_reruns(tmp_path):
    cli = build_cli(["fit", "-c", CPU, "--data.init_args.task=multinormal-dense-3-3-0.5", *tiny(tmp_path, 2)])
    saved = os.path.join(cli.trainer.log_dir, "config.yaml")
    critic = yaml.safe_load(open(saved))["model"]["init_args"]["critic"]["init_args"]
    assert critic.get("x_dim") is None and cli.model.hparams["critic"]["init_args"]["x_dim"] == 3
    again = build_cli(["fit", "-c", saved, "--data.init_args.task=1v1-normal-0.75", *tiny(tmp_path, 2)])
    assert again.model.critic.x_dim == 1


def test_a_critic_dim_that_differs_from_the_task_names_the_parameter(tmp_path):
    with pytest.raises(ValueError, match=r"critic x_dim: .* expects 3 .* yields 1 \(x_dim\)"):
        build_cli(
            [
                "fit",
                "-c",
                CPU,
                "--data.init_args.task=1v1-normal-0.75",
                *tiny(tmp_path, 2),
                "--model.init_args.critic.init_args.x_dim=3",
            ]
        )


def test_an_unknown_task_id_lists_close_matches(tmp_path):
    # (jsonargparse re-raises the datamodule's UnknownTaskError as a ValueError with the same message)
    with pytest.raises(
        ValueError,
        match=r"task: unknown task id 'multinormal-dense-5-5-0\.75'; closest: "
        r"multinormal-dense-5-5-0\.5",
    ):
        build_cli(["fit", "-c", CPU, "--data.init_args.task=multinormal-dense-5-5-0.75", *tiny(tmp_path, 2)])


def test_too_few_samples_for_a_batch_names_n_samples(tmp_path):
    with pytest.raises(ValueError, match=r"n_samples: the training sample .* 50 pairs is smaller than one batch"):
        build_cli(["fit", "-c", CPU, *tiny(tmp_path, 2), "--data.init_args.n_samples=100"])


@pytest.mark.slow
def test_the_console_script_reports_an_unknown_task_with_close_matches(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "pdlightning")
    result = subprocess.run(
        [script, "fit", "-c", CPU, "--data.init_args.task=1v1-normal-0.7", *tiny(tmp_path, 2)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode != 0
    assert "unknown task id '1v1-normal-0.7'; closest: 1v1-normal-0.75" in result.stderr


def test_the_gpu_config_composes_with_the_estimator_fragments(capsys):
    for fragments in ([], ["-c", CLASSIFIER]):
        with pytest.raises(SystemExit):
            build_cli(["fit", "-c", GPU, *fragments, "--data.init_args.task=1v1-normal-0.75", "--print_config"])
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["data"]["class_path"] == "pdlightning.data.TaskDataModule"
        assert config["trainer"]["accelerator"] == "gpu"
        assert config["model"]["init_args"]["critic"]["init_args"].get("x_dim") is None
