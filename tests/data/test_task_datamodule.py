"""TaskDataModule: the suite's finite-sample protocol on a task, exact PMI per pair, product pairs for the pointwise
metrics, the standardisation (an affine map that leaves the PMI unchanged), and errors that name the parameter."""

from __future__ import annotations

import pytest
import torch

from pdlightning.data import SubStream, TaskDataModule
from pdlightning.data.protocol import HasPairDims
from pdlightning.data.stream import step_seed
from pdlightning.tasks import SparseGaussianTask, UnknownTaskError, get_task

TASK = "multinormal-sparse-3-3-2-2.0"


def small(**kwargs) -> TaskDataModule:
    settings = dict(task=TASK, n_samples=400, batch_size=32, steps=50, seed=3, eval_batch_size=100)
    settings.update(kwargs)
    return TaskDataModule(**settings)


def raw_draw(data: TaskDataModule, n: int, stream: SubStream, index: int):
    """The task's own sample behind a batch (same generator as the datamodule's)."""
    return data.task.sample(n, torch.Generator().manual_seed(step_seed(data.seed, stream, index)))


def test_protocol_sizes_and_dims_come_from_the_task():
    data = TaskDataModule("multinormal-dense-5-5-0.5")
    assert (data.n_train, data.n_test, data.batch_size) == (2500, 2500, 256)
    assert (data.eval_batches, data.eval_batch_size, data.train_pool) == (5, 500, 2500)
    assert (data.x_dim, data.y_dim) == (5, 5) and isinstance(data, HasPairDims)
    embedded = TaskDataModule("swissroll_x-normal_cdf-1v1-normal-0.75")
    assert (embedded.x_dim, embedded.y_dim) == (2, 1)
    streaming = small(stream=True)
    assert streaming.train_pool is None and streaming.stream_identity()["stream"] is True


def test_a_task_instance_is_accepted_like_its_id():
    by_id, by_instance = small(), small(task=SparseGaussianTask(3, 3, n_interacting=2, strength=2.0))
    assert by_instance.task.name == TASK
    for t in (0, 7):
        a, b = by_id.batch_at(t), by_instance.batch_at(t)
        assert a.keys() == b.keys() and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)


def test_training_batches_come_from_one_fixed_sample_and_carry_exact_pmi():
    data = small(standardize=False)
    sample = raw_draw(data, data.n_train, SubStream.POOL, 0)
    per_pass = data.n_train // data.batch_size
    seen = torch.cat([data.batch_at(t)["x"] for t in range(per_pass)])
    assert seen.shape[0] == per_pass * data.batch_size
    assert torch.unique(seen, dim=0).shape[0] == seen.shape[0]  # one pass: each pair at most once
    rows = {tuple(r.tolist()): i for i, r in enumerate(sample.x)}
    batch = data.batch_at(per_pass + 1)  # the second pass draws from the same sample, reshuffled
    index = torch.tensor([rows[tuple(r.tolist())] for r in batch["x"]])
    assert torch.equal(batch["y"], sample.y[index]) and torch.equal(batch["pmi"], sample.pmi[index])
    assert set(batch) == {"x", "y", "mi", "pmi"}  # no product pairs, no pre-images in training batches
    assert float(batch["mi"]) == pytest.approx(get_task(TASK).mi)


def test_stream_mode_draws_a_fresh_batch_every_step():
    data = small(stream=True, standardize=False)
    sample = raw_draw(data, data.batch_size, SubStream.TRAIN, 5)
    batch = data.batch_at(5)
    assert torch.equal(batch["x"], sample.x) and torch.equal(batch["pmi"], sample.pmi)


def test_held_out_batches_carry_product_pairs_with_their_exact_pmi():
    data = small(standardize=False)
    batch = data.batch_at(1, SubStream.TEST)
    sample = raw_draw(data, data.eval_batch_size, SubStream.TEST, 1)
    n = data.eval_batch_size
    assert torch.equal(batch["x"], sample.x) and torch.equal(batch["pmi"], sample.pmi)
    following = [(i + 1) % n for i in range(n)]
    assert torch.equal(batch["x_product"], batch["x"]) and torch.equal(batch["y_product"], batch["y"][following])
    matrix = data.task.pmi_matrix(sample)  # exact PMI of every pair (x_i, y_j)
    assert torch.allclose(batch["pmi_product"], matrix[torch.arange(n), following], atol=1e-5)
    assert torch.allclose(batch["pmi"], matrix.diagonal(), atol=1e-5)
    training = torch.cat([data.batch_at(t)["x"] for t in range(data.n_train // data.batch_size)])
    assert not (batch["x"][:, None, :] == training[None]).all(-1).any()  # held out: not a training pair
    assert "x_product" not in small(product_pairs=False).batch_at(0, SubStream.VAL)


def test_standardisation_is_one_affine_map_from_the_training_sample_and_keeps_the_pmi():
    data, raw = small(task="1v1-bimodal-0.75"), small(task="1v1-bimodal-0.75", standardize=False)
    sample = data.training_sample()
    assert sample["x"].shape == (data.n_train, 1)
    assert torch.allclose(sample["x"].mean(0), torch.zeros(1), atol=1e-5)
    assert torch.allclose(sample["y"].std(0), torch.ones(1), atol=1e-5)
    statistics = data.standardization(data.seed)
    for stream, step in ((SubStream.TRAIN, 4), (SubStream.TEST, 0)):
        scaled, plain = data.batch_at(step, stream), raw.batch_at(step, stream)
        for key, variable in (("x", "x"), ("y", "y"), ("y_product", "y")):
            if key in plain:
                mean, scale = statistics[variable]
                assert torch.allclose(scaled[key] * scale + mean, plain[key], atol=1e-5), key
        assert torch.equal(scaled["pmi"], plain["pmi"])
    # the map is the training sample's in stream mode too (not the held-out pairs')
    assert torch.equal(
        small(task="1v1-bimodal-0.75", stream=True).standardization(data.seed)["x"][0], statistics["x"][0]
    )


def test_determinism_under_a_seed():
    a, b, other = small(), small(), small(seed=4)
    for t in (0, 3, 20):
        assert torch.equal(a.batch_at(t)["x"], b.batch_at(t)["x"])
    assert not torch.equal(a.batch_at(0)["x"], other.batch_at(0)["x"])
    assert torch.equal(a.batch_at(0, SubStream.VAL)["y_product"], b.batch_at(0, SubStream.VAL)["y_product"])


def test_the_plug_in_of_the_exact_pmi_over_held_out_pairs_is_the_mi():
    data = TaskDataModule("1v1-additive-0.1", seed=0)
    exact = torch.cat([data.batch_at(i, SubStream.TEST)["pmi"].double() for i in range(data.eval_batches)])
    assert exact.numel() == 2500
    assert abs(exact.mean().item() - data.task.mi) < 4 * exact.std().item() / exact.numel() ** 0.5


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"n_samples": 300, "batch_size": 256}, "n_samples"),
        ({"n_samples": 3}, "n_samples"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": 0}, "test_fraction"),
        ({"eval_batch_size": 1000}, "eval_batch_size"),
        ({"eval_batch_size": 1}, "eval_batch_size"),
        ({"batch_size": 1}, "batch_size"),
        ({"steps": 0}, "steps"),
    ],
)
def test_bad_settings_name_the_parameter(kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        small(**kwargs)


def test_the_batch_error_says_how_many_samples_are_needed():
    with pytest.raises(ValueError, match=r"training sample of n_samples=300 .* = 150 pairs .* at least 512"):
        small(n_samples=300, batch_size=256)


def test_an_unknown_task_id_lists_the_close_matches():
    with pytest.raises(UnknownTaskError, match=r"task: unknown task id '1v1-normal-0\.7'; closest: 1v1-normal-0\.75"):
        small(task="1v1-normal-0.7")
    with pytest.raises(TypeError, match="task: expected a registered task id"):
        small(task=3)
