"""The one-hot drift task: batch contract, true MI, support flags, reproducibility."""

import math

import pytest
import torch

from pdlightning.data import OneHotDataModule, check_mi_batch
from pdlightning.data.onehot import sample_onehot_batch


def _first_batch(dm: OneHotDataModule) -> dict:
    return next(iter(dm.train_dataloader()))


def test_batch_contract_and_true_mi():
    dm = OneHotDataModule(num_classes=16, batch_size=100, steps=5, seed=0)
    batch = _first_batch(dm)
    check_mi_batch(batch)
    for key in ("x", "y", "x_marginal", "y_marginal"):
        assert batch[key].shape == (100, 16)
        assert torch.equal(batch[key].sum(1), torch.ones(100)), f"{key} rows must be one-hot"
    assert torch.equal(batch["x"], batch["y"]), "joint pairs are (x, x)"
    assert batch["in_joint_support"].dtype == torch.bool and batch["in_joint_support"].shape == (100,)
    assert float(batch["mi"]) == pytest.approx(math.log(16))
    assert dm.x_dim == dm.y_dim == 16 and dm.true_mi == pytest.approx(math.log(16))


def test_support_flag_marks_exactly_the_equal_marginal_pairs():
    batch = sample_onehot_batch(4000, 8, torch.Generator().manual_seed(1))
    same = (batch["x_marginal"] == batch["y_marginal"]).all(1)
    assert torch.equal(batch["in_joint_support"], same)
    # P(x' = x'') = 1/N; 4000 rows give a standard error of about 0.005.
    assert batch["in_joint_support"].float().mean().item() == pytest.approx(1 / 8, abs=0.03)


def test_marginal_pairs_are_independent_of_the_joint_pairs():
    batch = sample_onehot_batch(20000, 4, torch.Generator().manual_seed(2))
    x, xm = batch["x"].argmax(1), batch["x_marginal"].argmax(1)
    # Under independence P(x = x') = 1/4; a marginal pair copied from the joint row would give 1.
    assert (x == xm).float().mean().item() == pytest.approx(0.25, abs=0.02)


def test_stream_is_a_function_of_seed_and_step():
    a = OneHotDataModule(batch_size=10, steps=3, seed=3)
    b = OneHotDataModule(batch_size=10, steps=3, seed=3)
    c = OneHotDataModule(batch_size=10, steps=3, seed=4)
    batches_a, batches_b = list(a.train_dataloader()), list(b.train_dataloader())
    assert len(batches_a) == 3
    assert all(torch.equal(p["x"], q["x"]) for p, q in zip(batches_a, batches_b))
    assert not torch.equal(batches_a[0]["x"], next(iter(c.train_dataloader()))["x"])
    assert not torch.equal(batches_a[0]["x"], batches_a[1]["x"])
    held_out = next(iter(a.val_dataloader()))
    assert not torch.equal(held_out["x"], batches_a[0]["x"])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"batch_size": 0}, "batch_size"),
        ({"steps": 0}, "steps"),
        ({"eval_batches": 0}, "eval_batches"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        OneHotDataModule(**kwargs)
