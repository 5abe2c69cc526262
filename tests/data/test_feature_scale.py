"""User features at any scale (issue 18, item 6): statistics in float64, values that float32 cannot hold are
refused naming the file and the column, and unstandardised features at scales no critic learns from are refused
naming ``standardize``."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pdlightning.data import PairedFeaturesDataModule
from pdlightning.data.features import FeatureScaling, prepare_features


def _pairs(tmp_path, scale: float, n_train: int = 40, n_test: int = 12, dtype=np.float64) -> dict[str, str]:
    """x ~ N(0, 1) * scale (+ an offset of 3 * scale in column 1), y = x + noise, as ``dtype`` files."""
    rng = np.random.default_rng(0)
    paths = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.normal(size=(n, 3))
        x[:, 1] += 3.0
        y = x + 0.1 * rng.normal(size=(n, 3))
        for side, values in (("x", x), ("y", y)):
            path = tmp_path / f"{split}_{side}.npy"
            np.save(path, (values * scale).astype(dtype))
            paths[f"{split}_{side}"] = str(path)
    return paths


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e200, 1e-200, 1.0])
def test_standardised_features_are_z_scores_at_any_finite_scale(tmp_path, scale):
    """float32 statistics made 1e30 features exactly 0 (the variance overflowed) and 1e-30 features ~1e-24 (the
    1e-6 added to the standard deviation dominated it): in float64, every scale gives the same z-scores."""
    paths = _pairs(tmp_path, scale)
    (tmp_path / "unit").mkdir()
    unit = _pairs(tmp_path / "unit", 1.0)
    dm = PairedFeaturesDataModule(**paths, batch_size=8)
    dm.setup()
    reference = PairedFeaturesDataModule(**unit, batch_size=8)
    reference.setup()
    x = dm.datasets["train"].x
    assert torch.allclose(x.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(3), atol=1e-4)
    for split in ("train", "test"):
        assert torch.allclose(dm.datasets[split].x, reference.datasets[split].x, atol=1e-4)
        assert torch.allclose(dm.datasets[split].y, reference.datasets[split].y, atol=1e-4)


def test_a_value_float32_cannot_hold_after_scaling_is_refused_naming_file_and_column(tmp_path):
    paths = _pairs(tmp_path, 1e-20)
    test_x = np.load(paths["test_x"])
    test_x[4, 2] = 1e30  # 1e50 training standard deviations away: no float32 z-score
    np.save(paths["test_x"], test_x)
    file = re.escape(paths["test_x"])
    with pytest.raises(ValueError, match=f"^test_x: '{file}' column 2 .*row 4.*float32"):
        PairedFeaturesDataModule(**paths, batch_size=8).setup()


def test_unstandardised_float64_beyond_float32_is_reported_as_such(tmp_path):
    paths = _pairs(tmp_path, 1.0)
    x = np.load(paths["train_x"])
    x[3, 1] = 1e39  # finite in float64, inf in float32
    np.save(paths["train_x"], x)
    with pytest.raises(ValueError) as raised:
        PairedFeaturesDataModule(**paths, batch_size=8, standardize=False).setup()
    message = str(raised.value)
    assert message.startswith(f"train_x: '{paths['train_x']}' column 1")
    assert "float32" in message and "row 3" in message and "NaN" not in message


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_unstandardised_features_at_unlearnable_scales_are_refused_naming_standardize(tmp_path, scale):
    """1e30 features with standardize: false trained a critic that retrieved at chance, exit 0."""
    paths = _pairs(tmp_path, scale)
    with pytest.raises(ValueError, match=f"^train_x: '{re.escape(paths['train_x'])}' column .*standardize"):
        PairedFeaturesDataModule(**paths, batch_size=8, standardize=False).setup()


def test_unstandardised_features_at_a_doubtful_scale_warn_naming_standardize(tmp_path):
    paths = _pairs(tmp_path, 1e4)
    with pytest.warns(UserWarning, match="train_x: .*column .*standardize"):
        PairedFeaturesDataModule(**paths, batch_size=8, standardize=False).setup()


def test_non_finite_values_name_the_column_and_the_row():
    x = np.zeros((6, 4))
    x[5, 3] = np.inf
    with pytest.raises(
        ValueError, match=r"^x: holds NaN or infinite values in 1 row\(s\), the first at row 5, column 3"
    ):
        prepare_features(x, "x")


def test_one_function_validates_and_standardises_an_array_for_any_caller():
    """The function behind the datamodules, for ``estimate_mi(x, y)`` and an arrays datamodule: an array in, its
    float32 z-scores and the training statistics out; other arrays scaled with those statistics."""
    rng = np.random.default_rng(1)
    train = rng.normal(size=(50, 2)) * 1e25 + 7e25
    features, scaling = prepare_features(train, "x")
    assert features.dtype == np.float32 and isinstance(scaling, FeatureScaling)
    np.testing.assert_allclose(features.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(features.std(0), 1.0, atol=1e-5)
    other, same = prepare_features(train[:5], "x_test", scaling=scaling)
    np.testing.assert_allclose(other, features[:5], atol=1e-6)
    assert same is scaling
    raw, none = prepare_features(rng.normal(size=(5, 2)), "x", standardize=False)
    assert raw.dtype == np.float32 and none is None
    with pytest.raises(ValueError, match="^x: expected a \\[n, d\\] feature array, got shape \\(2, 2, 2\\)"):
        prepare_features(np.zeros((2, 2, 2)), "x")
