"""KL(P || Q) as an MI task: the samplers draw what their densities say, the true KL is right (closed form and
Monte Carlo agree), batches follow the MI batch contract with P as joint and Q as marginal pairs, a sample set keeps
its held-out rows out of training, the shipped configs estimate a closed-form KL through the CLI, and mismatched
dimensions are an error naming the parameter."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.stats
import torch

from pdlightning.cli.main import build_cli
from pdlightning.data import (
    DivergenceDataModule,
    FunctionSampler,
    GaussianSampler,
    SampleSet,
    StudentTSampler,
    check_mi_batch,
    kl_divergence,
)
from pdlightning.data.synthetic import SubStream

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KL_CONFIGS = os.path.join(REPO, "configs", "kl")


def test_student_t_density_and_draws_match_scipy():
    sampler = StudentTSampler(3.0, [0.5, -1.0], [[2.0, 0.3], [0.3, 1.0]])
    z = sampler.sample(4000, torch.Generator().manual_seed(0))
    expected = scipy.stats.multivariate_t(loc=[0.5, -1.0], shape=[[2.0, 0.3], [0.3, 1.0]], df=3.0).logpdf(z.numpy())
    np.testing.assert_allclose(sampler.log_prob(z).numpy(), expected, rtol=1e-6, atol=1e-6)
    one = StudentTSampler(2.5, [1.0])  # the draws follow the density: Kolmogorov-Smirnov against scipy's t
    draws = one.sample(4000, torch.Generator().manual_seed(1)).squeeze(1).numpy()
    assert scipy.stats.kstest(draws, scipy.stats.t(df=2.5, loc=1.0).cdf).pvalue > 1e-3
    gaussian = GaussianSampler([1.0, 2.0], [[1.0, 0.8], [0.8, 1.0]])
    g = gaussian.sample(20000, torch.Generator().manual_seed(2)).double()
    torch.testing.assert_close(
        torch.cov(g.T), torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64), atol=0.03, rtol=0
    )


def test_the_closed_form_kl_and_the_monte_carlo_kl_agree():
    p = GaussianSampler([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]])
    q = GaussianSampler([1.0, -0.5], [[2.0, 0.0], [0.0, 1.0]])
    closed = kl_divergence(p, q)
    # by hand: 1/2 [tr(Σq⁻¹Σp) + Δμᵀ Σq⁻¹ Δμ - d + log det Σq - log det Σp]
    by_hand = 0.5 * ((0.5 + 1.0) + (1.0 / 2 + 0.25) - 2 + math.log(2.0) - math.log(0.75))
    assert closed is not None and closed.stderr == 0 and closed.value == pytest.approx(by_hand, rel=1e-12)
    # the same pair through the Monte Carlo path (samplers that are not recognised as Gaussians)
    p_any = FunctionSampler(lambda n, g: p.sample(n, g), 2, log_prob=p.log_prob)
    q_any = FunctionSampler(lambda n, g: q.sample(n, g), 2, log_prob=q.log_prob)
    mc = kl_divergence(p_any, q_any, mc_samples=200_000)
    assert mc is not None and 0 < mc.stderr < 0.01
    assert abs(mc.value - closed.value) < 4 * mc.stderr
    assert kl_divergence(p_any, FunctionSampler(lambda n, g: q.sample(n, g), 2)) is None  # density unknown


def test_batches_carry_p_as_joint_and_q_as_marginal_pairs():
    p, q = GaussianSampler([0.0, 0.0]), GaussianSampler([3.0, 3.0])
    data = DivergenceDataModule(p, q, batch_size=64, steps=4)
    assert (data.x_dim, data.y_dim) == (2, 1)
    batch = check_mi_batch(data.batch_at(0))
    assert batch["x"].shape == batch["x_marginal"].shape == (64, 2)
    assert torch.all(batch["y"] == 0) and torch.all(batch["y_marginal"] == 0) and batch["y"].shape == (64, 1)
    assert batch["x"].mean() < 1.0 < 2.0 < batch["x_marginal"].mean()  # P around 0, Q around 3
    assert float(batch["mi"]) == pytest.approx(9.0)  # KL(N(0, I) || N(3·1, I)) = |Δμ|²/2
    torch.testing.assert_close(data.batch_at(0)["x"], batch["x"])  # batch t is a function of (seed, t)
    assert not torch.equal(data.batch_at(1)["x"], batch["x"])


def test_a_sample_set_trains_on_its_rows_and_evaluates_on_the_held_out_ones(tmp_path):
    rows = np.arange(200, dtype=np.float64).reshape(100, 2)
    np.save(tmp_path / "p.npy", rows)
    np.savetxt(tmp_path / "q.csv", rows + 1000, delimiter=",")
    data = DivergenceDataModule(
        SampleSet(str(tmp_path / "p.npy"), held_out=0.2), SampleSet(str(tmp_path / "q.csv")), batch_size=16, steps=3
    )
    assert data.true_kl is None and "mi" not in data.batch_at(0)
    train = torch.cat([data.batch_at(t)["x"] for t in range(30)])
    held = torch.cat([data.batch_at(i, SubStream.TEST)["x"] for i in range(8)])
    train_rows, held_rows = {tuple(r) for r in train.tolist()}, {tuple(r) for r in held.tolist()}
    assert train_rows.isdisjoint(held_rows)
    assert len(train_rows) > 60 and train_rows | held_rows <= {tuple(r) for r in rows.tolist()}
    q = data.batch_at(0)["x_marginal"]
    assert bool((q >= 1000).all())
    p_sample, q_sample = data.sample_sets(50)
    assert p_sample.shape == q_sample.shape == (50, 2)


def test_bad_input_is_an_error_naming_the_parameter(tmp_path):
    with pytest.raises(ValueError, match=r"^q: "):
        DivergenceDataModule(GaussianSampler([0.0, 0.0]), GaussianSampler([0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"^q: "):
        kl_divergence(GaussianSampler([0.0]), StudentTSampler(3.0, [0.0, 0.0]))
    with pytest.raises(ValueError, match="covariance"):
        GaussianSampler([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="dof"):
        StudentTSampler(0.0, [0.0])
    with pytest.raises(ValueError, match="held_out"):
        SampleSet.from_samples(np.zeros((10, 2)), held_out=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        DivergenceDataModule(
            SampleSet.from_samples(np.random.randn(20, 1)), GaussianSampler([0.0]), batch_size=64
        ).batch_at(0)
    with pytest.raises(ValueError, match="p: "):
        DivergenceDataModule(np.zeros((10, 2)), GaussianSampler([0.0]))  # type: ignore[arg-type]


def _cli_fit(tmp_path, config: str, steps: int, *extra: str):
    return build_cli(
        [
            "fit",
            "-c",
            os.path.join(KL_CONFIGS, config),
            *extra,
            f"--trainer.default_root_dir={tmp_path}",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            f"--trainer.max_steps={steps}",
            f"--trainer.val_check_interval={steps}",
            f"--data.init_args.steps={steps}",
            "--data.init_args.eval_batches=2",
            "--data.init_args.eval_batch_size=512",
        ]
    )


@pytest.mark.parametrize(
    "config, bound",
    [("gaussians.yaml", "nwj.yaml"), ("gaussian_student.yaml", "dv.yaml")],
    ids=["gaussians", "student"],
)
def test_the_shipped_configs_fit_through_the_cli(tmp_path, config, bound):
    """A few steps of each KL config with a bound fragment: the critic's dims come from the data, the steps log a
    finite KL estimate and the true KL."""
    cli = _cli_fit(
        tmp_path,
        config,
        5,
        "-c",
        os.path.join(REPO, "configs", "mi", "bounds", bound),
        "--model.init_args.critic.init_args.hidden_dims=[16]",
        "--data.init_args.mc_samples=20000" if "student" in config else "--data.init_args.seed=0",
    )
    assert cli.trainer.global_step == 5 and (cli.model.critic.x_dim, cli.model.critic.y_dim) == (2, 1)
    logged = cli.trainer.logged_metrics
    truth = cli.datamodule.true_kl
    assert torch.isfinite(logged["mi/estimate"]) and torch.isfinite(logged[f"val/mi_estimate@{truth:g}"])
    assert float(logged["mi/true"]) == pytest.approx(truth)
    assert truth == pytest.approx(0.6154146 if config == "gaussians.yaml" else 0.1926, abs=0.02)


@pytest.mark.slow
def test_the_gaussian_kl_config_estimates_the_closed_form_kl(tmp_path):
    cli = _cli_fit(tmp_path, "gaussians.yaml", 600, "--model.init_args.critic.init_args.hidden_dims=[64]")
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    estimate = float(next(v for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/mi_estimate@")))
    assert abs(estimate - 0.6154146) < 0.1, estimate


def test_sample_set_files_configure_through_the_cli(tmp_path, monkeypatch):
    """Two sample sets from files in YAML: the paths reach SampleSet as paths (a text file's content must not be
    read into the value, as jsonargparse does for a string typed as a union with array types)."""
    monkeypatch.chdir(tmp_path)
    generator = np.random.default_rng(0)
    np.save("p.npy", generator.standard_normal((3000, 2)))
    np.savetxt("q.csv", 1.5 * generator.standard_normal((3000, 2)) + 1.0, delimiter=",")
    overlay = tmp_path / "files.yaml"
    overlay.write_text(
        "data:\n  init_args:\n"
        "    p: {class_path: pdlightning.data.SampleSet, init_args: {data: p.npy}}\n"
        "    q: {class_path: pdlightning.data.SampleSet, init_args: {data: q.csv, held_out: 0.25}}\n"
    )
    cli = _cli_fit(
        tmp_path, "gaussians.yaml", 3, "-c", str(overlay), "--model.init_args.critic.init_args.hidden_dims=[8]"
    )
    data = cli.datamodule
    assert data.q.source == "q.csv" and data.q.train_rows.shape == (2250, 2) and data.q.eval_rows.shape == (750, 2)
    assert data.p.source == "p.npy" and data.true_kl is None and cli.trainer.global_step == 3
