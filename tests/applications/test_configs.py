"""Every config under configs/retrieval, configs/consistency, configs/slb and configs/clb, on a tiny
budget (a few steps, small test sets; the 8x8 digits stand in for MNIST in the sweep runners)."""

import csv
import glob
import importlib
import json
import math
import os

import numpy as np
import pytest
import torch
import yaml

from pdlightning.applications.mi_benchmark import run_mi_benchmark
from pdlightning.applications.self_consistency import run_self_consistency
from pdlightning.applications.sweep import function_cli
from pdlightning.cli.main import build_cli
from pdlightning.data.sources import FASHION_MNIST_DIR

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def tiny(tmp_path, steps=2):
    return QUIET + [
        f"--trainer.max_steps={steps}",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_checkpointing=false",
    ]


def fit_and_test(configs, args):
    cli = build_cli([f"--config={c}" for c in configs] + args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli, cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]


def test_retrieval_mfeat_config_fits_retrieves_and_predicts(tmp_path):
    cli = build_cli(
        ["fit", "--config=configs/retrieval/mfeat.yaml", *tiny(tmp_path, 3), "--trainer.enable_checkpointing=true"]
    )  # predict evaluates the trained checkpoint
    directory = os.path.join(cli.trainer.log_dir, "retrieval")
    results = json.load(open(os.path.join(directory, "retrieval.json")))
    assert 0.0 <= results["retrieval/top1"] <= 1.0 and results["retrieval/chance"] == 0.2
    assert results["retrieval/baseline_top1"] > 0.3  # least squares pixels -> Fourier beats chance
    assert "Correct retrievals" in open(os.path.join(directory, "listing.md")).read()
    predict = build_cli(
        [
            "predict",
            "--config=configs/retrieval/mfeat.yaml",
            *QUIET,
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--ckpt_path=last",
        ]
    )
    rows = list(csv.DictReader(open(os.path.join(predict.trainer.log_dir, "pmi.csv"))))
    assert len(rows) == 400 and {"index", "label", "pmi"} <= set(rows[0])


def test_retrieval_paired_features_config_on_user_files(tmp_path):
    generator = torch.Generator().manual_seed(0)
    args = []
    for split, n in (("train", 96), ("test", 20)):
        x = torch.randn(n, 50, generator=generator)
        for name, array in (("x", x), ("y", x + 0.1 * torch.randn(n, 50, generator=generator))):
            path = str(tmp_path / f"{split}_{name}.npy")
            np.save(path, array.numpy())
            args.append(f"--data.init_args.{split}_{name}={path}")
    cli, metrics = fit_and_test(["configs/retrieval/paired_features.yaml"], args + tiny(tmp_path, 2))
    assert 0.0 <= metrics["test/retrieval_top1"] <= 1.0
    assert metrics["test/retrieval_baseline_top1"] == 1.0  # y = x + noise: the least-squares map finds it


@pytest.mark.slow
def test_slb_mnist_config_reports_mi_and_accuracy(tmp_path):
    _, metrics = fit_and_test(["configs/slb/mnist.yaml"], tiny(tmp_path, 3) + ["--data.init_args.num_test=128"])
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    levels = [float(k.split("@")[1]) for k in metrics if k.startswith("test/mi_estimate@")]
    assert len(levels) == 1 and abs(levels[0] - math.log(10)) < 0.01  # true MI = H(Y) of MNIST's labels


def test_clb_mnist_config_reports_mi_and_nearest_neighbour_accuracy(tmp_path):
    callbacks = '--trainer.callbacks=[{"class_path": "pdlightning.callbacks.NearestNeighbourAccuracy", "init_args": {"reference_size": 256}}]'
    _, metrics = fit_and_test(
        ["configs/clb/mnist.yaml"], tiny(tmp_path, 3) + ["--data.init_args.num_test=128", callbacks]
    )
    assert 0.0 <= metrics["test/accuracy"] <= 1.0


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="Debian dataset-fashion-mnist not installed")
@pytest.mark.parametrize("task", ["slb", "clb"])
def test_fashion_mnist_overlays(tmp_path, task):
    callbacks = (
        [
            '--trainer.callbacks=[{"class_path": "pdlightning.callbacks.NearestNeighbourAccuracy", "init_args": {"reference_size": 256}}]'
        ]
        if task == "clb"
        else []
    )
    _, metrics = fit_and_test(
        [f"configs/{task}/mnist.yaml", f"configs/{task}/fashion_mnist.yaml"],
        tiny(tmp_path, 2) + ["--data.init_args.num_test=128"] + callbacks,
    )
    assert "test/accuracy" in metrics


@pytest.mark.parametrize("config", sorted(glob.glob("configs/slb/cifar*.yaml") + glob.glob("configs/clb/cifar*.yaml")))
def test_cifar_overlays_build_a_critic_for_32x32_colour_images(config, tmp_path):
    task = config.split("/")[1]
    cli = build_cli(
        [
            f"--config=configs/{task}/mnist.yaml",
            f"--config={config}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ],
        run=False,
    )
    classes = 100 if "cifar100" in config else 10
    x = torch.rand(4, 3, 32, 32)
    y = torch.eye(classes)[:4] if task == "slb" else torch.rand(4, 3, 32, 32)
    assert cli.model.critic(x, y).shape == (4, 4)
    assert cli.datamodule.source == os.path.basename(config)[:-5]


def test_consistency_config_fits_each_setting(tmp_path):
    for setting, channels in (("baseline", 1), ("additivity", 2)):
        keys = [
            f"--model.init_args.critic.init_args.{e}.init_args.in_channels={channels}"
            for e in ("x_encoder", "y_encoder")
        ]
        _, metrics = fit_and_test(
            ["configs/consistency/mnist.yaml", "configs/consistency/cpu.yaml"],
            tiny(tmp_path, 2) + keys + [f"--data.init_args.setting={setting}", "--data.init_args.num_test=128"],
        )
        assert "test/mi_estimate" in metrics


def digits_overrides(runner_overrides, image_keys):
    return (
        runner_overrides
        + [
            "--trainer.max_steps=2",
            "--trainer.logger=false",
            "--data.init_args.source=digits",
            "--data.init_args.num_test=null",
        ]
        + [f"--{k}=8" for k in image_keys]
    )


def build(spec):
    """Instantiate a {class_path, init_args} spec (recursively) to check a runner config's specs."""
    module, name = spec["class_path"].rsplit(".", 1)
    kwargs = {
        k: build(v) if isinstance(v, dict) and "class_path" in v else v for k, v in spec.get("init_args", {}).items()
    }
    return getattr(importlib.import_module(module), name)(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("sweep", ["configs/consistency/sweep_mnist.yaml", "configs/consistency/sweep_mnist_cpu.yaml"])
def test_consistency_sweep_configs(sweep, tmp_path):
    config = yaml.safe_load(open(sweep))
    for spec in config["bounds"].values():
        build(spec)
    name = next(iter(config["bounds"]))
    keys = [f"model.init_args.critic.init_args.{e}.init_args.image_size" for e in ("x_encoder", "y_encoder")]
    rows = function_cli(
        run_self_consistency,
        [
            f"--config={sweep}",
            "--rows=[4]",
            "--reference_rows=8",
            "--settings=[data_processing]",
            f"--bounds={json.dumps({name: config['bounds'][name]})}",
            f"--output_dir={tmp_path}",
            f"--overrides={json.dumps(digits_overrides(config['overrides'], keys))}",
        ],
    )
    assert {(r["setting"], r["rows"]) for r in rows} == {("baseline", 8), ("baseline", 4), ("data_processing", 4)}
    assert os.path.isfile(tmp_path / "self_consistency.png") and os.path.isfile(tmp_path / "self_consistency.csv")


@pytest.mark.parametrize("table", ["configs/slb/table_mnist.yaml", "configs/clb/table_mnist.yaml"])
def test_benchmark_table_configs(table, tmp_path):
    config = yaml.safe_load(open(table))
    config["losses"] = yaml.safe_load(open(os.path.join(os.path.dirname(table), config["losses"])))  # the shared file
    assert set(config["losses"]) == {"MINE", "SMILE", "InfoNCE", "NWJ", "TUBA", "JS"}
    for forms in config["losses"].values():
        assert set(forms) == {"original", "regularized"}
        for spec in forms.values():
            build(spec)
    keys = ["model.init_args.critic.init_args.x_encoder.init_args.image_size"]
    extra = (
        [
            '--trainer.callbacks=[{"class_path": "pdlightning.callbacks.NearestNeighbourAccuracy", "init_args": {"reference_size": 128}}]'
        ]
        if "clb" in table
        else []
    )
    rows = function_cli(
        run_mi_benchmark,
        [
            f"--config={table}",
            f"--losses={json.dumps({'NWJ': config['losses']['NWJ']})}",
            f"--output_dir={tmp_path}",
            f"--overrides={json.dumps(digits_overrides(config['overrides'], keys) + extra)}",
        ],
    )
    assert [(r["loss"], r["form"]) for r in rows] == [("NWJ", "original"), ("NWJ", "regularized")]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    assert "| NWJ |" in open(tmp_path / "table.md").read()
