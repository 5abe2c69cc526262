"""The non-finite guard: loud by default, and under ``non_finite="skip"`` the step is skipped and
counted, and no NaN / inf ever reaches the logger."""

from __future__ import annotations

import math
import re
import warnings
from typing import Any, Optional

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch import Tensor

from pdlightning.bounds import DV, JS, MINE, NWJ
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import MIEstimationModule, NonFiniteBoundError
from pdlightning.modules.finite import MemberGuard, non_finite_terms, raise_if_non_finite

STEPS = 8


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[Optional[int], dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        self.rows.append((step, {k: float(v) for k, v in metrics.items()}))

    def series(self, name: str) -> dict[int, float]:
        return {step: m[name] for step, m in self.rows if name in m}


class _NaNGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, scores: Tensor) -> Tensor:
        return scores.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad * float("nan")


class FaultyCritic(JointCritic):
    """A joint critic whose training calls listed in ``faults`` misbehave: ``"large"`` scores of
    1e4 (exp overflows), ``"nan"`` scores, or a ``"nan_grad"`` backward from finite scores."""

    def __init__(self, faults: dict[int, str]) -> None:
        super().__init__(2, 2, hidden_dims=(8,))
        self.faults = faults
        self.calls = 0

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        scores = super().forward(x, y)
        fault = self.faults.get(self.calls) if self.training else None
        self.calls += self.training
        if fault == "large":
            return scores * 0 + 1e4
        if fault == "nan":
            return scores + float("nan")
        if fault == "nan_grad":
            return _NaNGradient.apply(scores)
        return scores


def fit(module: MIEstimationModule, logger: Optional[Logger] = None, validate: bool = False) -> L.Trainer:
    L.seed_everything(0)
    trainer = L.Trainer(
        max_epochs=1,
        max_steps=STEPS,
        logger=logger or False,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=2 if validate else 0,
        val_check_interval=STEPS,
    )
    data = CorrelatedGaussianDataModule(
        dim=2, mi_schedule=[1.0], steps_per_level=STEPS, batch_size=8, eval_batches_per_level=2
    )
    trainer.fit(module, data)
    return trainer


def adam_steps(trainer: L.Trainer) -> int:
    """Optimiser updates actually applied (Adam counts them per parameter)."""
    state = trainer.optimizers[0].state
    return int(max(float(s["step"]) for s in state.values())) if state else 0


def assert_all_logged_values_finite(logger: MemoryLogger) -> None:
    for step, metrics in logger.rows:
        for name, value in metrics.items():
            assert math.isfinite(value), f"{name} = {value} logged at step {step}"


def test_raise_names_bound_term_step_and_score_range() -> None:
    module = MIEstimationModule(FaultyCritic({3: "large"}), NWJ())
    with pytest.raises(NonFiniteBoundError) as info:
        fit(module)
    message = str(info.value)
    assert message.startswith("bound NWJ: non-finite loss=inf")
    assert "second_term=inf" in message and "at step 3" in message
    assert "joint scores in [1e+04, 1e+04]" in message and "marginal scores in [1e+04, 1e+04]" in message


def test_raise_reports_nan_scores_with_counts() -> None:
    module = MIEstimationModule(FaultyCritic({1: "nan"}), DV())
    with pytest.raises(NonFiniteBoundError, match=r"at step 1 \(joint scores in \[no finite value\] with 8 NaN"):
        fit(module)


def test_skip_skips_the_optimiser_step_counts_and_never_logs_nan() -> None:
    logger = MemoryLogger()
    module = MIEstimationModule(FaultyCritic({2: "large", 5: "nan"}), NWJ(), non_finite="skip")
    with pytest.warns(RuntimeWarning, match="non_finite='skip': skipping the optimiser step"):
        trainer = fit(module, logger)
    assert trainer.global_step == STEPS
    assert int(module.guard.skipped_steps[0]) == 2 and adam_steps(trainer) == STEPS - 2
    assert_all_logged_values_finite(logger)
    skipped = logger.series("guard/skipped_steps")
    assert [skipped[s] for s in range(STEPS)] == [0, 0, 1, 1, 1, 2, 2, 2]
    assert sorted(logger.series("mi/estimate")) == [0, 1, 3, 4, 6, 7]  # nothing logged at 2 and 5


def test_skip_keeps_training_when_only_the_report_overflows() -> None:
    """JS learns (finite softplus loss) but reports NWJ on f + 1, whose e^f overflows at 1e4."""
    logger = MemoryLogger()
    module = MIEstimationModule(FaultyCritic({4: "large"}), JS(), non_finite="skip")
    with pytest.warns(RuntimeWarning, match="bound JS: non-finite mi=-inf, second_term=inf at step 4"):
        trainer = fit(module, logger)
    assert int(module.guard.skipped_steps[0]) == 0 and int(module.guard.skipped_reports[0]) == 1
    assert adam_steps(trainer) == STEPS
    assert_all_logged_values_finite(logger)
    assert 4 not in logger.series("mi/estimate") and 4 in logger.series("train/loss")
    assert logger.series("guard/skipped_reports")[STEPS - 1] == 1


def test_estimator_is_checked_too() -> None:
    module = MIEstimationModule(FaultyCritic({2: "large"}), JS(), estimator=NWJ())
    with pytest.raises(NonFiniteBoundError, match=r"^bound JS: non-finite mi=-inf"):
        fit(module)
    module = MIEstimationModule(FaultyCritic({2: "large"}), DV(), estimator=NWJ())
    with pytest.raises(NonFiniteBoundError, match=r"^estimator NWJ: non-finite mi=-inf, second_term=inf at step 2"):
        fit(module)


@pytest.mark.parametrize("elementwise", [False, True], ids=["per-parameter-sums", "elementwise-gpu-path"])
def test_non_finite_gradients_from_a_finite_loss(elementwise: bool) -> None:
    module = MIEstimationModule(FaultyCritic({3: "nan_grad"}), DV())
    module.elementwise_finiteness = elementwise
    with pytest.raises(NonFiniteBoundError, match=r"non-finite gradients at step 3 in critic\.first\.weight"):
        fit(module)

    module = MIEstimationModule(FaultyCritic({3: "nan_grad"}), DV(), non_finite="skip")
    with pytest.warns(RuntimeWarning, match="non-finite gradients at step 3"):
        trainer = fit(module)
    assert int(module.guard.skipped_steps[0]) == 1 and adam_steps(trainer) == STEPS - 1
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_skip_does_not_poison_mine_moving_average() -> None:
    module = MIEstimationModule(FaultyCritic({1: "nan"}), MINE(), non_finite="skip")
    with pytest.warns(RuntimeWarning):
        fit(module)
    assert math.isfinite(float(module.bound.log_partition_ema))


def test_validation_batches_with_non_finite_values_are_left_out() -> None:
    class EvalNaN(FaultyCritic):
        def forward(self, x: Tensor, y: Tensor) -> Tensor:
            scores = super().forward(x, y)
            return scores if self.training else scores + float("nan")

    logger = MemoryLogger()
    module = MIEstimationModule(EvalNaN({}), DV(), non_finite="skip")
    with pytest.warns(RuntimeWarning, match="val bound DV: non-finite"):
        fit(module, logger, validate=True)
    assert_all_logged_values_finite(logger)
    assert any("val/skipped_batches" in m for _, m in logger.rows)

    with pytest.raises(NonFiniteBoundError, match="val bound DV"):
        fit(MIEstimationModule(EvalNaN({}), DV()), validate=True)


def test_guard_counts_survive_a_checkpoint() -> None:
    """The guard's counters are [K] buffers of the module: a checkpoint (state dict and hooks, in Lightning's
    order) carries them, a run of skipped steps in progress included."""
    module = MIEstimationModule(JointCritic(2, 2, (4,)), DV(), non_finite="skip")
    guard = module.guard
    guard.skipped_steps.fill_(4)
    guard.skipped_reports.fill_(2)
    guard.consecutive_skips.fill_(1)
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    restored = MIEstimationModule(JointCritic(2, 2, (4,)), DV(), non_finite="skip")
    restored.on_load_checkpoint(checkpoint)
    restored.load_state_dict(checkpoint["state_dict"])
    counts = {
        name: int(getattr(restored.guard, name)[0])
        for name in ("skipped_steps", "skipped_reports", "consecutive_skips")
    }
    assert counts == {"skipped_steps": 4, "skipped_reports": 2, "consecutive_skips": 1}


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match=re.escape("non_finite: expected one of ['raise', 'skip'], got 'ignore'")):
        MIEstimationModule(JointCritic(2, 2, (4,)), DV(), non_finite="ignore")  # type: ignore[arg-type]


def _guard(policy: str = "skip", **kwargs: Any) -> MemberGuard:
    return MemberGuard(["only"], [(NWJ(), NWJ())], policy, **kwargs)  # type: ignore[arg-type]


def _watch(guard: MemberGuard, output: Any, step: int, completed: bool = False) -> None:
    """One step of a single member through the guard, as the engine drives it (outputs -> gradients)."""
    from pdlightning.modules.bound_stack import StackedOutputs

    finite = torch.tensor([not non_finite_terms(output)])
    stacked = StackedOutputs(
        output.loss.detach().reshape(1),
        output.mi.reshape(1),
        output.first_term.reshape(1),
        output.second_term.reshape(1),
        output.first_term.reshape(1),
        output.second_term.reshape(1),
        {},
        finite if not completed else torch.tensor([True]),
        finite if not completed else torch.tensor([True]),
    )
    scores = output.scores
    stepping, _ = guard.observe(stacked, scores.joint.unsqueeze(0), scores.marginal.unsqueeze(0), step)
    guard.observe_update(stepping, torch.ones(1, dtype=torch.bool), step)


def test_guard_check_names_terms() -> None:
    """A non-finite output: raise names the bound, terms and step; the names of the non-finite terms."""
    output = NWJ()(torch.full((4, 4), 1e4))
    with pytest.raises(NonFiniteBoundError, match="bound NWJ: non-finite loss=inf"):
        raise_if_non_finite(output, NWJ(), "bound", 7)
    assert non_finite_terms(output) == ["loss", "mi", "second_term"]
    raise_if_non_finite(NWJ()(torch.zeros(4, 4)), NWJ(), "bound", 7)  # finite: nothing raised
    guard = _guard("raise")
    _watch(guard, output, 7)
    with pytest.raises(
        NonFiniteBoundError, match=r"^bound NWJ: non-finite loss=inf, mi=-inf, second_term=inf at step 7"
    ):
        guard.sync()
    guard = _guard("skip")
    _watch(guard, output, 7)
    with pytest.warns(RuntimeWarning, match="at step 7 .*non_finite='skip': skipping the optimiser step"):
        guard.sync()


def test_consecutive_skips_stop_the_run_as_diverged() -> None:
    """Skipping cannot repair diverged weights: after max_consecutive_skips skipped steps in a row the
    guard stops the run and says where; a completed step in between resets the count."""
    guard = _guard("skip", max_warnings=0, max_consecutive_skips=3)
    bad = NWJ()(torch.full((4, 4), 1e4))
    for step in (10, 11):
        _watch(guard, bad, step)
    _watch(guard, bad, 12, completed=True)
    _watch(guard, bad, 13)
    _watch(guard, bad, 14)
    guard.sync()  # two in a row: counted, not yet diverged
    _watch(guard, bad, 15)
    with pytest.raises(NonFiniteBoundError, match=r"diverged: 3 optimiser steps in a row .*steps 13-15; 5 skipped"):
        guard.sync()
    with pytest.raises(ValueError, match="max_consecutive_skips: expected an integer >= 1, got 0"):
        _guard(max_consecutive_skips=0)


def test_diverged_fit_under_skip_stops_with_an_error() -> None:
    """A critic driven to non-finite scores at every step (lr far too large) must not end as a
    normal fit: the run stops after max_consecutive_skips skipped steps (issue: skip reported
    success on a diverged critic)."""
    torch.manual_seed(0)
    critic = FaultyCritic({call: "large" for call in range(2, 40)})
    module = MIEstimationModule(critic, NWJ(), non_finite="skip", max_consecutive_skips=5)
    trainer = L.Trainer(
        max_steps=40,
        logger=False,
        log_every_n_steps=1,  # the guard acts on logging steps: here every step
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteBoundError, match=r"the run diverged: 5 optimiser steps in a row"):
            trainer.fit(
                module, CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0], steps_per_level=40, batch_size=8)
            )
    assert trainer.global_step < 10


def test_guard_warns_a_bounded_number_of_times() -> None:
    guard = MemberGuard(["only"], [(DV(), DV())], "skip", max_warnings=2, max_consecutive_skips=100)
    output = DV()(torch.full((3, 3), float("nan")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(5):
            _watch(guard, output, step)
            guard.sync()
    assert len(caught) == 2 and "further non-finite events are only counted" in str(caught[1].message)
    assert int(guard.skipped_steps[0]) == 5
