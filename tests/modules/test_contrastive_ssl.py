"""ContrastiveSSLModule: any bound as the SSL loss, bf16-mixed on CPU, the online probe."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from pdlightning.bounds import NWJ, SMILE, DensityRatioFitting, InfoNCE, ProbabilisticClassifier, Regularized
from pdlightning.critics import BilinearCritic, SeparableCritic
from pdlightning.data import DigitsDataModule, HalvesViews
from pdlightning.encoders import ProjectionHead, RealNVPEncoder, ResNetEncoder
from pdlightning.modules import ContrastiveSSLModule


def _trainer(steps: int, **kwargs) -> L.Trainer:
    options = dict(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    options.update(kwargs)
    return L.Trainer(**options)


def _deep_module(bound, **kwargs) -> ContrastiveSSLModule:
    torch.manual_seed(0)
    encoder = ResNetEncoder("cifar", in_channels=1, widths=[4, 8])
    return ContrastiveSSLModule(
        encoder,
        SeparableCritic(16, 16, hidden_dims=[], embed_dim=16, normalize=True, temperature=0.5),
        bound,
        projection=ProjectionHead(8, [16], 16),
        **kwargs,
    )


class _Record(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.estimates: list[float] = []
        self.score_dtypes: set[torch.dtype] = set()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        record = outputs["record"]
        self.losses.append(float(record.loss[0]))
        self.estimates.append(float(record.estimate[0]))
        self.score_dtypes.add(record.joint.dtype)


OBJECTIVES = {
    "cpc": lambda: InfoNCE(),
    "pcc": lambda: ProbabilisticClassifier(balanced=True),
    "drfc": lambda: DensityRatioFitting(),
    "nwj": lambda: NWJ(),
    "smile": lambda: SMILE(tau=5.0),
    "reinfonce": lambda: Regularized(InfoNCE(), lam=0.1),
}


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_bf16_mixed_on_cpu_gives_finite_losses_for_every_objective(objective: str) -> None:
    module = _deep_module(OBJECTIVES[objective]())
    before = [p.detach().clone() for p in module.encoder.parameters()]
    record = _Record()
    _trainer(3, precision="bf16-mixed", callbacks=[record]).fit(module, DigitsDataModule(batch_size=32))
    assert len(record.losses) == 3 and all(math.isfinite(v) for v in record.losses), record.losses
    assert record.score_dtypes == {torch.float32}, "bounds must compute in float32 under autocast"
    assert any(not torch.equal(a, b) for a, b in zip(before, module.encoder.parameters())), "encoder did not train"


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="fp16 AMP needs a GPU (Lightning turns 16-mixed into bf16 on CPU)"
)
def test_16_mixed_on_gpu_runs_with_float32_bounds() -> None:
    module = _deep_module(DensityRatioFitting())
    record = _Record()
    trainer = _trainer(3, precision="16-mixed", accelerator="gpu", callbacks=[record])
    trainer.fit(module, DigitsDataModule(batch_size=32))
    assert trainer.precision == "16-mixed"
    assert all(math.isfinite(v) for v in record.losses) and record.score_dtypes == {torch.float32}


def test_probe_has_its_own_optimiser_and_sees_detached_features() -> None:
    """SSL learning rate 0: the encoder must not move, the probe must (its loss never reaches the encoder)."""
    module = _deep_module(InfoNCE(), optimizer=lambda params: torch.optim.SGD(params, lr=0.0))
    encoder = {k: v.clone() for k, v in module.encoder.state_dict().items() if v.is_floating_point()}
    probe = [p.detach().clone() for p in module.probe.parameters()]
    trainer = _trainer(4, limit_val_batches=2, val_check_interval=4)
    trainer.fit(module, DigitsDataModule(batch_size=32))
    for name, value in module.encoder.state_dict().items():
        if name in encoder and "running" not in name:  # BatchNorm statistics move in train mode
            torch.testing.assert_close(value, encoder[name], msg=f"encoder weight {name} moved")
    assert all(not torch.equal(a, b) for a, b in zip(probe, module.probe.parameters()))
    assert 0.0 <= float(trainer.callback_metrics["val/probe_acc"]) <= 1.0
    assert trainer.global_step == 4, "the probe's optimiser must not count as a training step"


def test_shallow_task_two_encoders_bilinear_critic() -> None:
    torch.manual_seed(0)
    encoders = [RealNVPEncoder(32, num_couplings=2, hidden_dims=[16], permutation_seed=s) for s in (0, 1)]
    module = ContrastiveSSLModule(encoders[0], BilinearCritic(32, 32), InfoNCE(), encoder_y=encoders[1])
    record = _Record()
    _trainer(3, callbacks=[record]).fit(module, DigitsDataModule(views=HalvesViews(), batch_size=16))
    assert all(math.isfinite(v) for v in record.losses)
    # InfoNCE with a batch of 16 is at most log 16
    assert record.estimates and max(record.estimates) <= math.log(16) + 1e-5


def test_symmetric_loss_averages_both_directions() -> None:
    module = _deep_module(InfoNCE(), symmetric=True, num_classes=None)
    scores = torch.randn(6, 6)
    both = module.contrastive_outputs(scores)
    forward, backward = InfoNCE()(scores), InfoNCE()(scores.T)
    torch.testing.assert_close(both.loss[0], (forward.loss + backward.loss) / 2)
    torch.testing.assert_close(both.estimate[0], (forward.mi + backward.mi) / 2)


def test_probe_needs_a_feature_dim() -> None:
    with pytest.raises(ValueError, match="feature_dim"):
        ContrastiveSSLModule(torch.nn.Flatten(), BilinearCritic(4, 4), InfoNCE(), num_classes=10)
    module = ContrastiveSSLModule(torch.nn.Flatten(), BilinearCritic(4, 4), InfoNCE(), num_classes=10, feature_dim=4)
    assert module.probe is not None


class _ExplodesOnSecondStep(InfoNCE):
    """InfoNCE whose loss is NaN on its second training call."""

    calls = 0

    def objective(self, pairs):
        objective, extras = super().objective(pairs)
        if self.training:
            type(self).calls += 1
            if type(self).calls == 2:
                objective = objective * float("nan")
        return objective, extras


def test_non_finite_loss_raises_by_default_and_is_skipped_on_request() -> None:
    from pdlightning.modules import NonFiniteBoundError

    _ExplodesOnSecondStep.calls = 0
    with pytest.raises(NonFiniteBoundError, match="step 1"):
        _trainer(3).fit(_deep_module(_ExplodesOnSecondStep(), num_classes=None), DigitsDataModule(batch_size=16))
    _ExplodesOnSecondStep.calls = 0
    module = _deep_module(_ExplodesOnSecondStep(), num_classes=None, non_finite="skip")
    with pytest.warns(RuntimeWarning, match="skipping the optimiser step"):
        _trainer(3).fit(module, DigitsDataModule(batch_size=16))
    assert module.guard.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())
