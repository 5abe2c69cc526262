import re

import numpy as np
import pytest
import torch

from pdlightning.data import MultipleFeaturesDataModule, PairedFeaturesDataModule
from pdlightning.data.sources import load_array, load_mfeat


def write_pairs(tmp_path, n_train=40, n_test=12, seed=0):
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.normal(size=(n, 5)).astype(np.float32)
        y = np.concatenate([x, rng.normal(size=(n, 2))], axis=1).astype(np.float32)
        paths[f"{split}_x"] = str(tmp_path / f"{split}_x.npy")
        np.save(paths[f"{split}_x"], x)
        paths[f"{split}_y"] = str(tmp_path / f"{split}_y.npz")
        np.savez(paths[f"{split}_y"], features=y)
    return paths


def test_paired_features_from_npy_and_npz(tmp_path):
    dm = PairedFeaturesDataModule(**write_pairs(tmp_path), batch_size=8, eval_batch_size=12)
    dm.setup()
    assert (dm.x_dim, dm.y_dim) == (5, 7)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 5) and batch["y"].shape == (8, 7)
    test = next(iter(dm.test_dataloader()))
    assert torch.equal(test["index"], torch.arange(12))
    # standardised with the training statistics
    train = dm.datasets["train"]
    assert torch.allclose(train.x.mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(train.x.std(0, unbiased=False), torch.ones(5), atol=1e-3)
    # the pairing survives standardisation: y's first 5 features are x's, row by row
    assert torch.allclose(test["y"][:, :5], test["x"], atol=1e-5)


def test_misaligned_and_missing_files_are_named(tmp_path):
    paths = write_pairs(tmp_path)
    np.save(tmp_path / "short.npy", np.zeros((39, 7), np.float32))
    with pytest.raises(ValueError, match="train_x and train_y: misaligned"):
        PairedFeaturesDataModule(paths["train_x"], str(tmp_path / "short.npy")).setup()
    with pytest.raises(FileNotFoundError, match="test_x"):
        PairedFeaturesDataModule(
            paths["train_x"], paths["train_y"], str(tmp_path / "nope.npy"), paths["test_y"]
        ).setup()
    with pytest.raises(ValueError, match="val_x and val_y"):
        PairedFeaturesDataModule(paths["train_x"], paths["train_y"], val_x=paths["test_x"])
    with pytest.raises(ValueError, match="batch_size"):
        PairedFeaturesDataModule(paths["train_x"], paths["train_y"], batch_size=1)


def test_load_array_npz_keys(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.ones((3, 2)), b=np.zeros((3, 4)))
    assert load_array(str(tmp_path / "two.npz") + ":b").shape == (3, 4)
    with pytest.raises(ValueError, match="pick one"):
        load_array(str(tmp_path / "two.npz"))
    with pytest.raises(KeyError, match="no array 'c'"):
        load_array(str(tmp_path / "two.npz") + ":c")
    (tmp_path / "two.txt").write_text("1")
    with pytest.raises(ValueError, match="x: expected a .npy or .npz"):
        load_array(str(tmp_path / "two.txt"), "x")


def test_mfeat_views_are_aligned_and_split_is_stratified_and_seeded():
    x, labels = load_mfeat("pix")
    y, labels_y = load_mfeat("fou")
    assert x.shape == (2000, 240) and y.shape == (2000, 76)
    assert np.array_equal(labels, labels_y) and np.array_equal(np.bincount(labels), np.full(10, 200))
    dm = MultipleFeaturesDataModule(test_per_class=20, val_per_class=10, seed=3)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.datasets.items()}
    assert sizes == {"train": 1700, "val": 100, "test": 200}
    assert torch.equal(dm.datasets["test"].labels.bincount(), torch.full((10,), 20))
    idx = dm.split_indices()
    assert not set(idx["train"]) & set(idx["test"]) and not set(idx["val"]) & set(idx["test"])
    again = MultipleFeaturesDataModule(test_per_class=20, val_per_class=10, seed=3).split_indices()
    other = MultipleFeaturesDataModule(test_per_class=20, val_per_class=10, seed=4).split_indices()
    assert np.array_equal(idx["test"], again["test"]) and not np.array_equal(idx["test"], other["test"])
    with pytest.raises(ValueError, match="x_view"):
        MultipleFeaturesDataModule(x_view="audio")


# --- bad files: every error names the parameter, the file and what was expected (issue 14, item 9)
def _good_npz_bytes(tmp_path) -> bytes:
    np.savez(tmp_path / "good.npz", features=np.ones((40, 7)))
    return (tmp_path / "good.npz").read_bytes()


BAD_FILES = {
    "empty_npy": (".npy", lambda tmp: b"", "is empty"),
    "empty_npz": (".npz", lambda tmp: b"", "is empty"),
    "corrupt_npy": (".npy", lambda tmp: b"\x93NUMPY" + b"\x07" * 40, "is corrupt"),
    "corrupt_npz": (".npz", lambda tmp: b"PK\x03\x04" + b"\x07" * 40, "is corrupt"),
    "truncated_npz": (".npz", lambda tmp: _good_npz_bytes(tmp)[:200], "is corrupt"),
    "text_as_npy": (".npy", lambda tmp: b"1,2,3\n4,5,6\n", "is corrupt"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_corrupt_or_empty_files_name_the_parameter_and_the_file(tmp_path, case):
    suffix, content, what = BAD_FILES[case]
    paths = write_pairs(tmp_path)
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(content(tmp_path))
    with pytest.raises(ValueError, match=f"^train_y: '{re.escape(str(bad))}' {what}.*; expected an? .* numpy.save"):
        PairedFeaturesDataModule(paths["train_x"], str(bad), paths["test_x"], paths["test_y"]).setup()


def test_an_archive_without_arrays_says_so(tmp_path):
    paths = write_pairs(tmp_path)
    np.savez(tmp_path / "none.npz")
    none = str(tmp_path / "none.npz")
    with pytest.raises(ValueError, match=f"^test_x: expected one array in '{re.escape(none)}'; it holds no array"):
        PairedFeaturesDataModule(paths["train_x"], paths["train_y"], none, paths["test_y"]).setup()


@pytest.mark.parametrize("split, rows", [("train", 0), ("train", 1), ("test", 0)])
def test_a_split_without_enough_rows_names_the_parameter_and_the_file(tmp_path, split, rows):
    paths = write_pairs(tmp_path)
    for side, dim in (("x", 5), ("y", 7)):
        np.save(tmp_path / f"few_{side}.npy", np.zeros((rows, dim), np.float32))
        paths[f"{split}_{side}"] = str(tmp_path / f"few_{side}.npy")
    need = 2 if split == "train" else 1
    file = re.escape(paths[f"{split}_x"])
    expected = f"^{split}_x: '{file}' holds an array of shape \\({rows}, 5\\); expected at least {need} row"
    with pytest.raises(ValueError, match=expected):
        PairedFeaturesDataModule(**paths).setup()


def test_non_finite_or_non_numeric_values_name_the_file_and_the_row(tmp_path):
    paths = write_pairs(tmp_path)
    x = np.load(paths["test_x"])
    x[7, 2] = np.nan
    np.save(tmp_path / "nan.npy", x)
    nan = str(tmp_path / "nan.npy")
    with pytest.raises(ValueError, match=f"^test_x: '{re.escape(nan)}' holds NaN or infinite values in 1 row.*row 7"):
        PairedFeaturesDataModule(paths["train_x"], paths["train_y"], nan, paths["test_y"]).setup()
    np.save(tmp_path / "words.npy", np.array([["a", "b"]] * 40))
    words = str(tmp_path / "words.npy")
    with pytest.raises(ValueError, match=f"^train_x: '{re.escape(words)}' holds <U1 values; expected numbers"):
        PairedFeaturesDataModule(words, paths["train_y"]).setup()


def test_labels_must_be_one_per_row(tmp_path):
    paths = write_pairs(tmp_path)
    np.save(tmp_path / "labels.npy", np.zeros((40, 2), np.int64))
    labels = str(tmp_path / "labels.npy")
    expected = f"^train_labels: expected 40 labels .* shape \\(40, 2\\) in '{re.escape(labels)}'"
    with pytest.raises(ValueError, match=expected):
        PairedFeaturesDataModule(**paths, train_labels=labels).setup()
