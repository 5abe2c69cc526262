"""Offline linear evaluation: a linear classifier on the frozen representation of an SSL checkpoint.

The linear-evaluation protocol of the PD paper (Sec. 5) and of CPC / SimCLR: load the encoder
``F`` trained by :class:`~pdlightning.modules.ContrastiveSSLModule`, freeze it (no gradients, kept in
eval mode so BatchNorm statistics do not move), and train ``softmax(W F(x) + b)`` on the labels;
report test accuracy (torchmetrics). Run as::

    pdlightning fit  -c configs/linear_eval/mnist.yaml --model.ssl_checkpoint PATH
    pdlightning test -c configs/linear_eval/mnist.yaml --model.ssl_checkpoint PATH --ckpt_path LINEAR.ckpt

The encoder's architecture comes from the SSL checkpoint itself when it was written by the
``pdlightning`` CLI (its hyperparameters hold the encoder's ``class_path``); otherwise pass
``encoder`` with the same architecture. ``random_init: true`` keeps the architecture but not the
weights: the frozen-random-encoder baseline.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..encoders.heads import linear_probe
from .base import ConfiguredModule

__all__ = ["LinearEvalModule", "load_ssl_checkpoint", "SSLCheckpointError"]


class SSLCheckpointError(ValueError):
    """The SSL checkpoint is missing, unreadable, or does not match the encoder."""


def _read_checkpoint(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ssl_checkpoint: no such file {path!r} (pass the .ckpt written by the SSL fit)")
    try:
        # Lightning checkpoints pickle hyperparameters (optimiser classes...): only load trusted files.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise SSLCheckpointError(f"ssl_checkpoint: cannot read {path!r} as a checkpoint ({error})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise SSLCheckpointError(f"ssl_checkpoint: {path!r} is not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def _encoder_from_config(config: Any, path: str, prefix: str) -> nn.Module:
    name = prefix.rstrip(".")
    if not (isinstance(config, dict) and "class_path" in config):
        raise SSLCheckpointError(
            f"encoder: {path!r} does not record the {name!r} architecture (the checkpoint was not written by "
            f"the pdlightning CLI); pass `encoder` with the SSL run's architecture"
        )
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(nn.Module, "encoder", fail_untyped=False)
    namespace = parser.parse_object({"encoder": config})
    return parser.instantiate_classes(namespace).encoder


def load_ssl_checkpoint(
    path: str, encoder: Optional[nn.Module] = None, prefix: str = "encoder.", load_weights: bool = True
) -> nn.Module:
    """The encoder stored under ``prefix`` in the SSL checkpoint ``path``.

    ``encoder`` (optional) is an instance with the expected architecture; without it the architecture
    is rebuilt from the checkpoint's hyperparameters. ``load_weights=False`` returns the rebuilt,
    randomly initialised encoder (the baseline). Raises :class:`FileNotFoundError` for a missing file
    and :class:`SSLCheckpointError` for a checkpoint without that encoder or with other shapes/keys.
    """
    checkpoint = _read_checkpoint(path)
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    if not state:
        raise SSLCheckpointError(
            f"ssl_checkpoint: {path!r} has no weights under {prefix!r} (is it an SSL checkpoint? first keys: "
            f"{sorted(checkpoint['state_dict'])[:5]})"
        )
    if encoder is None:
        encoder = _encoder_from_config(checkpoint.get("hyper_parameters", {}).get(prefix.rstrip(".")), path, prefix)
    if load_weights:
        expected = encoder.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        shapes = [
            f"{k}: checkpoint {tuple(state[k].shape)} vs encoder {tuple(v.shape)}"
            for k, v in expected.items()
            if k in state and state[k].shape != v.shape
        ]
        if missing or unexpected or shapes:
            raise SSLCheckpointError(
                f"ssl_checkpoint: {path!r} does not match the encoder {type(encoder).__name__}: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                f"shape mismatches {shapes[:5]}"
            )
        encoder.load_state_dict(state)
    return encoder


class LinearEvalModule(ConfiguredModule):
    """Linear classifier on a frozen SSL encoder; logs ``train/loss``, ``train/acc``, ``val/acc``, ``test/acc``.

    Args:
        ssl_checkpoint: the SSL run's ``.ckpt`` (required; ``None`` only so that configs can leave it to the
            command line).
        num_classes: number of labels.
        encoder: an encoder with the SSL run's architecture; ``None`` rebuilds it from the checkpoint.
        encoder_key: where the encoder lives in the SSL module (``encoder``; ``encoder_y`` for ``G``).
        random_init: keep the architecture but not the weights (the frozen random-encoder baseline).
        feature_dim: representation size; default ``encoder.output_dim`` or inferred from ``example_shape``.
        example_shape: one input's shape, to infer ``feature_dim`` by a forward pass when needed.
        optimizer: optimiser factory for the classifier.
        scheduler: optional LR scheduler factory (stepped every step).
    """

    def __init__(
        self,
        ssl_checkpoint: Optional[str] = None,
        num_classes: int = 10,
        encoder: Optional[nn.Module] = None,
        encoder_key: str = "encoder",
        random_init: bool = False,
        feature_dim: Optional[int] = None,
        example_shape: Optional[list[int]] = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__(optimizer, scheduler)
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise ValueError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        if not ssl_checkpoint:
            raise ValueError("ssl_checkpoint: required (pass --model.ssl_checkpoint PATH to the SSL .ckpt)")
        self.encoder = load_ssl_checkpoint(ssl_checkpoint, encoder, f"{encoder_key}.", load_weights=not random_init)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        feature_dim = feature_dim or getattr(self.encoder, "output_dim", None)
        if feature_dim is None and example_shape is not None:
            with torch.no_grad():
                feature_dim = self.encoder(torch.zeros(2, *example_shape)).reshape(2, -1).shape[1]
        if not (isinstance(feature_dim, int) and feature_dim > 0):
            raise ValueError("feature_dim: cannot infer the representation size; pass feature_dim or example_shape")
        self.classifier = linear_probe(feature_dim, num_classes)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def train(self, mode: bool = True) -> "LinearEvalModule":
        """Keep the frozen encoder in eval mode (BatchNorm statistics fixed) whatever Lightning asks."""
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[n, num_classes]``."""
        with torch.no_grad():
            features = self.encoder(x).reshape(x.shape[0], -1)
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.classifier(features.float())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch["x"])
        loss = F.cross_entropy(logits, batch["label"])
        n = batch["label"].shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/acc", (logits.argmax(-1) == batch["label"]).float().mean(), on_step=True, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_acc(self(batch["x"]), batch["label"])
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=batch["label"].shape[0])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_acc(self(batch["x"]), batch["label"])
        self.log("test/acc", self.test_acc, batch_size=batch["label"].shape[0])

    def optimized_parameters(self) -> Iterator[nn.Parameter]:
        """Only the linear classifier learns; the encoder is frozen."""
        return self.classifier.parameters()
