"""What ``test`` and ``predict`` of an MI module report: each staircase level by that level's critic,
a pair's PMI independent of the batch it lands in, and a summary at the end of every MI fit."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from pdlightning.bounds import DV, SMILE, InfoNCE, ProbabilisticClassifier, Regularized
from pdlightning.callbacks import BiasVarianceMSE
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule, sample_correlated_gaussian
from pdlightning.modules import MIEstimationModule

STEPS = 30


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Fits without a logger write their summary and results to the working directory: keep it temporary."""
    monkeypatch.chdir(tmp_path)


def _trainer(steps: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        **kwargs,
    )


def _data(levels, eval_batch_size=None, batches=3) -> CorrelatedGaussianDataModule:
    return CorrelatedGaussianDataModule(
        dim=3,
        mi_schedule=levels,
        steps_per_level=STEPS,
        batch_size=16,
        eval_batches_per_level=batches,
        eval_batch_size=eval_batch_size,
    )


class _FixedPairs(L.LightningDataModule):
    """48 fixed held-out Gaussian pairs (1 nat) served in batches of ``batch_size``."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.x, self.y = sample_correlated_gaussian(48, 3, 1.0, torch.Generator().manual_seed(123))

    def predict_dataloader(self) -> DataLoader:
        batches = [
            {"x": self.x[s : s + self.batch_size], "y": self.y[s : s + self.batch_size], "mi": torch.tensor(1.0)}
            for s in range(0, 48, self.batch_size)
        ]
        return DataLoader(batches, batch_size=None)


def _fit(levels, **module_kwargs) -> tuple[MIEstimationModule, L.Trainer]:
    L.seed_everything(0)
    module = MIEstimationModule(JointCritic(3, 3, [16]), SMILE(), summary=False, **module_kwargs)
    trainer = _trainer(STEPS * len(levels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, _data(levels))
    return module, trainer


def _test(module, trainer, levels) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer.test(module, _data(levels), verbose=False)[0]


def test_each_level_is_tested_with_the_critic_of_the_end_of_that_level(caplog):
    """A staircase fit 1 -> 3 nats, tested at both levels: the level-1 numbers equal those of a fit
    that stopped at the end of level 1 (same seed, same stream), not those of the final critic."""
    staircase, trainer = _fit([1.0, 3.0])
    stopped, stopped_trainer = _fit([1.0])
    with caplog.at_level("INFO"):
        ours = _test(staircase, trainer, [1.0, 3.0])
    text = caplog.text
    reference = _test(stopped, stopped_trainer, [1.0, 3.0])
    assert ours["test/mi_estimate@1"] == pytest.approx(reference["test/mi_estimate@1"], abs=1e-5)
    final_weights, _ = _fit([1.0, 3.0], level_snapshots=False)
    final = _test(final_weights, trainer, [1.0, 3.0])
    assert final["test/mi_estimate@3"] == pytest.approx(ours["test/mi_estimate@3"], abs=1e-5)
    assert final["test/mi_estimate@1"] != pytest.approx(ours["test/mi_estimate@1"], abs=1e-3)
    assert "reported by SMILE(τ=5)" in text and "end of level 1" in text and "end of level 3 (final)" in text
    assert "test/mi_stderr@1" in ours and ours["test/mi_stderr@1"] > 0
    # the live (final) weights are back after the test: testing again gives the same numbers
    after = _test(staircase, trainer, [1.0, 3.0])
    assert after["test/mi_estimate@1"] == pytest.approx(ours["test/mi_estimate@1"], abs=1e-6)
    for key, value in final_weights.state_dict().items():
        torch.testing.assert_close(staircase.state_dict()[key], value)


def test_level_snapshots_survive_a_checkpoint():
    module, _ = _fit([1.0, 3.0])
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    restored = MIEstimationModule(JointCritic(3, 3, [16]), SMILE())
    restored.on_load_checkpoint(checkpoint)
    assert sorted(restored.level_snapshots.snapshots) == [1.0, 3.0]
    for key, value in module.level_snapshots.snapshots[1.0].items():
        torch.testing.assert_close(restored.level_snapshots.snapshots[1.0][key], value)


@pytest.mark.parametrize(
    "make_bound",
    [DV, SMILE, InfoNCE, lambda: Regularized(DV()), ProbabilisticClassifier],
    ids=["dv", "smile", "infonce", "remine", "pc"],
)
def test_predicted_pmi_does_not_depend_on_the_batch(make_bound):
    """The same held-out pairs predicted with eval batches of 48, 2 and 5 (the last batch then holds
    one pair) get the same PMIs: batch statistics come from a fixed reference sample."""
    L.seed_everything(0)
    module = MIEstimationModule(JointCritic(3, 3, [16]), make_bound(), summary=False, pmi_reference_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(10).fit(module, _data([1.0]))
        results = {}
        for size in (48, 2, 5):
            predictions = _trainer(1).predict(module, _FixedPairs(size))
            results[size] = torch.cat([p["pmi"] for p in predictions])
    assert results[48].shape == (48,)
    torch.testing.assert_close(results[2], results[48], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[5], results[48], atol=1e-5, rtol=1e-5)


def test_in_batch_statistics_do_depend_on_the_batch():
    """What the reference fixes: with pmi_reference_size=0 a DV PMI changes with the batch."""
    L.seed_everything(0)
    module = MIEstimationModule(JointCritic(3, 3, [16]), DV(), summary=False, pmi_reference_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(10).fit(module, _data([1.0]))
        big = torch.cat([p["pmi"] for p in _trainer(1).predict(module, _FixedPairs(48))])
        small = torch.cat([p["pmi"] for p in _trainer(1).predict(module, _FixedPairs(4))])
    assert not torch.allclose(big, small, atol=1e-3)


def test_every_mi_fit_prints_the_per_level_summary(tmp_path, caplog):
    """No BiasVarianceMSE configured: the module writes and prints the table itself."""
    L.seed_everything(0)
    module = MIEstimationModule(JointCritic(3, 3, [16]), SMILE())
    trainer = L.Trainer(
        max_steps=2 * STEPS,
        default_root_dir=str(tmp_path),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with warnings.catch_warnings(), caplog.at_level("INFO"):
        warnings.simplefilter("ignore")
        trainer.fit(module, _data([1.0, 3.0]))
    assert not any(isinstance(c, BiasVarianceMSE) for c in trainer.callbacks)  # no callback needed
    table = (tmp_path / "bias_variance.md").read_text()
    assert table.startswith("### SMILE(τ=5)") and "| 1 | 30 |" in table and "| 3 | 30 |" in table
    assert "| true MI | steps | mean | bias | variance | MSE |" in caplog.text


def test_a_configured_summary_is_kept_and_summary_false_adds_none(tmp_path):
    configured = BiasVarianceMSE(burn_in=0.5, output_dir=str(tmp_path), verbose=False)
    module = MIEstimationModule(JointCritic(3, 3, [16]), SMILE())
    trainer = _trainer(4, callbacks=[configured])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, _data([1.0]))
    summaries = [c for c in trainer.callbacks if isinstance(c, BiasVarianceMSE)]
    assert summaries == [configured] and configured.burn_in == 0.5
    assert (tmp_path / "bias_variance.md").exists()  # the configured callback wrote it (burn-in 0.5: 2 of 4 steps)
    assert "| 1 | 2 |" in (tmp_path / "bias_variance.md").read_text()
    quiet = MIEstimationModule(JointCritic(3, 3, [16]), SMILE(), summary=False)
    trainer = _trainer(4, default_root_dir=str(tmp_path / "quiet"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(quiet, _data([1.0]))
    assert not any(isinstance(c, BiasVarianceMSE) for c in trainer.callbacks)
    assert not (tmp_path / "quiet" / "bias_variance.md").exists()


def test_bad_reference_size_is_named():
    with pytest.raises(ValueError, match="pmi_reference_size: expected 0 .* or an integer >= 2, got 1"):
        MIEstimationModule(JointCritic(3, 3, [16]), DV(), pmi_reference_size=1)


class _MapStylePairs(L.LightningDataModule):
    """The same 48 pairs as a map-style dataset of single pairs, batched by a DataLoader: Lightning then
    wraps the batch sampler (for predict, in one shared iterator), as with the paired-features data."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        x, y = sample_correlated_gaussian(48, 3, 1.0, torch.Generator().manual_seed(123))
        self.pairs = [{"x": x[i], "y": y[i], "mi": torch.tensor(1.0)} for i in range(48)]

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.pairs, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.pairs, batch_size=self.batch_size)


@pytest.mark.parametrize("make_bound", [DV, InfoNCE], ids=["dv", "infonce"])
def test_predict_on_map_style_data_scores_every_pair(make_bound):
    """The reference pass draws from a fresh loader: iterating the trainer's own predict loader used up its
    shared batch-sampler iterator, and nothing was predicted."""
    L.seed_everything(0)
    module = MIEstimationModule(JointCritic(3, 3, [16]), make_bound(), summary=False, pmi_reference_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(10).fit(module, _data([1.0]))
        mapped = torch.cat([p["pmi"] for p in _trainer(1).predict(module, _MapStylePairs(7))])
        listed = torch.cat([p["pmi"] for p in _trainer(1).predict(module, _FixedPairs(48))])
    torch.testing.assert_close(mapped, listed, atol=1e-5, rtol=1e-5)


def test_a_last_test_batch_of_one_pair_is_left_out_with_a_warning():
    """49 rows in batches of 8: the last batch holds one pair, which has no in-batch negative; the test
    completes on the other 48 and says what it left out and which setting avoids it."""
    L.seed_everything(0)
    module = MIEstimationModule(JointCritic(3, 3, [16]), InfoNCE(), summary=False)
    data = _MapStylePairs(8)
    data.pairs.append(data.pairs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(10).fit(module, _data([1.0]))
    with pytest.warns(UserWarning, match=r"single pair .*eval_batch_size"):
        metrics = _trainer(1).test(module, data, verbose=False)[0]
    assert metrics["test/skipped_batches"] == 1.0 and "test/mi_estimate@1" in metrics
