"""The MI-regularised GAN on the 25-Gaussian grid: the coverage metrics on hand-made samples (VEEGAN / PacGAN
definitions), the grid's own samples, and tiny end-to-end fits (in Python, in both ways of training the MI critic, and
through the CLI with the shipped config) that log coverage against generator steps and write their figures."""

from __future__ import annotations

import csv
import functools
import math
import os

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pdlightning.applications import MIRegularizedGAN
from pdlightning.bounds import DV, EtaDV
from pdlightning.cli.main import build_cli
from pdlightning.critics import JointCritic
from pdlightning.data import GridMixtureDataModule
from pdlightning.metrics import grid_centres, mode_coverage

STD = 0.05


def test_grid_centres_are_the_5x5_grid():
    centres = grid_centres(5, 2.0)
    expected = {(float(a), float(b)) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}
    assert centres.shape == (25, 2) and {tuple(map(float, c)) for c in centres.tolist()} == expected


def test_coverage_of_hand_made_samples():
    centres = grid_centres()
    on_mode = [centres[k].repeat(30, 1) for k in range(10)]  # 10 modes with 30 exact hits each
    few = centres[10].repeat(10, 1)  # mode 10: high quality but only 10 samples
    edge = centres[11] + torch.tensor([[3 * STD, 0.0], [0.0, -3 * STD]]) * 0.999  # just inside 3 std: counted
    outside = centres[12] + torch.tensor([[3 * STD * 1.01, 0.0]])  # just beyond 3 std: not high quality
    between = centres[:20] + torch.tensor([1.0, 1.0])  # sqrt(2) from the nearest centre: far from every mode
    samples = torch.cat([*on_mode, few, edge, outside, between])
    n = samples.shape[0]
    coverage = mode_coverage(samples, centres, STD, min_count=20)
    assert coverage.modes_captured == 10  # mode 10 has 10 < 20, mode 11 has 2
    assert coverage.counts[:10].tolist() == [30] * 10 and coverage.counts[10] == 10 and coverage.counts[11] == 2
    assert coverage.counts[12:].sum() == 0
    assert coverage.high_quality_share == pytest.approx((300 + 10 + 2) / n)
    # the default threshold is a fifth of a perfect share, ceil(0.2 n / 25): 3 here, so modes 10 (and not 11) count
    default = mode_coverage(samples, centres, STD)
    assert default.min_count == math.ceil(0.2 * n / 25) == 3 and default.modes_captured == 11
    with pytest.raises(ValueError, match="std"):
        mode_coverage(samples, centres, 0.0)
    with pytest.raises(ValueError, match="min_count"):
        mode_coverage(samples, centres, STD, min_count=0)


def test_the_grids_own_samples_cover_every_mode():
    data = GridMixtureDataModule(batch_size=10000, steps=1)
    coverage = mode_coverage(data.batch_at(0)["x"], data.centres, data.std)
    # a 2-d Gaussian lies within 3 std with probability 1 - e^{-9/2}
    assert coverage.modes_captured == 25 and coverage.high_quality_share == pytest.approx(1 - math.exp(-4.5), abs=0.005)


def _gan(**kwargs) -> MIRegularizedGAN:
    options = dict(code_dim=5, noise_dim=2, generator_hidden=[16], discriminator_hidden=[16], eval_every=5)
    options.update(kwargs)
    return MIRegularizedGAN(JointCritic(2, options["code_dim"], [16]), EtaDV(), **options)


@pytest.mark.parametrize("own", [False, True], ids=["generator-optimizer", "own-optimizer"])
def test_a_tiny_fit_logs_coverage_against_generator_steps_and_writes_its_figures(tmp_path, own):
    torch.manual_seed(0)
    module = _gan(mi_optimizer=functools.partial(torch.optim.Adam, lr=1e-3) if own else None, eval_samples=500)
    before = [p.detach().clone() for p in (*module.discriminator.parameters(), *module.mi.critic.parameters())]
    logger = TensorBoardLogger(str(tmp_path), name="gan", version=0)
    trainer = L.Trainer(
        max_steps=10,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, GridMixtureDataModule(batch_size=64, steps=10))
    assert trainer.global_step == 10  # generator steps; the discriminator's are not counted
    after = [*module.discriminator.parameters(), *module.mi.critic.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # discriminator and critic both trained
    run = logger.log_dir
    with open(os.path.join(run, "mode_coverage.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["generator_step"]) for r in rows] == [0, 5, 10]
    assert all(0 <= int(r["modes_captured"]) <= 25 and 0 <= float(r["high_quality_share"]) <= 1 for r in rows)
    assert [row["generator_step"] for row in module.history] == [0.0, 5.0, 10.0]
    for name in ("samples.png", "mode_coverage.png"):
        assert os.path.getsize(os.path.join(run, name)) > 1000
    events = EventAccumulator(run, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("gan/modes_captured")] == [0, 5, 10]
    assert len(events.Images("gan/samples")) == 3
    assert {"mi/estimate", "gan/d_loss", "gan/g_loss"} <= set(events.Tags()["scalars"])


def test_the_evaluation_scores_the_generators_own_samples(tmp_path):
    """A generator that emits the mode centres themselves (weights set by hand) captures every mode."""
    module = _gan(code_dim=25, noise_dim=1, generator_hidden=[], eval_samples=2500)
    linear = module.generator[0]
    with torch.no_grad():  # G(z, c) = centres[category of c]: zero weight on the noise, the centres on the code
        linear.weight.zero_()
        linear.weight[:, 1:] = grid_centres().T
        linear.bias.zero_()
    module.trainer = L.Trainer(logger=False, accelerator="cpu", default_root_dir=str(tmp_path))
    data = GridMixtureDataModule(steps=1)
    module._datamodule = lambda: data  # type: ignore[method-assign]  # the datamodule a fit would attach
    coverage = module.evaluate_coverage(0)
    assert coverage.modes_captured == 25 and coverage.high_quality_share == 1.0


def test_bad_input_is_an_error_naming_the_parameter():
    with pytest.raises(ValueError, match="^critic: "):
        MIRegularizedGAN(JointCritic(2, 4, [8]), DV(), code_dim=5)
    with pytest.raises(ValueError, match="^code: "):
        MIRegularizedGAN(JointCritic(2, 5, [8]), DV(), code_dim=5, code="binary")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^mi_weight: "):
        MIRegularizedGAN(JointCritic(2, 5, [8]), DV(), code_dim=5, mi_weight=-1.0)
    with pytest.raises(ValueError, match="^std: "):
        GridMixtureDataModule(std=0.0)


def test_the_shipped_config_runs_through_the_cli(tmp_path):
    """``pdlightning fit -c configs/gan/grid25.yaml -c configs/mi/bounds/dv.yaml`` at a budget of 4 generator steps."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cli = build_cli(
        [
            "fit",
            "-c",
            os.path.join(repo, "configs", "gan", "grid25.yaml"),
            "-c",
            os.path.join(repo, "configs", "mi", "bounds", "dv.yaml"),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--trainer.max_steps=4",
            "--data.init_args.steps=4",
            "--model.init_args.eval_every=2",
            "--model.init_args.eval_samples=200",
        ]
    )
    assert isinstance(cli.model, MIRegularizedGAN) and type(cli.model.mi.bound).__name__ == "DV"
    assert cli.trainer.global_step == 4 and cli.trainer.logger.name == "gan/grid25/dv"
    assert [row["generator_step"] for row in cli.model.history] == [0.0, 2.0, 4.0]
    assert os.path.isfile(os.path.join(cli.trainer.logger.log_dir, "samples.png"))
