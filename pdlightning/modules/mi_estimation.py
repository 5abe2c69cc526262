"""LightningModule for neural MI / PD estimation: a critic, a training bound, a reporting estimator."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from ..bounds import Bound, BoundOutput, PairScores
from ..critics import Critic
from ..data.batch import check_mi_batch
from .finite import NonFiniteBoundError, check_finite

__all__ = ["MIEstimationModule", "NonFiniteBoundError"]


class MIEstimationModule(L.LightningModule):
    """Estimate MI / PD between ``batch['x']`` and ``batch['y']``.

    Learning and inference are separate choices (PD paper, Table 1): ``bound`` gives the loss and
    its gradients; ``estimator`` (default: ``bound``) gives the reported MI from the same scores,
    e.g. learn with ``JS`` and report with ``NWJ``. Logged every step: ``train/loss``,
    ``mi/estimate``, ``mi/true`` (when the batch has ``mi``), ``bound/first_term``,
    ``bound/second_term`` and the bound's extras under ``bound/``.

    Args:
        critic: maps ``(x, y)`` to scores.
        bound: training objective (any :class:`~pdlightning.bounds.Bound`).
        estimator: reporting bound; ``None`` reports the training bound's value.
        optimizer: optimiser factory (``class_path`` in YAML); Adam by default.
        scheduler: optional learning-rate scheduler factory, stepped every optimiser step.
    """

    def __init__(
        self,
        critic: Critic,
        bound: Bound,
        estimator: Optional[Bound] = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["critic", "bound", "estimator"])
        self.critic = critic
        self.bound = bound
        self.estimator = estimator
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._eval_estimates: dict[float, list[Tensor]] = defaultdict(list)
        #: the latest step's outputs, for callbacks: {"bound": BoundOutput, "estimate": BoundOutput, "batch": dict}
        self.last_step: dict[str, Any] = {}

    # ----------------------------------------------------------------------------------- scoring
    def scores(self, batch: dict[str, Tensor]) -> PairScores:
        """Critic scores of the batch's joint pairs and its marginal pairs (explicit or in-batch)."""
        check_mi_batch(batch)
        x, y = batch["x"], batch["y"]
        if "x_marginal" in batch:
            return PairScores.from_pairs(
                self.critic.pointwise(x, y), self.critic.pointwise(batch["x_marginal"], batch["y_marginal"])
            )
        return PairScores.from_matrix(self.critic(x, y))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Pointwise log-dependency ``log r(x_i, y_j)`` for all pairs of a batch (``[n, n]``)."""
        return self.reporting_bound.pmi(self.critic(x, y))

    @property
    def reporting_bound(self) -> Bound:
        return self.bound if self.estimator is None else self.estimator

    def _evaluate(self, pairs: PairScores) -> tuple[BoundOutput, BoundOutput]:
        output = self.bound(pairs)
        if self.estimator is None:
            return output, output
        with torch.no_grad():
            return output, self.estimator(pairs)

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        pairs = self.scores(batch)
        output, estimate = self._evaluate(pairs)
        check_finite(output, self.bound, "bound", self.global_step)
        if estimate is not output:
            check_finite(estimate, self.reporting_bound, "estimator", self.global_step)
        n = pairs.batch_size
        log = dict(on_step=True, on_epoch=False, batch_size=n)
        self.log("train/loss", output.loss.detach(), **log)
        self.log("mi/estimate", estimate.mi, prog_bar=True, **log)
        if "mi" in batch:
            self.log("mi/true", torch.as_tensor(batch["mi"], dtype=torch.float32).mean(), prog_bar=True, **log)
        self.log("bound/first_term", output.first_term, **log)
        self.log("bound/second_term", output.second_term, **log)
        for name, value in output.extras.items():
            self.log(f"bound/{name}", value.float(), **log)
        self.last_step = {"bound": output, "estimate": estimate, "batch": batch}
        return {"loss": output.loss}

    # ------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        pairs = self.scores(batch)
        output, estimate = self._evaluate(pairs)
        self.log(f"{stage}/loss", output.loss, batch_size=pairs.batch_size)
        if "mi" in batch:
            level = float(torch.as_tensor(batch["mi"]).float().mean())
            self._eval_estimates[level].append(estimate.mi)
        else:
            self.log(f"{stage}/mi_estimate", estimate.mi, batch_size=pairs.batch_size)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        rows = []
        for level in sorted(self._eval_estimates):
            mean = torch.stack(self._eval_estimates[level]).mean()
            self.log(f"{stage}/mi_estimate@{level:g}", mean, sync_dist=True)
            self.log(f"{stage}/mi_bias@{level:g}", mean - level, sync_dist=True)
            rows.append((level, float(mean)))
        self._eval_estimates.clear()
        if rows and stage == "test" and self.trainer.is_global_zero:
            print(f"\n{'true MI':>8} {'estimate':>9} {'bias':>7}   ({type(self.reporting_bound).__name__})")
            for level, mean in rows:
                print(f"{level:8.2f} {mean:9.3f} {mean - level:+7.3f}")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # -------------------------------------------------------------------------------- optimiser
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
