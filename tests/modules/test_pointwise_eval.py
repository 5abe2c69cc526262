"""The evaluation record: each held-out pair's estimated PMI next to its exact PMI, for joint and product pairs.

Critics that score every pair with its exact PMI (plus a known offset) make the expected estimates closed-form:
a plug-in bound must return the scores, a normalising bound (DV, InfoNCE) must remove the offset, and the MI
estimate of the bound must not see the product pairs."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from torch import Tensor

from pdlightning.bounds import DV, SMILE, Bound, InfoNCE, PairScores, VariationalPlugIn
from pdlightning.critics import Critic
from pdlightning.data import SubStream, TaskDataModule
from pdlightning.modules import MIEstimationModule
from pdlightning.modules.pmi_reference import ReferenceSample
from pdlightning.records import PointwiseRecord, pointwise_records
from pdlightning.tasks import Task, get_task

TASK = "multinormal-dense-2-2-0.5"  # identity observation maps: observed pairs are their own pre-images


class ExactPMICritic(Critic):
    """``T(x, y) = PMI(x, y) + offset + row_offset * sum(x)``: the task's exact PMI plus a constant and an
    ``x``-dependent shift (the freedom of DV's and InfoNCE's optimal critics)."""

    def __init__(self, task: Task, offset: float = 0.0, row_offset: float = 0.0) -> None:
        super().__init__(task.x_dim, task.y_dim)
        self.task, self.offset, self.row_offset = task, offset, row_offset

    def _shift(self, x: Tensor) -> Tensor:
        return self.offset + self.row_offset * x.double().sum(-1)

    def cross(self, x: Tensor, y: Tensor) -> Tensor:
        pmi = self.task.pmi_matrix_of_latents(x.double(), y.double())
        return (pmi + self._shift(x)[:, None]).float()

    def pointwise(self, x: Tensor, y: Tensor) -> Tensor:
        return (self.task.pmi_of_latents(x.double(), y.double()) + self._shift(x)).float()


def held_out(task: str = TASK, **kwargs) -> dict[str, Tensor]:
    settings = dict(n_samples=2000, batch_size=64, eval_batch_size=500, standardize=False)
    settings.update(kwargs)
    return TaskDataModule(task, **settings).batch_at(0, SubStream.TEST)


def pointwise_record(bound: Bound, critic: Critic, batch: dict, level, reference, stage: str) -> PointwiseRecord | None:
    """The module's record of ``batch`` for a single fit of ``bound`` on ``critic``, with ``reference``."""
    module = MIEstimationModule(critic, bound, summary=False)
    module.pmi_reference = reference
    return module.pointwise_record(batch, level, stage)


def test_a_plug_in_bound_reports_the_critic_scores_of_joint_and_product_pairs():
    batch = held_out()
    critic = ExactPMICritic(get_task(TASK), offset=0.5)
    record = pointwise_record(VariationalPlugIn(), critic, batch, 0.29, None, "test")
    assert isinstance(record, PointwiseRecord) and record.stage == "test" and record.up_to_constant == (False,)
    assert torch.allclose(record.pmi[0], batch["pmi"] + 0.5, atol=1e-5)
    assert torch.allclose(record.pmi_product[0], batch["pmi_product"] + 0.5, atol=1e-5)
    assert record.pmi_product_true is batch["pmi_product"] and record.members[0].label == "VariationalPlugIn"


@pytest.mark.parametrize(("bound", "row_offset"), [(DV(), 0.0), (SMILE(tau=5.0), 0.0), (InfoNCE(), 0.7)])
def test_a_normalising_bound_removes_its_critic_s_free_offset(bound, row_offset):
    """DV's optimal critic is PMI + c, InfoNCE's PMI + c(x): subtracting the log-partition (row normaliser) estimated
    on a fixed reference gives the PMI back, up to the Monte-Carlo error of that estimate."""
    batch = held_out()
    reference = ReferenceSample({0.29: (batch["x"], batch["y"])})
    critic = ExactPMICritic(get_task(TASK), offset=3.0, row_offset=row_offset)
    record = pointwise_record(bound, critic, batch, 0.29, reference, "val")
    for estimated, exact in ((record.pmi[0], batch["pmi"]), (record.pmi_product[0], batch["pmi_product"])):
        error = estimated - exact
        assert error.mean().abs() < 0.1  # the offset (3 nats, or 3 + 0.7 sum(x)) is gone
        assert error.std() < (0.1 if row_offset == 0 else 0.2)  # one statistic (per row) shifts every pair alike


def test_without_a_reference_the_product_pairs_use_the_batch_as_reference():
    batch = held_out()
    critic = ExactPMICritic(get_task(TASK), offset=2.0)
    record = pointwise_record(DV(), critic, batch, 0.29, None, "test")
    log_partition = DV().log_normalizer(PairScores.from_matrix(critic(batch["x"], batch["y"])))
    assert torch.allclose(record.pmi[0], critic.pointwise(batch["x"], batch["y"]) - log_partition, atol=1e-5)
    assert torch.allclose(
        record.pmi_product[0], critic.pointwise(batch["x_product"], batch["y_product"]) - log_partition, atol=1e-5
    )


def test_batches_without_exact_pmi_give_no_record_and_outputs_are_parsed():
    batch = held_out()
    critic = ExactPMICritic(get_task(TASK))
    assert pointwise_record(DV(), critic, {"x": batch["x"], "y": batch["y"]}, None, None, "val") is None
    record = pointwise_record(VariationalPlugIn(), critic, {k: batch[k] for k in ("x", "y", "pmi")}, None, None, "val")
    assert record.pmi_product is None and record.pmi_product_true is None
    assert pointwise_records({"record": record}) == [record] and pointwise_records({"record": [record, 3]}) == [record]
    assert pointwise_records(None) == [] and pointwise_records({"loss": 1.0}) == []


class _Test(L.Callback):
    def __init__(self) -> None:
        self.outputs: list = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.outputs.append(outputs)


def _test(module: MIEstimationModule, data: TaskDataModule, root) -> tuple[dict[str, float], list]:
    seen = _Test()
    trainer = L.Trainer(
        logger=False,
        default_root_dir=str(root),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[seen],
        accelerator="cpu",
        devices=1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer.test(module, data, verbose=False)[0], seen.outputs


def test_the_module_returns_records_and_its_mi_estimate_ignores_the_product_pairs(tmp_path):
    critic = ExactPMICritic(get_task(TASK), offset=1.0)
    module = MIEstimationModule(critic, DV(), summary=False)
    settings = dict(task=TASK, n_samples=2000, batch_size=64, eval_batch_size=250, standardize=False)
    with_products, outputs = _test(module, TaskDataModule(**settings), tmp_path / "a")
    without_products, plain_outputs = _test(module, TaskDataModule(product_pairs=False, **settings), tmp_path / "b")
    level = [k for k in with_products if k.startswith("test/mi_estimate@")]
    assert level and with_products[level[0]] == pytest.approx(without_products[level[0]], abs=1e-6)
    records = [r for o in outputs for r in pointwise_records(o)]
    assert len(records) == 4 and all(r.pmi_product is not None for r in records)
    assert all(r.pmi_product is None for o in plain_outputs for r in pointwise_records(o))
    # the reference of the normaliser was fixed on_test_start: a pair's PMI does not depend on its batch
    assert module.pmi_reference is not None
    batch = TaskDataModule(**settings).batch_at(0, SubStream.TEST)
    assert torch.allclose(records[0].pmi[0], batch["pmi"], atol=0.1)
