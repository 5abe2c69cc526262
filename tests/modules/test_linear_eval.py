"""Offline linear evaluation: loads any SSL checkpoint, really freezes the encoder, clear errors."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from pdlightning.bounds import DensityRatioFitting, InfoNCE
from pdlightning.critics import BilinearCritic, JointCritic, SeparableCritic
from pdlightning.data import DigitsDataModule, HalvesViews
from pdlightning.encoders import ProjectionHead, RealNVPEncoder, ResNetEncoder
from pdlightning.modules import ContrastiveSSLModule, LinearEvalModule, MIEstimationModule
from pdlightning.modules.linear_eval import SSLCheckpointError


def _trainer(tmp_path, steps: int, **kwargs) -> L.Trainer:
    options = dict(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
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


def _resnet() -> ResNetEncoder:
    return ResNetEncoder("cifar", in_channels=1, widths=[4, 8])


def _ssl_checkpoint(tmp_path, module: L.LightningModule, views=None, name: str = "ssl.ckpt") -> str:
    trainer = _trainer(tmp_path, 2)
    trainer.fit(module, DigitsDataModule(views=views, batch_size=16))
    path = str(tmp_path / name)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def resnet_ssl(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ssl")
    torch.manual_seed(0)
    module = ContrastiveSSLModule(
        _resnet(),
        SeparableCritic(8, 8, [], 8, normalize=True, temperature=0.5),
        DensityRatioFitting(),
        projection=ProjectionHead(8, [8], 8),
    )
    return module, _ssl_checkpoint(tmp_path, module)


def test_offline_stage_freezes_the_encoder_and_trains_the_classifier(tmp_path, resnet_ssl) -> None:
    ssl_module, path = resnet_ssl
    module = LinearEvalModule(path, num_classes=10, encoder=_resnet())
    # loaded: the SSL encoder's weights and BatchNorm statistics
    for name, value in ssl_module.encoder.state_dict().items():
        torch.testing.assert_close(module.encoder.state_dict()[name], value, msg=name)
    encoder_before = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    classifier_before = [p.detach().clone() for p in module.classifier.parameters()]
    trainer = _trainer(tmp_path, 5, limit_test_batches=2)
    dm = DigitsDataModule(two_views=False, batch_size=32)
    trainer.fit(module, dm)
    for name, value in module.encoder.state_dict().items():  # weights *and* BatchNorm running stats
        torch.testing.assert_close(value, encoder_before[name], msg=f"frozen encoder changed: {name}")
    assert all(not p.requires_grad for p in module.encoder.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(classifier_before, module.classifier.parameters()))
    trainer.test(module, dm, verbose=False)
    assert 0.0 <= float(trainer.callback_metrics["test/acc"]) <= 1.0


def test_loads_a_shallow_task_checkpoint_and_either_encoder(tmp_path) -> None:
    torch.manual_seed(0)
    g1, g2 = (RealNVPEncoder(32, num_couplings=2, hidden_dims=[8], permutation_seed=s, init_std=0.1) for s in (0, 1))
    ssl = ContrastiveSSLModule(g1, BilinearCritic(32, 32), InfoNCE(), encoder_y=g2)
    path = _ssl_checkpoint(tmp_path, ssl, views=HalvesViews())
    fresh = lambda seed: RealNVPEncoder(32, num_couplings=2, hidden_dims=[8], permutation_seed=seed)  # noqa: E731
    for key, reference, seed in (("encoder", ssl.encoder, 0), ("encoder_y", ssl.encoder_y, 1)):
        module = LinearEvalModule(path, encoder=fresh(seed), encoder_key=key)
        for name, value in reference.state_dict().items():
            torch.testing.assert_close(module.encoder.state_dict()[name], value)
    _trainer(tmp_path, 2).fit(
        LinearEvalModule(path, encoder=fresh(0)), DigitsDataModule(views=HalvesViews(), two_views=False, batch_size=16)
    )


def test_random_init_keeps_architecture_but_not_weights(resnet_ssl) -> None:
    ssl_module, path = resnet_ssl
    torch.manual_seed(1)
    module = LinearEvalModule(path, encoder=_resnet(), random_init=True)
    weight = "net.0.0.weight"
    assert module.encoder.state_dict()[weight].shape == ssl_module.encoder.state_dict()[weight].shape
    assert not torch.equal(module.encoder.state_dict()[weight], ssl_module.encoder.state_dict()[weight])


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="ssl_checkpoint: no such file"):
        LinearEvalModule(str(tmp_path / "nope.ckpt"), encoder=_resnet())
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(SSLCheckpointError, match="cannot read"):
        LinearEvalModule(str(tmp_path / "junk.ckpt"), encoder=_resnet())
    with pytest.raises(ValueError, match="ssl_checkpoint: required"):
        LinearEvalModule("", encoder=_resnet())


def test_mismatched_checkpoint_is_a_clear_error(tmp_path, resnet_ssl) -> None:
    _, path = resnet_ssl
    with pytest.raises(SSLCheckpointError, match="shape mismatches .*net.0.0.weight"):
        LinearEvalModule(path, encoder=ResNetEncoder("cifar", in_channels=1, widths=[6, 8]))
    with pytest.raises(SSLCheckpointError, match="missing"):
        LinearEvalModule(path, encoder=ResNetEncoder("cifar", in_channels=1, widths=[4, 8, 16]))
    # built in Python, the checkpoint does not record the architecture: say what to pass
    with pytest.raises(SSLCheckpointError, match="pass `encoder`"):
        LinearEvalModule(path)
    # not an SSL checkpoint at all (an MI-estimation run): no encoder weights
    mi = MIEstimationModule(JointCritic(4, 4, [8]), InfoNCE())
    mi_path = str(tmp_path / "mi.ckpt")
    trainer = _trainer(tmp_path, 1)
    trainer.strategy.connect(mi)
    trainer.save_checkpoint(mi_path)
    with pytest.raises(SSLCheckpointError, match="no weights under 'encoder.'"):
        LinearEvalModule(mi_path, encoder=_resnet())
