"""SSL and linear evaluation through the `pdlightning` CLI (digits, a few steps). The shipped SSL
configs are tested in tests/test_configs.py."""

from __future__ import annotations

import pytest
import torch
import yaml

from pdlightning.cli.main import build_cli
from pdlightning.modules import ContrastiveSSLModule, LinearEvalModule

ENCODER = {
    "class_path": "pdlightning.encoders.ResNetEncoder",
    "init_args": {"arch": "cifar", "in_channels": 1, "widths": [4, 8]},
}


def _trainer(tmp_path, name: str, **extra) -> dict:
    return {
        "max_steps": 4,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 1,
        "val_check_interval": 4,
        "default_root_dir": str(tmp_path),
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(tmp_path), "name": name, "version": 0},
        },
        **extra,
    }


@pytest.mark.slow
def test_cli_ssl_fit_then_linear_eval_fit_and_test(tmp_path) -> None:
    ssl_config = {
        "seed_everything": 0,
        "trainer": _trainer(tmp_path, "ssl"),
        "model": {
            "class_path": "pdlightning.modules.ContrastiveSSLModule",
            "init_args": {
                "encoder": ENCODER,
                "projection": {
                    "class_path": "pdlightning.encoders.ProjectionHead",
                    "init_args": {"in_dim": 8, "hidden_dims": [8], "out_dim": 8},
                },
                "critic": {
                    "class_path": "pdlightning.critics.SeparableCritic",
                    "init_args": {
                        "x_dim": 8,
                        "y_dim": 8,
                        "hidden_dims": [],
                        "embed_dim": 8,
                        "normalize": True,
                        "temperature": 0.5,
                    },
                },
                "bound": {"class_path": "pdlightning.bounds.ProbabilisticClassifier", "init_args": {"balanced": True}},
            },
        },
        "data": {"class_path": "pdlightning.data.DigitsDataModule", "init_args": {"batch_size": 32}},
    }
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump(ssl_config))
    cli = build_cli(["fit", "-c", str(path)])
    assert isinstance(cli.model, ContrastiveSSLModule) and cli.trainer.global_step == 4
    ckpt = tmp_path / "ssl" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    eval_config = {
        "seed_everything": 0,
        "trainer": _trainer(tmp_path, "linear_eval", limit_test_batches=2),
        "model": {"class_path": "pdlightning.modules.LinearEvalModule", "init_args": {"num_classes": 10}},
        "data": {
            "class_path": "pdlightning.data.DigitsDataModule",
            "init_args": {"batch_size": 32, "two_views": False},
        },
    }
    eval_path = tmp_path / "linear_eval.yaml"
    eval_path.write_text(yaml.safe_dump(eval_config))
    # the encoder's architecture comes from the SSL checkpoint (no `encoder` in the config)
    cli = build_cli(["fit", "-c", str(eval_path), "--model.ssl_checkpoint", str(ckpt)])
    assert isinstance(cli.model, LinearEvalModule)
    ssl_weights = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in cli.model.encoder.state_dict().items():
        torch.testing.assert_close(value, ssl_weights[f"encoder.{name}"])
    linear_ckpt = tmp_path / "linear_eval" / "version_0" / "checkpoints" / "last.ckpt"
    cli = build_cli(
        ["test", "-c", str(eval_path), "--model.ssl_checkpoint", str(ckpt), "--ckpt_path", str(linear_ckpt)]
    )
    assert 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0
