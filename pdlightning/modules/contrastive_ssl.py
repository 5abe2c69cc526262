"""Contrastive self-supervised learning with any MI / PD bound (PD paper, Sec. 5: PCC, D-RFC, CPC).

Two views ``(v1, v2)`` of one image are a joint pair; views of different images are
product-of-marginals pairs. With encoders ``F`` (for ``x = v1``) and ``G`` (for ``y = v2``, shared
with ``F`` unless ``encoder_y`` is given), optional projection heads and a critic ``T``:

    scores[i, j] = T(proj(F(v1_i)), proj_y(G(v2_j)))      (an N x N matrix over the global batch)

and the bound turns the matrix into the loss: InfoNCE gives CPC (Oord et al. 2018), the
probabilistic classifier gives PCC (PD paper Eq. 10), density-ratio fitting gives D-RFC (Eq. 11);
NWJ, SMILE, Re-X... plug in the same way. Under DDP the projected embeddings are gathered across
processes with gradients (:mod:`pdlightning.distributed`), so every row has ``N - 1`` negatives
whatever the number of devices, and the loss is exactly the single-process loss on the global batch.

An online linear probe (a linear classifier on the detached features ``F(v1)``, with its own
optimiser and its own backward, invisible to the SSL optimiser, to gradient clipping and to DDP)
tracks representation quality: ``train/probe_acc`` and ``val/probe_acc`` (on the un-augmented
``x_eval``).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from ..bounds import Bound
from ..critics import Critic
from ..distributed import all_gather_with_grad, world_size
from ..encoders.heads import linear_probe
from ..records import MemberId
from .bound_stack import StackedOutputs
from .engine import EstimationEngine, true_mi_of
from .finite import NonFinitePolicy
from .members import ResolvedMember, fragment_key_of
from .mi_estimation import matrix_to_pairs
from .optim import MemberRows

__all__ = ["ContrastiveSSLModule"]


def _average(a: Tensor, b: Tensor) -> Tensor:
    return (a + b) / 2


def _symmetric(a: StackedOutputs, b: StackedOutputs, own_estimate: bool) -> StackedOutputs:
    """The training outputs of both directions averaged; the reported values too when the bound reports its
    own value (a separate estimator reports the first direction: the average does not train it)."""
    reported = (
        (_average(a.estimate, b.estimate), _average(a.first_term, b.first_term), _average(a.second_term, b.second_term))
        if own_estimate
        else (a.estimate, a.first_term, a.second_term)
    )
    return StackedOutputs(
        _average(a.loss, b.loss),
        *reported,
        _average(a.train_first_term, b.train_first_term),
        _average(a.train_second_term, b.train_second_term),
        {k: _average(v, b.extras[k]) for k, v in a.extras.items() if k in b.extras},
        a.loss_finite & b.loss_finite,
        a.report_finite & b.report_finite if own_estimate else a.report_finite,
        None if a.train_estimate is None or b.train_estimate is None else _average(a.train_estimate, b.train_estimate),
    )


class ContrastiveSSLModule(EstimationEngine):
    """Contrastive SSL where the loss is any :class:`~pdlightning.bounds.Bound` over a critic's scores.

    Batches are dicts with ``x``, ``y`` (the two views), optionally ``label`` and ``x_eval`` (see
    :mod:`pdlightning.data.images`).

    Args:
        encoder: ``F``: view ``x`` -> representation (what linear evaluation uses).
        critic: scores ``[N, N]`` from the projected embeddings (critic-side heads: e.g. ``SeparableCritic``).
        bound: the SSL objective (``InfoNCE`` = CPC, ``ProbabilisticClassifier`` = PCC,
            ``DensityRatioFitting`` = D-RFC, or any other bound).
        encoder_y: ``G`` for view ``y``; ``None`` shares ``encoder`` (siamese). The shallow task uses two.
        projection: encoder-side head applied to ``F(x)`` before the critic (``None``: identity).
        projection_y: head for ``G(y)``; ``None`` shares ``projection``.
        estimator: reporting bound for ``ssl/mi_estimate``; ``None`` reports ``bound``'s value.
        num_classes: classes of the online linear probe; ``None`` disables it.
        feature_dim: representation size for the probe; default ``encoder.output_dim``.
        symmetric: also score ``y -> x`` (the transposed matrix) and average both losses (SimCLR style).
        gather_negatives: under DDP, gather embeddings so negatives span the global batch.
        optimizer: SSL optimiser factory (encoders, heads, critic, bound parameters).
        scheduler: optional LR scheduler factory for the SSL optimiser, stepped every step.
        probe_optimizer: the probe's own optimiser factory.
        non_finite: ``"raise"`` (stop with a diagnosis) or ``"skip"`` (skip the step, log
            ``guard/skipped_steps``) on a non-finite loss or gradient; see :mod:`.finite`.
        max_consecutive_skips: under ``"skip"``, this many skipped steps in a row stop the run.
    """

    def __init__(
        self,
        encoder: nn.Module,
        critic: Critic,
        bound: Bound,
        encoder_y: Optional[nn.Module] = None,
        projection: Optional[nn.Module] = None,
        projection_y: Optional[nn.Module] = None,
        estimator: Optional[Bound] = None,
        num_classes: Optional[int] = 10,
        feature_dim: Optional[int] = None,
        symmetric: bool = False,
        gather_negatives: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: Optional[LRSchedulerCallable] = None,
        probe_optimizer: OptimizerCallable = torch.optim.Adam,
        non_finite: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
    ) -> None:
        super().__init__(optimizer, scheduler, non_finite, max_consecutive_skips)
        if not isinstance(bound, Bound):
            raise ValueError(f"bound: expected a Bound, got {type(bound).__name__}")
        if estimator is not None and not isinstance(estimator, Bound):
            raise ValueError(f"estimator: expected a Bound or None, got {type(estimator).__name__}")
        member = MemberId(fragment_key_of(bound, estimator), torch.initial_seed())
        self.setup_members([ResolvedMember(member, bound, estimator, None, None, None, True)])
        self.encoder = encoder
        self.encoder_y = encoder_y
        self.projection = projection
        self.projection_y = projection_y
        self.critic = critic
        self.symmetric = symmetric
        self.gather_negatives = gather_negatives
        self.probe_optimizer_factory = probe_optimizer
        self.probe: Optional[nn.Module] = None
        if num_classes is not None:
            if not (isinstance(num_classes, int) and num_classes >= 2):
                raise ValueError(f"num_classes: expected None or an integer >= 2, got {num_classes!r}")
            feature_dim = feature_dim or getattr(encoder, "output_dim", None)
            if not (isinstance(feature_dim, int) and feature_dim > 0):
                raise ValueError(
                    f"feature_dim: the probe needs the representation size; {type(encoder).__name__} has no "
                    f"`output_dim`, so pass feature_dim"
                )
            self.probe = linear_probe(feature_dim, num_classes)
            self.val_probe_acc = MulticlassAccuracy(num_classes, average="micro")
            # The probe trains with its own optimiser and backward: keep DDP's reducer away from it
            # (its gradients are averaged across processes by hand, see _probe_step).
            self._ddp_params_and_buffers_to_ignore = [f"probe.{n}" for n, _ in self.probe.named_parameters()] + [
                f"probe.{n}" for n, _ in self.probe.named_buffers()
            ]
        self._probe_optimizer: Optional[torch.optim.Optimizer] = None
        self._pending_probe_state: Optional[dict] = None

    # ----------------------------------------------------------------------------------- scoring
    def features(self, x: Tensor) -> Tensor:
        """The representation ``F(x)`` that linear evaluation uses."""
        return self.encoder(x)

    def embed(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(F(x), z_x, z_y)``: the representation of ``x`` and both projected embeddings (local batch)."""
        hx = self.encoder(x)
        hy = (self.encoder_y or self.encoder)(y)
        projection_y = self.projection_y or self.projection
        zx = hx if self.projection is None else self.projection(hx)
        zy = hy if projection_y is None else projection_y(hy)
        return hx, zx, zy

    def score_matrix(self, zx: Tensor, zy: Tensor) -> Tensor:
        """``[N, N]`` critic scores over the global batch (local ``[n, n]`` without DDP or gathering).

        Embeddings are gathered in float32 (autocast may have produced half precision)."""
        if self.gather_negatives and world_size() > 1:
            zx, zy = all_gather_with_grad(zx.float()), all_gather_with_grad(zy.float())
        return self.critic(zx, zy)

    def contrastive_outputs(self, scores: Tensor) -> StackedOutputs:
        """The bound(s) on the ``[N, N]`` score matrix (the one member's, stacked ``[1]``); with ``symmetric``,
        the training outputs average both directions."""
        outputs = self.bounds(*matrix_to_pairs(scores.unsqueeze(0)))
        if not self.symmetric:
            return outputs
        reverse = self.bounds(*matrix_to_pairs(scores.T.unsqueeze(0)))
        return _symmetric(outputs, reverse, own_estimate=not self.bounds.has_estimator[0])

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Pointwise log-dependency ``log r(x_i, y_j)`` of the reporting bound, ``[n, n]``."""
        _, zx, zy = self.embed(x, y)
        scores = self.critic(zx, zy)
        joint, marginal = self.bounds.pmi(*matrix_to_pairs(scores.unsqueeze(0)))
        n = scores.shape[0]
        matrix = torch.empty_like(scores, dtype=torch.float32)
        matrix.diagonal().copy_(joint[0])
        matrix.flatten()[1:].view(n - 1, n + 1)[:, :-1].copy_(marginal[0].reshape(n - 1, n))
        return matrix

    def build_member_rows(self) -> MemberRows:
        """Every parameter the SSL optimiser trains belongs to the one member."""
        member = torch.tensor(0, device=self.lr_scale.device)
        rows: MemberRows = {p: member for p in self.optimized_parameters() if p.requires_grad}
        rows.update(self._bound_rows())
        return rows

    # ---------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        hx, zx, zy = self.embed(batch["x"], batch["y"])
        scores = self.score_matrix(zx, zy).float()  # the bounds compute in float32 under autocast
        joint, marginal = matrix_to_pairs(scores.unsqueeze(0))
        result = self.finish_step(
            joint,
            marginal,
            batch,
            true_mi_of(batch),
            estimate_tag="ssl/mi_estimate",
            extra_metrics={"train/negatives_per_row": float(scores.shape[0] - 1)},
            outputs=self.contrastive_outputs(scores),
        )
        if self.probe is not None and "label" in batch:
            n_local = batch["x"].shape[0]
            self._probe_step(hx.detach(), batch["label"], dict(on_step=True, on_epoch=False, batch_size=n_local))
        return result

    def _probe_step(self, features: Tensor, labels: Tensor, log: dict[str, Any]) -> None:
        """One step of the online probe: float32, autocast off, its own backward and optimiser."""
        assert self.probe is not None
        if self._probe_optimizer is None:
            raise RuntimeError("the probe optimiser is created in configure_optimizers (run under a Trainer)")
        with torch.enable_grad(), torch.autocast(device_type=features.device.type, enabled=False):
            logits = self.probe(features.float())
            loss = F.cross_entropy(logits, labels)
        self._probe_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if world_size() > 1:
            for parameter in self.probe.parameters():
                if parameter.grad is not None:
                    torch.distributed.all_reduce(parameter.grad)
                    parameter.grad /= world_size()
        self._probe_optimizer.step()
        self.log("train/probe_loss", loss.detach(), **log)
        self.log("train/probe_acc", (logits.argmax(-1) == labels).float().mean(), **log)

    # ------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        n_local = batch["x"].shape[0]
        if n_local >= 2:
            _, zx, zy = self.embed(batch["x"], batch["y"])
            outputs = self.contrastive_outputs(self.score_matrix(zx, zy))
            self.log(f"{stage}/loss", outputs.loss[0], batch_size=n_local, sync_dist=True)
            self.log(f"{stage}/mi_estimate", outputs.estimate[0], batch_size=n_local, sync_dist=True)
        if self.probe is not None and "label" in batch:
            features = self.features(batch.get("x_eval", batch["x"]))
            with torch.autocast(device_type=features.device.type, enabled=False):
                logits = self.probe(features.float())
            self.val_probe_acc(logits, batch["label"])
            self.log(f"{stage}/probe_acc", self.val_probe_acc, batch_size=n_local, prog_bar=stage == "val")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # -------------------------------------------------------------------------------- optimisers
    def optimized_parameters(self) -> list[nn.Parameter]:
        """Everything but the online probe, which has its own optimiser."""
        probe_ids = {id(p) for p in self.probe.parameters()} if self.probe is not None else set()
        return [p for p in self.parameters() if id(p) not in probe_ids]

    def configure_optimizers(self) -> Any:
        if self.probe is not None:
            self._probe_optimizer = self.probe_optimizer_factory(self.probe.parameters())
            if self._pending_probe_state is not None:
                self._probe_optimizer.load_state_dict(self._pending_probe_state)
                self._pending_probe_state = None
        return super().configure_optimizers()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._probe_optimizer is not None:
            checkpoint["probe_optimizer"] = self._probe_optimizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self._pending_probe_state = checkpoint.get("probe_optimizer")
