"""The MI-regularised conditional GAN on the 25-Gaussian grid (Mroueh et al., "Improved Mutual Information
Estimation", AAAI 2021, Sec. 5 and Fig. 3 right; after Belghazi et al., "MINE", ICML 2018, Sec. 5.1, and InfoGAN,
Chen et al. 2016).

The generator ``G`` maps noise ``z ~ N(0, I)`` and a code ``c`` to a point; as in InfoGAN it is trained to fool the
discriminator *and* to keep its output informative about the code, by maximising ``I(G(z, c); c)``, estimated by a
bound over a critic (:class:`~pdlightning.losses.MILoss`)::

    D:  min  BCE(D(x_real), 1) + BCE(D(G(z, c)), 0)
    G:  min  BCE(D(G(z, c)), 1) - β · Î(G(z, c); c)        (non-saturating generator loss)

A collapsed generator's output carries no information about ``c``, so the MI term pushes the codes apart. The bound
is any fragment of ``configs/mi/bounds/`` (η-DV is η-MINE, DV / MINE is DV-MINE), so the paper's comparison is one
command per bound. Each batch takes one discriminator step, then one generator step (with the critic: through the
generator's optimiser, or its own with ``mi_optimizer``). ``trainer.global_step`` counts generator steps: the
discriminator's step goes through the strategy (precision, AMP) but is not counted.

Every ``eval_every`` generator steps (and at the end) ``eval_samples`` samples, drawn with a fixed seed, are scored
by :func:`~pdlightning.metrics.modes.mode_coverage` against the data's modes (high quality: within 3 standard
deviations of the nearest centre; a mode is captured with at least a fifth of its expected share of high-quality
samples): logged as ``gan/modes_captured`` and ``gan/high_quality_share``, written with the generator step to
``<run>/mode_coverage.csv``, and drawn (samples over the centres) to TensorBoard (``gan/samples``); the end of the fit
writes ``<run>/samples.png`` and ``<run>/mode_coverage.png`` (modes and share against generator steps).
"""

from __future__ import annotations

import csv
import os
from typing import Any, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from matplotlib.figure import Figure
from torch import Tensor

from ..bounds import Bound
from ..critics import Critic
from ..losses import MILoss
from ..metrics.modes import ModeCoverage, mode_coverage
from ..modules.base import ConfiguredModule
from ..modules.finite import NonFinitePolicy
from ..nn import mlp

__all__ = ["MIRegularizedGAN", "samples_figure", "coverage_figure"]

Code = Literal["categorical", "uniform", "gaussian"]


def samples_figure(samples: Tensor, centres: Tensor, codes: Optional[Tensor] = None, title: str = "") -> Figure:
    """Generated samples (coloured by categorical code when given) over the mixture's centres."""
    figure = Figure(figsize=(5, 5), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    points = samples.detach().cpu().numpy()
    colour = None if codes is None else codes.detach().cpu().numpy()
    ax.scatter(points[:, 0], points[:, 1], s=2, c=colour, cmap="tab20" if colour is not None else None, alpha=0.6)
    grid = centres.cpu().numpy()
    ax.scatter(grid[:, 0], grid[:, 1], s=30, marker="x", color="black", linewidths=1, label="mode centres")
    span = float(abs(grid).max()) + 2.0
    ax.set(xlim=(-span, span), ylim=(-span, span), aspect="equal", title=title)
    ax.legend(loc="upper right", fontsize=7)
    return figure


def coverage_figure(rows: Sequence[dict[str, float]], num_modes: int) -> Figure:
    """Modes captured and the share of high-quality samples against generator steps."""
    figure = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    left, right = figure.subplots(1, 2)
    steps = [row["generator_step"] for row in rows]
    left.plot(steps, [row["modes_captured"] for row in rows], marker=".")
    left.axhline(num_modes, color="grey", linestyle="--", linewidth=0.8)
    left.set(xlabel="generator steps", ylabel="modes captured", ylim=(0, num_modes + 1))
    right.plot(steps, [row["high_quality_share"] for row in rows], marker=".", color="tab:green")
    right.set(xlabel="generator steps", ylabel="high-quality share", ylim=(0, 1.02))
    return figure


class MIRegularizedGAN(ConfiguredModule):
    """A conditional GAN whose generator maximises ``I(G(z, c); c)`` (see the module docstring).

    Args:
        critic: the MI critic over ``(G(z, c), c)``: ``x_dim`` = the data's dimension (2), ``y_dim`` = ``code_dim``.
        bound: the MI bound (``EtaDV`` for η-MINE, ``DV`` / ``MINE`` for DV-MINE, ...).
        mi_weight: ``β``, the weight of the MI term in the generator's loss (0: the unregularised GAN).
        code: ``categorical`` (one-hot of ``code_dim`` categories, InfoGAN's discrete code), ``uniform`` (on
            ``[-1, 1]^code_dim``) or ``gaussian``.
        code_dim: size of the code.
        noise_dim: size of the generator's noise ``z``.
        data_dim: dimension of the data (2 for the grid).
        generator_hidden, discriminator_hidden: hidden widths of the two MLPs (ReLU, then LeakyReLU(0.2) for ``D``).
        optimizer: the generator's optimiser factory (it also trains the critic unless ``mi_optimizer`` is given).
        discriminator_optimizer: the discriminator's optimiser factory.
        mi_optimizer: the critic's own optimiser (see :class:`~pdlightning.losses.MILoss`); ``None``: the generator's.
        negatives: the MI term's marginal pairs: ``shuffle`` (one ``(G(z_i, c_i), c_j)`` per sample, as MINE's and
            η-MINE's Algorithm 1 draw them; ``n`` critic evaluations) or ``in_batch`` (all ``n²`` pairs).
        eval_every: generator steps between two coverage evaluations.
        eval_samples: samples per evaluation (2,500 in VEEGAN / PacGAN).
        eval_seed: seed of the evaluation's noise and codes (the same draws at every evaluation).
        non_finite: the MI term's non-finite policy (``"raise"`` or ``"skip"``, :class:`MILoss`).
    """

    def __init__(
        self,
        critic: Critic,
        bound: Bound,
        mi_weight: float = 1.0,
        code: Code = "categorical",
        code_dim: int = 25,
        noise_dim: int = 2,
        data_dim: int = 2,
        generator_hidden: Sequence[int] = (128, 128),
        discriminator_hidden: Sequence[int] = (128, 128),
        optimizer: OptimizerCallable = torch.optim.Adam,
        discriminator_optimizer: OptimizerCallable = torch.optim.Adam,
        mi_optimizer: Optional[OptimizerCallable] = None,
        negatives: Literal["shuffle", "in_batch"] = "shuffle",
        eval_every: int = 500,
        eval_samples: int = 2500,
        eval_seed: int = 0,
        non_finite: NonFinitePolicy = "raise",
    ) -> None:
        super().__init__(optimizer)
        if code not in ("categorical", "uniform", "gaussian"):
            raise ValueError(f"code: expected 'categorical', 'uniform' or 'gaussian', got {code!r}")
        for name, value in (
            ("code_dim", code_dim),
            ("noise_dim", noise_dim),
            ("data_dim", data_dim),
            ("eval_every", eval_every),
            ("eval_samples", eval_samples),
        ):
            if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not mi_weight >= 0:
            raise ValueError(f"mi_weight: expected a weight >= 0, got {mi_weight!r}")
        if (critic.x_dim, critic.y_dim) != (data_dim, code_dim):
            raise ValueError(
                f"critic: the MI critic scores (G(z, c), c), so it needs x_dim=data_dim={data_dim} and "
                f"y_dim=code_dim={code_dim}, got x_dim={critic.x_dim}, y_dim={critic.y_dim}"
            )
        self.code, self.code_dim, self.noise_dim, self.mi_weight = code, code_dim, noise_dim, float(mi_weight)
        self.generator = mlp(noise_dim + code_dim, generator_hidden, data_dim, "relu")
        self.discriminator = mlp(data_dim, discriminator_hidden, 1, "leaky_relu")
        self.mi = MILoss(critic, bound, optimizer=mi_optimizer, negatives=negatives, non_finite=non_finite)
        self.discriminator_optimizer_factory = discriminator_optimizer
        self.eval_every, self.eval_samples, self.eval_seed = eval_every, eval_samples, eval_seed
        self.automatic_optimization = False
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------------------ sampling
    def latent(self, n: int, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """``(z, c, category)``: noise, code (one-hot for a categorical code) and the category index (or None)."""
        device = self.device if generator is None else torch.device("cpu")
        z = torch.randn(n, self.noise_dim, generator=generator, device=device)
        category = None
        if self.code == "categorical":
            category = torch.randint(self.code_dim, (n,), generator=generator, device=device)
            c = F.one_hot(category, self.code_dim).float()
        elif self.code == "uniform":
            c = 2 * torch.rand(n, self.code_dim, generator=generator, device=device) - 1
        else:
            c = torch.randn(n, self.code_dim, generator=generator, device=device)
        return z.to(self.device), c.to(self.device), None if category is None else category.to(self.device)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        """``G(z, c)``."""
        return self.generator(torch.cat([z, c], dim=1))

    # ----------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        optimizers = self.optimizers()
        assert isinstance(optimizers, list)  # configure_optimizers returns two
        generator_optimizer, discriminator_optimizer = optimizers
        real = batch["x"]
        n = real.shape[0]
        z, c, _ = self.latent(n)
        fake = self(z, c)

        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake.detach())
        d_loss = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        discriminator_optimizer.zero_grad()
        self.manual_backward(d_loss)
        # through the strategy (precision plugin), but not counted: global_step counts generator steps
        self.trainer.strategy.optimizer_step(discriminator_optimizer.optimizer, closure=lambda: None, model=self)

        logits = self.discriminator(fake)
        g_adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        g_loss = g_adv
        metrics = {"gan/d_loss": d_loss.detach(), "gan/g_adv_loss": g_adv.detach()}
        if self.mi_weight > 0:
            term = self.mi(fake, c)
            if term is not None:
                g_loss = g_adv + self.mi_weight * term.loss
                metrics["mi/estimate"] = term.mi
        generator_optimizer.zero_grad()
        self.manual_backward(g_loss)
        generator_optimizer.step()
        metrics["gan/g_loss"] = g_loss.detach()
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=n, prog_bar=False)
        if self.global_step % self.eval_every == 0:
            self.evaluate_coverage(self.global_step)

    def on_train_start(self) -> None:
        if not self.history:
            self.evaluate_coverage(self.global_step)  # the untrained generator: step 0

    def on_train_end(self) -> None:
        if not self.history or self.history[-1]["generator_step"] != self.global_step:
            self.evaluate_coverage(self.global_step)
        directory = self._run_directory()
        if directory is None or not self.trainer.is_global_zero:
            return
        samples, categories = self._evaluation_samples()
        samples_figure(samples, self._centres(), categories, f"{self.global_step} generator steps").savefig(
            os.path.join(directory, "samples.png")
        )
        coverage_figure(self.history, self._centres().shape[0]).savefig(os.path.join(directory, "mode_coverage.png"))

    # ---------------------------------------------------------------------------------- evaluation
    def _datamodule(self) -> Any:
        return getattr(self._trainer, "datamodule", None)

    def _centres(self) -> Tensor:
        centres = getattr(self._datamodule(), "centres", None)
        if not isinstance(centres, Tensor):
            raise ValueError("data: the MI-regularised GAN needs a datamodule with mode `centres` and `std`")
        return centres

    def _std(self) -> float:
        std = getattr(self._datamodule(), "std", None)
        if not isinstance(std, (int, float)):
            raise ValueError("data: the MI-regularised GAN needs a datamodule with mode `centres` and `std`")
        return float(std)

    @torch.no_grad()
    def _evaluation_samples(self) -> tuple[Tensor, Optional[Tensor]]:
        z, c, category = self.latent(self.eval_samples, torch.Generator().manual_seed(self.eval_seed))
        return self(z, c).float().cpu(), None if category is None else category.cpu()

    def evaluate_coverage(self, generator_step: int) -> ModeCoverage:
        """Score ``eval_samples`` fixed-seed samples (see the module docstring); log, record and draw them."""
        samples, categories = self._evaluation_samples()
        coverage = mode_coverage(samples, self._centres(), self._std())
        row = {
            "generator_step": float(generator_step),
            "modes_captured": float(coverage.modes_captured),
            "high_quality_share": coverage.high_quality_share,
        }
        self.history.append(row)
        for logger in self.loggers:  # at the generator step itself (also from on_train_start / on_train_end)
            logger.log_metrics(
                {"gan/modes_captured": row["modes_captured"], "gan/high_quality_share": row["high_quality_share"]},
                step=generator_step,
            )
        directory = self._run_directory()
        if directory is not None and self.trainer.is_global_zero:
            path = os.path.join(directory, "mode_coverage.csv")
            fresh = not os.path.exists(path) or generator_step == 0
            with open(path, "w" if fresh else "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row))
                if fresh:
                    writer.writeheader()
                writer.writerow({k: (int(v) if k != "high_quality_share" else v) for k, v in row.items()})
        experiment = getattr(self.logger, "experiment", None) if self._trainer is not None else None
        if experiment is not None and hasattr(experiment, "add_figure"):
            share = f"{coverage.high_quality_share:.0%}"
            title = f"{generator_step} generator steps: {coverage.modes_captured} modes, {share} high quality"
            figure = samples_figure(samples, self._centres(), categories, title)
            experiment.add_figure("gan/samples", figure, generator_step)
        return coverage

    def _run_directory(self) -> Optional[str]:
        if self._trainer is None:
            return None
        directory = self.trainer.log_dir or self.trainer.default_root_dir
        if directory:
            os.makedirs(directory, exist_ok=True)
        return directory

    # ---------------------------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        """The generator's optimiser (with the critic and the bound's parameters, unless they have their own) and the
        discriminator's."""
        generator_parameters = list(self.generator.parameters())
        if not self.mi.own_optimizer:
            generator_parameters += list(self.mi.parameters())
        return [
            self.optimizer_factory(generator_parameters),
            self.discriminator_optimizer_factory(self.discriminator.parameters()),
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mode_coverage_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.history = list(checkpoint.get("mode_coverage_history", []))
