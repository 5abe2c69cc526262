import pytest
import torch

from pdlightning.data import SelfConsistencyDataModule
from pdlightning.data.self_consistency import SETTINGS, _derangement, top_rows


def test_top_rows_keeps_the_top_and_zeros_the_rest():
    images = torch.rand(2, 1, 8, 8) + 0.1
    kept = top_rows(images, 3)
    assert torch.equal(kept[..., :3, :], images[..., :3, :]) and kept[..., 3:, :].abs().sum() == 0
    assert top_rows(images, 0).abs().sum() == 0 and torch.equal(top_rows(images, 8), images)
    assert top_rows(images, -2).abs().sum() == 0


def test_derangement_has_no_fixed_point():
    for seed in range(5):
        perm = _derangement(50, seed)
        assert sorted(perm.tolist()) == list(range(50)) and all(perm[i] != i for i in range(50))


@pytest.mark.parametrize("setting", SETTINGS)
def test_settings_build_the_papers_pairs(setting):
    dm = SelfConsistencyDataModule(setting, rows=5, rows_gap=3, source="digits", batch_size=8, seed=0)
    dm.setup()
    data = dm.datasets["train"]
    item = data[4]
    image, other = data.images[4], data.images[int(data.partner[4])]
    assert item["x"].shape[0] == dm.channels == (2 if setting in ("data_processing", "additivity") else 1)
    expected = {
        "baseline": (image, top_rows(image, 5)),
        "independence": (image, top_rows(other, 5)),
        "data_processing": (torch.cat([image, image]), torch.cat([top_rows(image, 5), top_rows(image, 2)])),
        "additivity": (torch.cat([image, other]), torch.cat([top_rows(image, 5), top_rows(other, 5)])),
    }[setting]
    assert torch.equal(item["x"], expected[0]) and torch.equal(item["y"], expected[1])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="setting"):
        SelfConsistencyDataModule("transitivity")
    with pytest.raises(ValueError, match="rows"):
        SelfConsistencyDataModule(rows=-1)
    with pytest.raises(ValueError, match="rows: 30 exceeds"):
        SelfConsistencyDataModule(rows=30, source="digits").setup()
