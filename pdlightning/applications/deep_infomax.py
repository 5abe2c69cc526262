"""Deep InfoMax between a shallow and a deeper layer of one encoder, then linear evaluation (Mroueh et al., "Improved
Mutual Information Estimation", AAAI 2021, Sec. 5 and Fig. 4; after Hjelm et al., "Learning deep representations by
mutual information estimation and maximization", ICLR 2019).

The encoder ``E`` is trained to maximise ``I(x', y')`` between the features of a shallow layer, ``x' = E_l(x)``, and
of its output, ``y' = E_k(x)``, of the same image: a critic (the "additional trainable layers" of the paper's
Fig. 4b) tells pairs from one image from pairs of different images, and a bound (:class:`~pdlightning.losses.MILoss`;
η-DV for η-MINE, DV for DV-MINE, InfoNCE...) turns its scores into the loss. The shallow layer is named by its
module path in the encoder (``conv.1``: the activation after the first convolution of
:class:`~pdlightning.encoders.ImageEncoder`) and read with a forward hook, so any encoder works; a convolutional
feature map is average-pooled to ``shallow_pool x shallow_pool`` before it is flattened (the critic's ``x_dim`` is
``channels * shallow_pool²``, its ``y_dim`` the encoder's output size).

The module keeps the encoder under the name ``encoder`` (and its architecture in the checkpoint's hyper-parameters
when fitted with the ``pdlightning`` CLI), as :class:`~pdlightning.modules.ContrastiveSSLModule` does, so the
linear-evaluation stage loads its checkpoint unchanged::

    pdlightning fit -c configs/dim/mnist.yaml
    pdlightning fit -c configs/linear_eval/mnist.yaml \
        --model.ssl_checkpoint lightning_logs/dim/mnist/version_0/checkpoints/last.ckpt

Batches: ``x`` (images) and optionally ``label``; with ``deep_input: y`` the deep features come from a second view
``y`` of the image (a two-view datamodule) instead of ``x`` itself.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from ..bounds import Bound
from ..critics import Critic
from ..losses import MILoss
from ..modules.base import ConfiguredModule
from ..modules.finite import NonFinitePolicy

__all__ = ["DeepInfoMax"]


class DeepInfoMax(ConfiguredModule):
    """Maximise the MI between a shallow layer and the output of one encoder (see the module docstring).

    Args:
        encoder: ``E``; its output is the representation linear evaluation uses.
        critic: scores ``(x', y')``: ``x_dim`` = the pooled shallow features, ``y_dim`` = the encoder's output size.
        bound: the MI bound (``EtaDV``, ``DV``, ``MINE``, ``InfoNCE``...).
        shallow_layer: module path of the shallow layer in ``encoder`` (``encoder.get_submodule``).
        shallow_pool: average-pool a ``[C, H, W]`` shallow feature map to ``[C, p, p]`` (``None``: keep it whole).
        deep_input: ``x`` (the deep features of the same input) or ``y`` (of the batch's second view).
        optimizer: factory of the optimiser of the encoder (and of the critic, unless ``mi_optimizer``).
        scheduler: optional learning-rate scheduler factory.
        mi_optimizer: the critic's own optimiser (:class:`~pdlightning.losses.MILoss`); ``None``: the encoder's.
        negatives: marginal pairs: ``in_batch`` (every other image of the batch, as DIM) or ``shuffle`` (one per image).
        non_finite: the MI term's non-finite policy (``"raise"`` or ``"skip"``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        critic: Critic,
        bound: Bound,
        shallow_layer: str = "conv.1",
        shallow_pool: Optional[int] = 4,
        deep_input: Literal["x", "y"] = "x",
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        mi_optimizer: Optional[OptimizerCallable] = None,
        negatives: Literal["in_batch", "shuffle"] = "in_batch",
        non_finite: NonFinitePolicy = "raise",
    ) -> None:
        super().__init__(optimizer, scheduler)
        try:
            layer = encoder.get_submodule(shallow_layer)
        except AttributeError:
            names = [name for name, _ in encoder.named_modules() if name]
            raise ValueError(
                f"shallow_layer: {type(encoder).__name__} has no module {shallow_layer!r}; its modules are {names}"
            ) from None
        positive = isinstance(shallow_pool, int) and not isinstance(shallow_pool, bool) and shallow_pool >= 1
        if shallow_pool is not None and not positive:
            raise ValueError(f"shallow_pool: expected None or a positive integer, got {shallow_pool!r}")
        if deep_input not in ("x", "y"):
            raise ValueError(f"deep_input: expected 'x' or 'y', got {deep_input!r}")
        self.encoder = encoder
        self.mi = MILoss(critic, bound, optimizer=mi_optimizer, negatives=negatives, non_finite=non_finite)
        self.shallow_layer, self.shallow_pool, self.deep_input = shallow_layer, shallow_pool, deep_input
        self._captured: list[Tensor] = []
        self._hook = layer.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self._captured.append(output)

    def features(self, x: Tensor) -> Tensor:
        """The representation ``E(x)`` (what linear evaluation uses)."""
        return self.encoder(x)

    def layers(self, x: Tensor, y: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """``(x', y')``: the pooled, flattened shallow features of ``x`` and the deep features of ``x`` (or ``y``)."""
        self._captured.clear()
        deep_of_x = self.encoder(x)
        if not self._captured:
            raise RuntimeError(f"shallow_layer: {self.shallow_layer!r} was not called by the encoder's forward")
        shallow = self._captured[0]
        self._captured.clear()
        if self.shallow_pool is not None and shallow.dim() == 4:
            shallow = F.adaptive_avg_pool2d(shallow, self.shallow_pool)
        deep = deep_of_x if y is None else self.encoder(y)
        self._captured.clear()
        return shallow.flatten(1), deep.flatten(1)

    def _step(self, batch: dict[str, Tensor], stage: str) -> Optional[Tensor]:
        second = batch["y"] if self.deep_input == "y" else None
        shallow, deep = self.layers(batch["x"], second)
        term = self.mi(shallow, deep)
        n = batch["x"].shape[0]
        if term is None:  # non_finite="skip": nothing to learn from this batch
            return None
        self.log(f"{stage}/loss", term.loss.detach(), batch_size=n, prog_bar=stage == "train")
        self.log(f"{stage}/mi_estimate", term.mi, batch_size=n, prog_bar=stage != "train")
        return term.loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[Tensor]:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if batch["x"].shape[0] >= 2:
            self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if batch["x"].shape[0] >= 2:
            self._step(batch, "test")

    def optimized_parameters(self) -> list[nn.Parameter]:
        """The encoder, and the critic and the bound's parameters unless they have their own optimiser."""
        parameters = list(self.encoder.parameters())
        return parameters if self.mi.own_optimizer else parameters + list(self.mi.parameters())
