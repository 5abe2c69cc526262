"""Test accuracy of an MI critic, as the ReMINE benchmarks define it (Choi & Lee, UAI 2022, §5.1).

- SLB: ``y_hat = argmax_c T(x, onehot(c))`` (for ``T = f(x) . onehot(y)``: ``argmax f(x)``).
- CLB: ``y_hat`` = label of ``argmax_{x' in train} T(x_test, x')`` (1-nearest neighbour by critic).

Both read the critic only, so any critic of the right inputs works; critics exposing
``encode_x``/``encode_y`` and a head with ``cross`` (an :class:`~pdlightning.critics.EncodedCritic`
over a head) encode each side once.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, TypeGuard

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from pdlightning.critics import Critic

__all__ = ["cross_scores", "ClassifierAccuracy", "NearestNeighbourAccuracy"]


class _Head(Protocol):
    def cross(self, x: Tensor, y: Tensor) -> Tensor: ...


class _EncodesEachSide(Protocol):
    """A critic ``T(x, y) = head(encode_x(x), encode_y(y))`` (an :class:`~pdlightning.critics.EncodedCritic`)."""

    head: _Head

    def encode_x(self, x: Tensor) -> Tensor: ...

    def encode_y(self, y: Tensor) -> Tensor: ...


def _encodes_each_side(critic: Critic) -> TypeGuard[_EncodesEachSide]:
    # hasattr, not a runtime-checkable Protocol: from Python 3.12 those look attributes up statically and miss the
    # submodules nn.Module keeps in _modules (the head).
    head = getattr(critic, "head", None)
    return hasattr(critic, "encode_x") and hasattr(critic, "encode_y") and callable(getattr(head, "cross", None))


def _critic(pl_module: L.LightningModule) -> Critic:
    critic = getattr(pl_module, "critic", None)
    if not isinstance(critic, Critic):
        raise ValueError(f"{type(pl_module).__name__}.critic: expected a Critic, got {type(critic).__name__}")
    return critic


def _datamodule(trainer: L.Trainer) -> Optional[L.LightningDataModule]:
    # Lightning sets Trainer.datamodule at run time (its data connector); the class does not declare it.
    return getattr(trainer, "datamodule", None)


def cross_scores(critic: Critic, x: Tensor, y: Tensor, chunk: int = 256) -> Tensor:
    """``T(x_i, y_j)`` for every ``i < n``, ``j < m`` (``[n, m]``; ``n`` and ``m`` may differ), in
    chunks of ``chunk`` rows (a joint critic holds a ``[rows, m, hidden]`` activation). Critics that
    encode each side (``encode_x``/``encode_y`` and a head) encode ``y`` once."""
    if _encodes_each_side(critic):
        ex, ey = critic.encode_x(x), critic.encode_y(y)
        return torch.cat([critic.head.cross(ex[s : s + chunk], ey) for s in range(0, x.shape[0], chunk)])
    return torch.cat([critic.cross(x[s : s + chunk], y) for s in range(0, x.shape[0], chunk)])


class _TestAccuracy(Callback):
    def __init__(self) -> None:
        super().__init__()
        self.metric: Optional[MulticlassAccuracy] = None
        self.num_classes = 0

    def _metric(self) -> MulticlassAccuracy:
        if self.metric is None:
            raise RuntimeError(f"{type(self).__name__}: no test epoch has started")
        return self.metric

    def _num_classes(self, trainer: L.Trainer) -> int:
        num_classes = getattr(_datamodule(trainer), "num_classes", 0)
        if not num_classes:
            raise ValueError(f"{type(self).__name__}: the datamodule must expose num_classes")
        return int(num_classes)

    def predict(self, pl_module: L.LightningModule, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.num_classes = self._num_classes(trainer)
        self.metric = MulticlassAccuracy(self.num_classes, average="micro").to(pl_module.device)

    @torch.no_grad()
    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if "label" not in batch:
            raise ValueError(f"{type(self).__name__}: test batches need a 'label' key")
        self._metric().update(self.predict(pl_module, batch), batch["label"])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metric = self._metric()
        pl_module.log("test/accuracy", metric.compute())
        metric.reset()


class ClassifierAccuracy(_TestAccuracy):
    """SLB test accuracy: ``argmax_c T(x, onehot(c))`` against the batch's ``label``."""

    def predict(self, pl_module: L.LightningModule, batch: dict[str, Tensor]) -> Tensor:
        classes = torch.eye(self.num_classes, device=batch["x"].device)
        return cross_scores(_critic(pl_module), batch["x"], classes).argmax(dim=1)


class NearestNeighbourAccuracy(_TestAccuracy):
    """CLB test accuracy: the label of the training image with the highest ``T(x_test, x_train)``.

    Args:
        reference_size: use only the first ``reference_size`` training images (all if None).
    """

    def __init__(self, reference_size: Optional[int] = None) -> None:
        super().__init__()
        if reference_size is not None and reference_size < 1:
            raise ValueError(f"reference_size: expected a positive number of images or None, got {reference_size}")
        self.reference_size = reference_size
        self.reference: Optional[tuple[Tensor, Tensor]] = None
        self.encoded = False

    @torch.no_grad()
    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_test_epoch_start(trainer, pl_module)
        loader = getattr(_datamodule(trainer), "reference_dataloader", None)
        if loader is None:
            raise ValueError("NearestNeighbourAccuracy: the datamodule must provide reference_dataloader()")
        critic = _critic(pl_module)
        self.encoded = _encodes_each_side(critic)
        items: list[Tensor] = []
        labels: list[Tensor] = []
        count = 0
        for x, label in loader():
            x = x.to(pl_module.device)
            encoded = critic.encode_y(x) if _encodes_each_side(critic) else x
            items.append(encoded)  # encode once, not per test batch
            labels.append(label)
            count += len(label)
            if self.reference_size is not None and count >= self.reference_size:
                break
        size = self.reference_size or count
        self.reference = (torch.cat(items)[:size], torch.cat(labels)[:size].to(pl_module.device))

    def predict(self, pl_module: L.LightningModule, batch: dict[str, Tensor]) -> Tensor:
        if self.reference is None:
            raise RuntimeError("NearestNeighbourAccuracy: no test epoch has started")
        items, labels = self.reference
        critic = _critic(pl_module)
        if self.encoded and _encodes_each_side(critic):
            scores = critic.head.cross(critic.encode_x(batch["x"]), items)
        else:
            scores = cross_scores(critic, batch["x"], items)
        return labels[scores.argmax(dim=1)]
