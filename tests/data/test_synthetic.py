"""The synthetic-stream base: determinism, exact resume of the loader position, disjoint held-out
sub-streams, the finite-sample protocol and stacked replicate streams.

The toy task below is all a new synthetic task writes: how to sample, its identity, its sizes."""

from __future__ import annotations

import glob
import math
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from pdlightning.data import CorrelatedGaussianDataModule, OneHotDataModule, SubStream, SyntheticDataModule
from pdlightning.data.stream import replica_seed, step_seed


class ShiftedPairs(SyntheticDataModule):
    """A toy task: ``x ~ N(0, I_d)``, ``y = x + shift * step + N(0, I_d)`` (its distribution drifts)."""

    def __init__(self, dim: int = 3, shift: float = 0.0, **kwargs: Any) -> None:
        self.dim, self.shift = dim, shift
        self.x_dim = self.y_dim = dim
        super().__init__(**kwargs)

    def identity(self) -> dict[str, Any]:
        return {"dim": self.dim, "shift": self.shift}

    def sample(self, n: int, generator: torch.Generator, step: int) -> dict[str, torch.Tensor]:
        x = torch.randn(n, self.dim, generator=generator)
        y = x + self.shift * step + torch.randn(n, self.dim, generator=generator)
        return {"x": x, "y": y, "mi": torch.tensor(self.dim / 2 * math.log(2.0))}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)


MAKERS = {
    "gaussian": lambda: CorrelatedGaussianDataModule(
        dim=2, mi_schedule=[1.0, 2.0, 3.0], steps_per_level=10, batch_size=4, seed=5
    ),
    "onehot": lambda: OneHotDataModule(num_classes=4, batch_size=4, steps=30, seed=5),
    "finite_sample": lambda: ShiftedPairs(batch_size=4, steps=30, seed=5, train_pool=10),
    "replicas": lambda: ShiftedPairs(batch_size=4, steps=30, seed=5, replicas=3),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_batch_t_is_a_pure_function_of_the_settings_and_t(kind):
    a, b = MAKERS[kind](), MAKERS[kind]()
    backwards = [b.batch_at(t) for t in reversed(range(12))][::-1]  # another instance, another call order
    assert all(same(a.batch_at(t), batch) for t, batch in enumerate(backwards))
    assert all(same(x, y) for x, y in zip(a.train_dataloader(), b.train_dataloader()))
    assert not same(a.batch_at(0), a.batch_at(1))


class Recorder(L.LightningModule):
    """Trains one weight on the batch mean and records a fingerprint of the batch of every step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, float] = {}

    def training_step(self, batch, batch_idx):
        self.seen[self.global_step] = float(
            sum(torch.as_tensor(v).float().sum() * (i + 1) for i, v in enumerate(batch.values()))
        )
        return (self.weight - batch["x"].float().mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Crash(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 14:
            raise RuntimeError("crash before step 14")


def trainer(tmp_path, *callbacks) -> L.Trainer:
    return L.Trainer(
        max_steps=30,
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_top_k=-1), *callbacks],
    )


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_a_fit_resumed_from_a_mid_epoch_checkpoint_sees_the_uninterrupted_batches(kind, tmp_path):
    reference = Recorder()
    trainer(tmp_path / "reference").fit(reference, datamodule=MAKERS[kind]())
    assert sorted(reference.seen) == list(range(30))

    crashed = Recorder()
    with pytest.raises(RuntimeError, match="crash"):
        trainer(tmp_path / "run", Crash()).fit(crashed, datamodule=MAKERS[kind]())
    checkpoint = max(glob.glob(str(tmp_path / "run" / "*.ckpt")), key=lambda p: torch.load(p)["global_step"])
    assert torch.load(checkpoint)["global_step"] == 12
    resumed = Recorder()
    trainer(tmp_path / "run").fit(resumed, datamodule=MAKERS[kind](), ckpt_path=checkpoint)
    assert sorted(resumed.seen) == list(range(12, 30))
    assert all(resumed.seen[t] == reference.seen[t] for t in range(12, 30))


def test_sub_streams_of_a_seed_are_disjoint():
    seeds = [step_seed(5, stream, t) for stream in SubStream for t in range(2000)]
    assert len(set(seeds)) == len(seeds)
    dm = ShiftedPairs(batch_size=8, steps=10, seed=5, eval_batches=3)
    train = torch.cat([dm.batch_at(t)["x"] for t in range(10)])
    for stream in (SubStream.VAL, SubStream.TEST):
        held_out = torch.cat([dm.batch_at(i, stream)["x"] for i in range(3)])
        shared = (held_out[:, None, :] == train[None, :, :]).all(-1)
        assert not shared.any(), f"{stream.name} shares a pair with training"
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    assert not torch.equal(val["x"], test["x"])
    assert same(test, next(iter(dm.predict_dataloader())))


def test_held_out_batches_follow_held_out_steps_and_their_size():
    dm = ShiftedPairs(batch_size=8, steps=10, seed=1, eval_batches=5, eval_batch_size=3, shift=100.0)
    batches = list(dm.test_dataloader())
    assert len(batches) == 5 and all(b["x"].shape == (3, 3) for b in batches)
    assert all((b["y"] - b["x"]).abs().mean() < 10 for b in batches)  # drawn as at step 0: no drift
    gaussian = CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0, 2.0], steps_per_level=5, eval_batches_per_level=3)
    assert gaussian.held_out_steps() == [0, 0, 0, 5, 5, 5]


def test_finite_sample_serves_a_fixed_sample_in_seeded_passes():
    dm = ShiftedPairs(batch_size=4, steps=12, seed=2, train_pool=13)  # 3 batches per pass; 1 pair left out per pass
    pool = dm.sample(13, torch.Generator().manual_seed(step_seed(2, SubStream.POOL, 0)), 0)["x"]
    passes = [torch.cat([dm.batch_at(3 * e + j)["x"] for j in range(3)]) for e in range(4)]
    for rows in passes:
        assert len(rows) == 12 and len({tuple(r.tolist()) for r in rows}) == 12  # no pair twice in a pass
        assert all((r == pool).all(1).any() for r in rows)  # every pair is from the fixed sample
    assert not torch.equal(passes[0], passes[1])  # reshuffled every pass
    held_out = torch.cat([b["x"] for b in dm.val_dataloader()])
    assert not (held_out[:, None, :] == pool[None]).all(-1).any()  # evaluation is off the sample
    assert dm.stream_identity()["train_pool"] == 13


@pytest.mark.parametrize("options", [{}, {"train_pool": 8}])
def test_replica_k_is_the_stream_of_its_derived_seed(options):
    stacked = ShiftedPairs(batch_size=4, steps=6, seed=7, replicas=3, eval_batches=2, **options)
    singles = [
        ShiftedPairs(batch_size=4, steps=6, seed=replica_seed(7, k), eval_batches=2, **options) for k in range(3)
    ]
    for stream, steps in ((SubStream.TRAIN, 6), (SubStream.VAL, 2), (SubStream.TEST, 2)):
        for t in range(steps):
            batch = stacked.batch_at(t, stream)
            assert batch["x"].shape == (3, 4, 3) and batch["mi"].shape == (3,)
            for k, single in enumerate(singles):
                assert same({key: value[k] for key, value in batch.items()}, single.batch_at(t, stream))
    assert not torch.equal(stacked.batch_at(0)["x"][0], stacked.batch_at(0)["x"][1])
    assert len({replica_seed(s, k) for s in range(20) for k in range(20)}) == 400


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"replicas": 0}, "replicas"),
        ({"train_pool": 3}, "train_pool"),
        ({"steps": 0}, "steps"),
        ({"eval_batches": 0}, "eval_batches"),
        ({"batch_size": 1}, "batch_size"),
        ({"eval_batch_size": 1}, "eval_batch_size"),
    ],
)
def test_bad_base_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        ShiftedPairs(**{"batch_size": 4, "steps": 5, **kwargs})


def test_a_task_must_say_how_to_sample():
    class Unfinished(SyntheticDataModule):
        def identity(self) -> dict[str, Any]:
            return {}

    with pytest.raises(NotImplementedError):
        Unfinished(batch_size=2, steps=1).batch_at(0)
