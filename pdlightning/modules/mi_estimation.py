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
from .finite import NonFiniteBoundError, NonFinitePolicy
from .guarded import GuardedModule

__all__ = ["MIEstimationModule", "NonFiniteBoundError"]


class MIEstimationModule(GuardedModule):
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
        non_finite: what a non-finite loss, estimate or gradient does (see
            :mod:`pdlightning.modules.finite`): ``"raise"`` stops with a message naming the bound,
            term, step and score range; ``"skip"`` skips the optimiser step (non-finite loss or
            gradients) or drops the non-finite reported values from the logs, counts them and logs
            ``guard/skipped_steps`` and ``guard/skipped_reports``. A NaN is never logged.
    """

    def __init__(
        self,
        critic: Critic,
        bound: Bound,
        estimator: Optional[Bound] = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        non_finite: NonFinitePolicy = "raise",
    ) -> None:
        super().__init__(non_finite)
        self.save_hyperparameters(ignore=["critic", "bound", "estimator"])
        _plain_hparams(self.hparams, ("optimizer", "scheduler"))
        self.critic = critic
        self.bound = bound
        self.estimator = estimator
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._eval_estimates: dict[float, list[Tensor]] = defaultdict(list)
        #: the latest step's outputs, for callbacks: {"bound": BoundOutput, "estimate": BoundOutput, "batch": dict}
        self.last_step: dict[str, Any] = {}
        self._eval_skipped = 0

    # ---------------------------------------------------------------------------- validation
    def setup(self, stage: str) -> None:
        """Fail at set-up, not at the first batch, when the critic's input sizes do not match the
        datamodule's (``x_dim`` / ``y_dim`` attributes, when it has them)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        for side in ("x", "y"):
            expected = getattr(datamodule, f"{side}_dim", None)
            got = getattr(self.critic, f"{side}_dim", None)
            if isinstance(expected, int) and isinstance(got, int) and expected != got:
                raise ValueError(
                    f"critic {side}_dim: the critic {type(self.critic).__name__} expects {got} features "
                    f"per sample of {side}, but the datamodule {type(datamodule).__name__} yields "
                    f"{expected} ({side}_dim); set model.init_args.critic.init_args.{side}_dim: {expected}"
                )

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
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Optional[dict[str, Any]]:
        """Loss of the training bound; ``None`` (Lightning then skips the optimiser step) when the
        loss is non-finite under ``non_finite="skip"``. Non-finite values are never logged."""
        _forget_unlogged_step_metrics(self)
        pairs = self.scores(batch)
        output, estimate = self._evaluate(pairs)
        step = self.global_step
        bad = set(self.guard.check(output, self.bound, "bound", step))
        bad_estimate = bad if estimate is output else set(
            self.guard.check(estimate, self.reporting_bound, "estimator", step, reported_only=True))
        log = dict(on_step=True, on_epoch=False, batch_size=pairs.batch_size)
        skip = self.skip_this_step("loss" in bad)
        if self.guard.policy == "skip":
            for name, value in self.guard.metrics().items():
                self.log(name, value, **log)
        if skip:
            self.last_step = {"batch": batch, "skipped": True}
            return self.skipped_step_result()
        values = {"loss": ("train/loss", output.loss.detach()),
                  "first_term": ("bound/first_term", output.first_term),
                  "second_term": ("bound/second_term", output.second_term)}
        values.update({f"extras.{k}": (f"bound/{k}", v.float()) for k, v in output.extras.items()})
        for term, (name, value) in values.items():
            if term not in bad:
                self.log(name, value, **log)
        if "mi" not in bad_estimate:
            self.log("mi/estimate", estimate.mi, prog_bar=True, **log)
        if "mi" in batch:
            self.log("mi/true", torch.as_tensor(batch["mi"], dtype=torch.float32).mean(), prog_bar=True, **log)
        self.last_step = {"bound": output, "batch": batch}
        if "mi" not in bad_estimate:
            self.last_step["estimate"] = estimate
        return {"loss": output.loss}

    # ------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        pairs = self.scores(batch)
        output, estimate = self._evaluate(pairs)
        bad = self.guard.check(output, self.bound, f"{stage} bound", self.global_step, count=False)
        if estimate is not output:
            bad = bad + self.guard.check(estimate, self.reporting_bound, f"{stage} estimator",
                                         self.global_step, count=False, reported_only=True)
        if bad:  # only reached under non_finite="skip": the batch is left out of the aggregates
            self._eval_skipped += 1
            return
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
        if self._eval_skipped:
            self.log(f"{stage}/skipped_batches", float(self._eval_skipped), sync_dist=True)
            self._eval_skipped = 0
        if rows and stage == "test" and self.trainer.is_global_zero:
            print(f"\n{'true MI':>8} {'estimate':>9} {'bias':>7}   ({type(self.reporting_bound).__name__})")
            for level, mean in rows:
                print(f"{level:8.2f} {mean:9.3f} {mean - level:+7.3f}")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        """Per pair ``(x_i, y_i)``: ``pmi = log r_hat(x_i, y_i)`` from the reporting bound (the diagonal
        of ``forward``; bounds whose PMI needs batch statistics take them from this batch), with the
        batch's ``index`` and ``label`` when present. Write it with ``applications.PMIWriter``."""
        x, y = batch["x"], batch["y"]
        if x.shape[0] < 2:
            raise ValueError(
                "predict batch: the PMI of a pair is read off the batch's score matrix, which needs at "
                f"least 2 pairs; got {x.shape[0]} (raise the datamodule's eval_batch_size)"
            )
        out = {"pmi": self(x, y).diagonal().float()}
        for key in ("index", "label"):
            if key in batch:
                out[key] = batch[key]
        return out

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


def _plain_hparams(hparams: Any, keys: tuple[str, ...]) -> None:
    """Replace classes / callables among ``hparams[keys]`` by their dotted name, so checkpoints hold
    plain data and load with ``torch.load(weights_only=True)`` (the default since torch 2.6, used by
    ``--ckpt_path`` resume). The LightningCLI already passes plain ``class_path`` dicts."""
    for key in keys:
        value = hparams.get(key)
        if value is None or isinstance(value, (str, int, float, bool, dict, list)):
            continue
        target = getattr(value, "func", value)  # functools.partial
        name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', type(target).__name__)}"
        keywords = getattr(value, "keywords", None)
        hparams[key] = name + (f"({', '.join(f'{k}={v!r}' for k, v in keywords.items())})" if keywords else "")


def _forget_unlogged_step_metrics(module: L.LightningModule) -> None:
    """Make Lightning log, for this step, only what this step logs.

    Lightning keeps a step-only metric (``on_step=True, on_epoch=False``) until the epoch ends and
    hands its *last* value to the logger at every later step, so a skipped step or a dropped
    non-finite report would show the previous step's value again in TensorBoard. Resetting those
    metrics first leaves the step without a point instead (Lightning 2.x result collection; a no-op
    if that private structure changes).
    """
    trainer = module._trainer
    results = getattr(trainer, "_results", None) if trainer is not None else None
    if not isinstance(results, dict):
        return
    for key, metric in results.items():
        meta = getattr(metric, "meta", None)
        if (isinstance(key, str) and key.startswith("training_step.") and getattr(meta, "on_step", False)
                and not getattr(meta, "on_epoch", True) and hasattr(metric, "reset")):
            metric.reset()
