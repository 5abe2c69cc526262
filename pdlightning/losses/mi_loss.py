"""MI as a term of any model's loss: a bound and its critic as one ``nn.Module``.

The η-MINE paper uses its estimator inside other models: an MI-regularised conditional GAN that maximises
``I(G(z, c); c)`` and Deep InfoMax, an encoder trained to maximise the MI between two of its layers (Mroueh et al.,
"Improved Mutual Information Estimation", AAAI 2021, Sec. 5; after Belghazi et al. 2018 and Hjelm et al. 2019).
:class:`MILoss` packages what that needs::

    class MyModel(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = ...
            self.mi = MILoss(JointCritic(8, 4, [64, 64]), EtaDV())      # one optimiser: the host's

        def training_step(self, batch, batch_idx):
            h = self.net(batch["x"])
            mi_term = self.mi(h, batch["c"])                            # a BoundOutput
            self.log("mi", mi_term.mi)
            return task_loss(h, batch) + 0.5 * mi_term.loss             # + loss maximises the MI

Two ways to train the critic (and a bound's own parameters, such as η-DV's ``η``):

- **the host's optimiser** (``optimizer=None``, default): the returned ``loss`` carries gradients to the critic and
  to ``x`` and ``y``; the host's optimiser holds the critic (it is a submodule) and one backward step moves all of
  them up the bound. Right for *maximising* MI, where critic and model climb the same objective.
- **its own optimiser** (``optimizer=`` a factory, e.g. ``functools.partial(torch.optim.Adam, lr=1e-4)``): in training
  mode every call first takes ``critic_steps`` steps of that optimiser on the critic, on the detached pairs (as
  η-MINE's Algorithm 1 takes ``n_c`` critic steps per outer step), then returns the bound of the updated critic
  with gradients to ``x`` and ``y`` only. Right for a critic with its own learning rate, and required to *minimise*
  MI (the host then *subtracts* ``loss``: the critic must still climb the bound while the model descends it). No
  Lightning manual optimisation is needed: the critic's step is made inside the call (its gradients are set back to
  ``None`` afterwards, so a host optimiser that also holds the critic leaves it alone). Under DDP the critic's
  gradients are averaged across processes. The optimiser's state is saved with the module's ``state_dict``.

The non-finite guard is the package's :class:`~.guard.LossGuard`: under
``non_finite="raise"`` a non-finite bound or critic gradient stops the run with a message naming the bound, terms and
step; under ``"skip"`` the critic step is skipped and the call returns ``None`` (leave the term out of that step's
loss), and ``max_consecutive_skips`` skips in a row stop the run as diverged.

Marginal pairs: explicit ones when given (``x_marginal``, ``y_marginal``, one per row, as :mod:`pdlightning.data.batch`
defines them); otherwise ``negatives="in_batch"`` scores every pair of the batch (``T(x_i, y_j)``, ``i != j``: ``n²``
critic evaluations, needed by InfoNCE) and ``negatives="shuffle"`` one pair per row, ``(x_σ(i), y_σ(i+1))`` for a
fresh random permutation ``σ`` (never a joint pair; ``n`` evaluations: MINE's and η-MINE's Algorithm 1 draw their
marginal minibatch this way). The shuffle is drawn from torch's global generator (seeded by ``seed_everything``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal, Optional

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from ..bounds import Bound, BoundOutput, PairScores
from ..critics import Critic
from ..distributed import world_size
from ..modules.finite import NonFinitePolicy
from .guard import LossGuard

__all__ = ["MILoss"]


class MILoss(nn.Module):
    """A bound over a critic's scores, callable on a batch of pairs: ``mi_term = self.mi(x, y)``.

    Args:
        critic: scores ``T(x, y)``; its ``x_dim`` / ``y_dim`` must be the features of ``x`` and ``y`` per sample.
        bound: any :class:`~pdlightning.bounds.Bound` (``EtaDV``, ``DV``, ``NWJ``, ``InfoNCE``...).
        optimizer: ``None``: the host's optimiser trains the critic through the returned loss; a factory
            (``params -> Optimizer``): the critic's own optimiser, stepped inside each training call.
        critic_steps: own-optimiser steps per training call (η-MINE's ``n_c``).
        non_finite: ``"raise"`` or ``"skip"`` (see the module docstring).
        max_consecutive_skips: under ``"skip"``, this many skipped calls in a row stop the run.
    """

    def __init__(
        self,
        critic: Critic,
        bound: Bound,
        optimizer: Optional[OptimizerCallable] = None,
        critic_steps: int = 1,
        negatives: Literal["in_batch", "shuffle"] = "in_batch",
        non_finite: NonFinitePolicy = "raise",
        max_consecutive_skips: int = 20,
    ) -> None:
        super().__init__()
        if negatives not in ("in_batch", "shuffle"):
            raise ValueError(f"negatives: expected 'in_batch' or 'shuffle', got {negatives!r}")
        if not isinstance(critic, Critic):
            raise ValueError(f"critic: expected a pdlightning Critic, got {type(critic).__name__}")
        if not isinstance(bound, Bound):
            raise ValueError(f"bound: expected a pdlightning Bound, got {type(bound).__name__}")
        if isinstance(critic_steps, bool) or not (isinstance(critic_steps, int) and critic_steps >= 1):
            raise ValueError(f"critic_steps: expected an integer >= 1, got {critic_steps!r}")
        if optimizer is None and critic_steps != 1:
            raise ValueError("critic_steps: extra critic steps need the critic's own optimizer (pass optimizer=)")
        self.critic, self.bound = critic, bound
        self.optimizer_factory, self.critic_steps, self.negatives = optimizer, critic_steps, negatives
        self.guard = LossGuard(non_finite, max_consecutive_skips=max_consecutive_skips)
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._pending_optimizer_state: Optional[dict[str, Any]] = None
        self.calls = 0

    @property
    def own_optimizer(self) -> bool:
        """Whether the critic is stepped by its own optimiser inside each training call."""
        return self.optimizer_factory is not None

    # ----------------------------------------------------------------------------------- scoring
    def _check_dims(self, x: Tensor, y: Tensor, suffix: str = "") -> None:
        for side, value, expected in (("x", x, self.critic.x_dim), ("y", y, self.critic.y_dim)):
            got = value.reshape(value.shape[0], -1).shape[1] if value.dim() >= 2 else None
            if got != expected:
                found = f"{got} features per sample" if got is not None else "no feature dimension"
                raise ValueError(
                    f"critic: {type(self.critic).__name__} expects {side}_dim={expected} features per sample of "
                    f"{side}{suffix}, but {side} has shape {tuple(value.shape)} ({found}); build the critic with the "
                    f"{side}_dim of the tensors you pass"
                )

    def scores(
        self, x: Tensor, y: Tensor, x_marginal: Optional[Tensor] = None, y_marginal: Optional[Tensor] = None
    ) -> PairScores:
        """The critic's scores of the joint pairs and of the marginal pairs (explicit, or the batch's off-diagonal)."""
        self._check_dims(x, y)
        if (x_marginal is None) != (y_marginal is None):
            raise ValueError("x_marginal and y_marginal: pass both explicit marginal pairs, or neither")
        if x_marginal is not None and y_marginal is not None:
            self._check_dims(x_marginal, y_marginal, " (marginal pairs)")
            return PairScores.from_pairs(self.critic.pointwise(x, y), self.critic.pointwise(x_marginal, y_marginal))
        if self.negatives == "shuffle":
            if x.shape[0] < 2:
                raise ValueError(f"x: shuffled marginal pairs need at least 2 pairs, got {x.shape[0]}")
            order = torch.randperm(x.shape[0], device=x.device)
            marginal = self.critic.pointwise(x[order], y[order.roll(-1)])
            return PairScores.from_pairs(self.critic.pointwise(x, y), marginal)
        return PairScores.from_matrix(self.critic(x, y))

    def forward(
        self, x: Tensor, y: Tensor, x_marginal: Optional[Tensor] = None, y_marginal: Optional[Tensor] = None
    ) -> Optional[BoundOutput]:
        """The bound's output on the pairs ``(x_i, y_i)``: ``loss`` (minimise it to maximise the MI), ``mi``
        (the detached estimate, nats), its terms and extras. With its own optimiser and in training mode the critic
        is first stepped on the detached pairs. ``None`` only under ``non_finite="skip"``, for a non-finite term."""
        self.calls += 1
        training = self.training and torch.is_grad_enabled()
        if training and self.own_optimizer:
            xm = None if x_marginal is None else x_marginal.detach()
            ym = None if y_marginal is None else y_marginal.detach()
            for _ in range(self.critic_steps):
                self._critic_step(x.detach(), y.detach(), xm, ym)
        context = self._frozen() if self.own_optimizer else contextlib.nullcontext()
        with context:
            output = self.bound(self.scores(x, y, x_marginal, y_marginal))
        # own optimiser: the critic step on the same pairs counted a skipped step already
        bad = self.guard.check(output, self.bound, "MILoss", self.calls, count=training and not self.own_optimizer)
        if bad and "loss" in bad:
            return None
        if training and not self.own_optimizer:
            self.guard.count_completed_step()
        return output

    # ------------------------------------------------------------------------- own optimiser
    @contextlib.contextmanager
    def _frozen(self) -> Iterator[None]:
        """No gradient to the critic's (and bound's) parameters: the host's loss reaches ``x`` and ``y`` only."""
        flags = [(p, p.requires_grad) for p in self.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)

    def optimizer(self) -> torch.optim.Optimizer:
        """The critic's own optimiser (made at the first training call, on the device the module is on then)."""
        if self.optimizer_factory is None:
            raise RuntimeError("MILoss: no own optimizer (optimizer=None: the host's optimiser trains the critic)")
        if self._optimizer is None:
            self._optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
            if self._pending_optimizer_state is not None:
                self._optimizer.load_state_dict(self._pending_optimizer_state)
                self._pending_optimizer_state = None
        return self._optimizer

    def _critic_step(self, x: Tensor, y: Tensor, x_marginal: Optional[Tensor], y_marginal: Optional[Tensor]) -> None:
        optimizer = self.optimizer()
        with torch.enable_grad():
            output = self.bound(self.scores(x, y, x_marginal, y_marginal))
        if "loss" in self.guard.check(output, self.bound, "MILoss critic step", self.calls):
            return  # skipped and counted (non_finite="skip"; "raise" has raised)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        if world_size() > 1:
            for parameter in self.parameters():
                if parameter.grad is not None:
                    torch.distributed.all_reduce(parameter.grad)
                    parameter.grad /= world_size()
        if self.guard.check_gradients(self, self.calls):
            optimizer.step()
            self.guard.count_completed_step()
        optimizer.zero_grad(set_to_none=True)  # a host optimiser holding these parameters sees no gradient

    # ------------------------------------------------------------------------------ checkpoint
    def get_extra_state(self) -> dict[str, Any]:
        """Saved with ``state_dict``: the own optimiser's state, the guard's counters and the call count."""
        optimizer_state = self._optimizer.state_dict() if self._optimizer is not None else self._pending_optimizer_state
        return {"optimizer": optimizer_state, "guard": self.guard.state_dict(), "calls": self.calls}

    def set_extra_state(self, state: Any) -> None:
        state = state or {}
        self.guard.load_state_dict(state.get("guard"))
        self.calls = int(state.get("calls", 0))
        optimizer_state = state.get("optimizer")
        if optimizer_state is not None and self.own_optimizer:
            if self._optimizer is not None:
                self._optimizer.load_state_dict(optimizer_state)
            else:
                self._pending_optimizer_state = optimizer_state

    def extra_repr(self) -> str:
        mode = f"own optimizer, critic_steps={self.critic_steps}" if self.own_optimizer else "host optimizer"
        return f"{mode}, negatives={self.negatives!r}, non_finite={self.guard.policy!r}"
