import math

import pytest
import torch

from pdlightning.data import CorrelatedGaussianDataModule, MISchedule, rho_from_mi
from tests.conftest import make_gaussian_batch


@pytest.mark.parametrize("cubic", [False, True])
def test_mean_log_ratio_on_joint_pairs_is_the_true_mi(cubic):
    batch = make_gaussian_batch(4000, 4.0, cubic=cubic, seed=1)
    joint = batch.log_ratio.diagonal()
    assert abs(joint.mean().item() - 4.0) < 5 * joint.std().item() / math.sqrt(batch.n)


def test_rho_gives_the_requested_mi():
    for mi in (0.5, 2.0, 10.0):
        rho = rho_from_mi(mi, 20)
        assert -10 * math.log(1 - rho**2) == pytest.approx(mi)


def test_log_ratio_integrates_to_one_under_the_product_of_marginals():
    batch = make_gaussian_batch(3000, 1.0, seed=2)
    n = batch.n
    off = batch.log_ratio.flatten()[1:].view(n - 1, n + 1)[:, :-1]
    assert off.exp().mean().item() == pytest.approx(1.0, abs=0.1)


def test_schedule_levels_and_steps():
    schedule = MISchedule([2, 4, 6], 10)
    assert schedule.total_steps == 30
    assert [schedule.mi_at(s) for s in (0, 9, 10, 29, 35)] == [2, 2, 4, 6, 6]


@pytest.mark.parametrize("levels", [[], [2.0, -1.0], [0.0], [float("nan")], [float("inf")]])
def test_bad_schedule_names_the_parameter(levels):
    with pytest.raises(ValueError, match="mi_schedule"):
        CorrelatedGaussianDataModule(mi_schedule=levels)


def test_batch_size_below_two_is_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        CorrelatedGaussianDataModule(batch_size=1)


def test_stream_is_deterministic_and_carries_the_level():
    dm = CorrelatedGaussianDataModule(dim=3, mi_schedule=[1.0, 3.0], steps_per_level=4, batch_size=8, seed=5)
    first = list(dm.train_dataloader())
    again = list(
        CorrelatedGaussianDataModule(
            dim=3, mi_schedule=[1.0, 3.0], steps_per_level=4, batch_size=8, seed=5
        ).train_dataloader()
    )
    assert len(first) == 8
    assert [float(b["mi"]) for b in first] == [1.0] * 4 + [3.0] * 4
    assert all(torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"]) for a, b in zip(first, again))
    other_seed = next(iter(CorrelatedGaussianDataModule(dim=3, seed=6, batch_size=8).train_dataloader()))
    assert not torch.equal(first[0]["x"], other_seed["x"])


def test_held_out_batches_differ_from_training_and_cover_each_level():
    dm = CorrelatedGaussianDataModule(
        dim=3, mi_schedule=[1.0, 3.0], steps_per_level=4, batch_size=8, eval_batches_per_level=2
    )
    test = list(dm.test_dataloader())
    assert [float(b["mi"]) for b in test] == [1.0, 1.0, 3.0, 3.0]
    train_first = next(iter(dm.train_dataloader()))
    assert not torch.equal(test[0]["x"], train_first["x"])
