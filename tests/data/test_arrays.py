"""ArraysDataModule: the user's paired arrays split into training and held-out pairs, standardised with the training
rows' statistics only, served as the MI module's batches (shared or replica streams); and the feature files it reads
(.npy, .npz, file.npz:key, .csv with or without a header, .pt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pdlightning.data import ArraysDataModule
from pdlightning.data.sources import load_features
from pdlightning.data.synthetic import SubStream


def _pairs(n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=3.0, scale=5.0, size=(n, 3))
    y = np.concatenate([x[:, :1] * 2 + 100, rng.normal(size=(n, 1))], axis=1)  # y0 is an affine map of x0
    return x, y


def test_the_split_holds_out_rows_never_trained_on_and_standardises_with_the_training_rows_only():
    x, y = _pairs()
    dm = ArraysDataModule(x, y, test_fraction=0.2, batch_size=8, seed=3)
    assert (dm.n_train, dm.n_test, dm.x_dim, dm.y_dim) == (40, 10, 3, 2)
    assert set(dm.train_rows).isdisjoint(dm.test_rows) and len(set(dm.train_rows) | set(dm.test_rows)) == 50
    mean, std = x[dm.train_rows].mean(0), x[dm.train_rows].std(0)
    # training rows: z-scores of their own statistics; held-out rows: the *training* statistics, not their own
    assert np.allclose(dm.train_pairs["x"].numpy(), (x[dm.train_rows] - mean) / std, atol=1e-5)
    assert np.allclose(dm.test_pairs["x"].numpy(), (x[dm.test_rows] - mean) / std, atol=1e-5)
    assert not np.allclose(dm.test_pairs["x"].numpy().mean(0), 0.0, atol=1e-3)
    # new pairs get the same map
    assert np.allclose(dm.transform(x[dm.test_rows], "x").numpy(), dm.test_pairs["x"].numpy())
    # the pairing survives: y0 is 2 x0 + 100, so their z-scores agree row by row in both splits
    assert np.allclose(dm.test_pairs["y"][:, 0], dm.test_pairs["x"][:, 0], atol=1e-4)
    # another seed, another split
    assert not np.array_equal(ArraysDataModule(x, y, batch_size=8, seed=4).test_rows, dm.test_rows)


def test_training_batches_come_from_the_training_rows_without_replacement_within_a_pass():
    x, y = _pairs()
    dm = ArraysDataModule(x, y, batch_size=8, steps=10)
    train = {tuple(row) for row in dm.train_pairs["x"].numpy().round(5)}
    test = {tuple(row) for row in dm.test_pairs["x"].numpy().round(5)}
    batches = list(dm.train_dataloader())
    assert len(batches) == 10 and all(b["x"].shape == (8, 3) and b["y"].shape == (8, 2) for b in batches)
    assert all("mi" not in b for b in batches)  # the true MI is unknown
    seen = [tuple(row) for b in batches[:5] for row in b["x"].numpy().round(5)]  # one pass: 40 // 8 = 5 batches
    assert len(set(seen)) == 40 and set(seen) == train and not set(seen) & test
    # the next pass is reshuffled; batch t is a pure function of (seed, t)
    assert not torch.equal(batches[5]["x"], batches[0]["x"])
    assert torch.equal(dm.batch_at(7)["x"], batches[7]["x"])


def test_held_out_batches_cover_every_held_out_pair_once_in_near_equal_batches():
    x, y = _pairs(n=100)
    dm = ArraysDataModule(x, y, test_fraction=0.3, batch_size=8)  # 30 held-out pairs, eval_batch_size 8
    assert [b["x"].shape[0] for b in dm.test_dataloader()] == [10, 10, 10]  # 30 // 8 = 3 batches, none below 8
    dm = ArraysDataModule(x, y, test_fraction=0.3, batch_size=8, eval_batch_size=7)
    batches = list(dm.test_dataloader())
    assert [b["x"].shape[0] for b in batches] == [8, 8, 7, 7]  # 30 // 7 = 4 near-equal batches
    index = torch.cat([b["index"] for b in batches])
    assert torch.equal(index, torch.from_numpy(dm.test_rows))
    assert torch.equal(torch.cat([b["x"] for b in batches]), dm.test_pairs["x"])
    assert list(dm.val_dataloader()) == []  # no validation split
    one = ArraysDataModule(x, y, test_fraction=0.3, batch_size=8, eval_batch_size=30)
    assert [b["x"].shape[0] for b in one.test_dataloader()] == [30]


def test_held_out_batches_are_at_least_eval_batch_size():
    x, y = _pairs(n=100)
    dm = ArraysDataModule(x, y, test_fraction=0.2, batch_size=8, eval_batch_size=6)
    sizes = [b["x"].shape[0] for b in dm.test_dataloader()]
    assert sum(sizes) == 20 and min(sizes) >= 6 and len(sizes) == 3


def test_replicas_stack_differently_ordered_streams_of_the_same_rows_and_the_same_held_out_pairs():
    x, y = _pairs()
    dm = ArraysDataModule(x, y, batch_size=8, steps=5, replicas=3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (3, 8, 3)
    assert not torch.equal(batch["x"][0], batch["x"][1])
    pass_rows = torch.cat([dm.batch_at(t)["x"][2] for t in range(5)])  # replicate 2's first pass: every row once
    assert torch.equal(pass_rows[pass_rows[:, 0].argsort()], dm.train_pairs["x"][dm.train_pairs["x"][:, 0].argsort()])
    held_out = dm.batch_at(0, SubStream.TEST)
    assert held_out["x"].shape[0] == 3 and torch.equal(held_out["x"][0], held_out["x"][2])


def test_steps_default_to_the_trainers_max_steps():
    x, y = _pairs()
    dm = ArraysDataModule(x, y, batch_size=8)
    assert dm.planned_steps() == 5  # no trainer: one pass
    dm.trainer = type("T", (), {"max_steps": 123, "global_step": 0})()
    assert len(dm.train_dataloader()) == 123
    assert "steps" not in dm.stream_identity()  # batch t does not depend on how many follow


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"y": "short"}, r"x and y: the arrays must be aligned row by row .* 50 rows of x and 49 rows of y"),
        (
            {"rows": 6},
            r"x, y: 6 rows split by test_fraction=0.2 leave 5 training and 1 held-out pairs.*at least 8 rows",
        ),
        ({"batch_size": 41}, r"batch_size: 41 is more than the 40 training pairs"),
        ({"eval_batch_size": 11}, r"eval_batch_size: 11 is more than the 10 held-out pairs"),
        ({"test_fraction": 0}, r"test_fraction: expected the held-out share"),
        ({"batch_size": 1}, r"batch_size: expected an integer >= 2"),
    ],
)
def test_bad_settings_are_errors_naming_the_argument(kwargs, message):
    x, y = _pairs()
    if kwargs.pop("y", None) == "short":
        y = y[:49]
    rows = kwargs.pop("rows", None)
    if rows is not None:
        x, y = x[:rows], y[:rows]
    with pytest.raises(ValueError, match=message):
        ArraysDataModule(x, y, **{"batch_size": 2, **kwargs})


def test_non_finite_values_are_named_by_their_row_and_column_in_the_users_array():
    x, y = _pairs()
    x[37, 2] = np.nan
    with pytest.raises(
        ValueError, match=r"x: holds NaN or infinite values in 1 row\(s\), the first at row 37, column 2"
    ):
        ArraysDataModule(x, y, batch_size=8)


def test_feature_files_of_every_kind(tmp_path):
    x, _ = _pairs(n=12)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", first=x, second=x[:, :1])
    (tmp_path / "header.csv").write_text("u,v,w\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in x) + "\n")
    (tmp_path / "plain.csv").write_text("\n".join(";".join(repr(float(v)) for v in r) for r in x) + "\n")
    (tmp_path / "one.csv").write_text("value\n" + "\n".join(repr(float(v)) for v in x[:, 0]) + "\n")
    torch.save(torch.tensor(x), tmp_path / "c.pt")
    torch.save({"features": torch.tensor(x, dtype=torch.bfloat16), "labels": torch.arange(12)}, tmp_path / "d.pt")
    for name in ("a.npy", "b.npz:first", "header.csv", "plain.csv", "c.pt"):
        assert np.array_equal(load_features(str(tmp_path / name), "x"), x), name
    assert load_features(str(tmp_path / "b.npz:second"), "x").shape == (12, 1)
    assert np.array_equal(load_features(str(tmp_path / "one.csv"), "x"), x[:, :1])
    assert np.allclose(load_features(str(tmp_path / "d.pt:features"), "x"), x, rtol=1e-2)
    dm = ArraysDataModule(str(tmp_path / "header.csv"), str(tmp_path / "c.pt"), batch_size=4)
    assert dm.identity()["x"] == str(tmp_path / "header.csv") and dm.x_dim == 3


def test_unreadable_feature_files_name_the_argument_and_the_file(tmp_path):
    (tmp_path / "words.csv").write_text("a,b\n1,2\n3,oops\n")
    (tmp_path / "nan.csv").write_text("1,2\n3,nan\n")
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save({"a": torch.ones(3), "b": torch.zeros(3)}, tmp_path / "two.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    cases = [
        ("words.csv", ValueError, r"y: '.*words.csv' is not a CSV of numbers \(after its header row\)"),
        ("nan.csv", ValueError, r"y: '.*nan.csv' holds NaN or infinite values .* row 1, column 1"),
        ("list.pt", ValueError, r"y: '.*list.pt' holds a list; expected a tensor"),
        ("two.pt", ValueError, r"y: '.*two.pt' holds a dict; pick one of \['a', 'b'\]"),
        ("two.pt:c", KeyError, r"y: '.*two.pt' has no tensor 'c'"),
        ("broken.pt", ValueError, r"y: '.*broken.pt' cannot be read as a tensor saved with torch.save"),
        ("missing.csv", FileNotFoundError, r"y: no such file"),
        ("data.txt", ValueError, r"y: expected a .npy, .npz .* or .pt \(a tensor\) file"),
    ]
    for name, error, message in cases:
        with pytest.raises(error, match=message):
            load_features(str(tmp_path / name), "y")
