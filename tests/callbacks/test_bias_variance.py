"""BiasVarianceMSE numerics on synthetic estimate streams with known bias and variance."""

import csv
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pdlightning.bounds import NWJ, BoundOutput, PairScores
from pdlightning.callbacks import BiasVarianceMSE, level_statistics

from .records import single_record


def _two_point_stream(levels, biases, stds, steps):
    """Each level: I + b +/- s alternately, so the mean is exactly I + b and the population
    variance exactly s^2."""
    estimates, true_mis = [], []
    for level, b, s in zip(levels, biases, stds):
        estimates += [level + b + (s if t % 2 == 0 else -s) for t in range(steps)]
        true_mis += [level] * steps
    return estimates, true_mis


def test_exact_bias_variance_mse_per_level():
    levels, biases, stds = [2.0, 4.0, 6.0], [0.5, -1.0, 0.0], [0.1, 1.0, 3.0]
    rows = level_statistics(*_two_point_stream(levels, biases, stds, 100))
    assert [r.true_mi for r in rows] == levels
    for r, b, s in zip(rows, biases, stds):
        assert r.steps == 100
        assert r.bias == pytest.approx(b, abs=1e-12)
        assert r.variance == pytest.approx(s**2, rel=1e-12)
        assert r.mse == pytest.approx(b**2 + s**2, rel=1e-12)


def test_gaussian_stream_recovers_bias_and_variance_within_standard_errors():
    rng = np.random.default_rng(0)
    levels, biases, stds, n = [2.0, 4.0, 8.0], [-0.3, 0.2, -2.0], [0.2, 0.5, 4.0], 20000
    estimates = np.concatenate([rng.normal(i + b, s, n) for i, b, s in zip(levels, biases, stds)])
    rows = level_statistics(estimates.tolist(), np.repeat(levels, n).tolist())
    for r, b, s in zip(rows, biases, stds):
        assert abs(r.bias - b) < 5 * s / math.sqrt(n)
        # Var of the sample variance of a Gaussian is 2 s^4 / n.
        assert abs(r.variance - s**2) < 5 * s**2 * math.sqrt(2 / n)


def test_burn_in_drops_the_first_fraction_of_each_level():
    estimates, true_mis = [], []
    for level in (2.0, 4.0):
        estimates += [100.0] * 20 + [level + 0.25] * 80  # 20% transient, then a constant bias
        true_mis += [level] * 100
    with_transient = level_statistics(estimates, true_mis, burn_in=0.0)
    rows = level_statistics(estimates, true_mis, burn_in=0.2)
    assert all(r.bias > 10 for r in with_transient)
    for r in rows:
        assert r.steps == 80 and r.bias == pytest.approx(0.25) and r.variance == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("burn_in", [-0.1, 1.0])
def test_bad_burn_in_is_named(burn_in):
    with pytest.raises(ValueError, match="burn_in"):
        BiasVarianceMSE(burn_in=burn_in)
    with pytest.raises(ValueError, match="burn_in"):
        level_statistics([1.0], [1.0], burn_in=burn_in)


def _fake_step(estimate: float, batch: dict, n: int = 8) -> dict:
    pairs = PairScores.from_matrix(torch.zeros(n, n))
    zero = torch.tensor(0.0)
    out = BoundOutput(loss=zero, mi=torch.tensor(estimate), first_term=zero, second_term=zero, scores=pairs)
    return {"loss": zero, "record": single_record(out, batch, NWJ())}


def test_callback_writes_csv_markdown_and_stream(tmp_path):
    levels, biases, stds = [2.0, 4.0], [0.1, -0.4], [0.3, 0.7]
    estimates, true_mis = _two_point_stream(levels, biases, stds, 50)
    callback = BiasVarianceMSE(output_dir=str(tmp_path), save_stream=True, verbose=False)
    trainer = SimpleNamespace(global_step=0, loggers=[], is_global_zero=True, default_root_dir=str(tmp_path))
    module = SimpleNamespace()
    for estimate, level in zip(estimates, true_mis):
        trainer.global_step += 1
        batch = {"mi": torch.tensor(level)}
        callback.on_train_batch_end(trainer, module, _fake_step(estimate, batch), batch, 0)
    batch = {"x": torch.zeros(2)}
    callback.on_train_batch_end(trainer, module, _fake_step(0.0, batch), batch, 0)  # no `mi`: ignored
    callback.on_train_batch_end(trainer, module, {}, {"mi": torch.tensor(2.0)}, 0)  # a skipped step: ignored
    callback.on_fit_end(trainer, module)
    with open(tmp_path / "bias_variance.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["true_mi"]) for r in rows] == levels
    for r, b, s in zip(rows, biases, stds):
        assert float(r["bias"]) == pytest.approx(b, abs=1e-6)
        assert float(r["variance"]) == pytest.approx(s**2, rel=1e-5)
        assert float(r["mse"]) == pytest.approx(b**2 + s**2, rel=1e-5)
    assert "| 4 | 50 |" in (tmp_path / "bias_variance.md").read_text()
    assert "### NWJ" in (tmp_path / "bias_variance.md").read_text()  # labelled by the record's reporting bound
    with open(tmp_path / "estimates.csv") as f:
        stream = list(csv.DictReader(f))
    assert len(stream) == 100 and [int(r["step"]) for r in stream[:3]] == [0, 1, 2]
    # The stream survives a checkpoint round trip.
    restored = BiasVarianceMSE()
    restored.load_state_dict(callback.state_dict())
    assert restored.statistics() == callback.statistics()
