"""Every exported bound is covered by the shared test tables, and what callbacks need from a bound is
its declared metadata, so a new bound (one file) is picked up without editing them."""

from __future__ import annotations

import inspect
import math

import lightning as L
import torch
from torch import Tensor

import pdlightning.bounds as bounds_package
from pdlightning.bounds import Bound, PairScores, log_mean_exp
from pdlightning.callbacks import BiasVarianceMSE, DriftMonitor, StaircaseFigure
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import MIEstimationModule

from .test_closed_form import OPTIMAL
from .test_upper_bounds import UPPER_BOUNDS
from .zoo import BOUNDS


def concrete_bound_classes(classes) -> set[type]:
    """The instantiable Bound subclasses among ``classes``."""
    return {c for c in classes if inspect.isclass(c) and issubclass(c, Bound) and not inspect.isabstract(c)}


def exported_bound_classes() -> set[type]:
    return concrete_bound_classes(getattr(bounds_package, name) for name in bounds_package.__all__)


def all_bound_subclasses(root: type = Bound) -> set[type]:
    found = set()
    for sub in root.__subclasses__():
        found |= {sub} | all_bound_subclasses(sub)
    return concrete_bound_classes(found)


def uncovered(classes: set[type], factories) -> list[str]:
    covered = {type(make()) for make in factories}
    return sorted(c.__name__ for c in classes if c not in covered)


def test_every_exported_bound_is_in_the_zoo_and_the_closed_form_table():
    exported = exported_bound_classes()
    assert len(exported) >= 14
    assert uncovered(exported, BOUNDS.values()) == [], "add the new bound to tests/bounds/zoo.py"
    # An upper bound has no critic that makes it exact: its closed forms (with the true conditional) are checked
    # in tests/bounds/test_upper_bounds.py instead.
    upper = {c for c in exported if c.is_upper_bound is True}  # (Regularized forwards it per instance)
    assert uncovered(exported - upper, [make for make, _ in OPTIMAL.values()]) == [], (
        "add the new bound's optimal critic to OPTIMAL in tests/bounds/test_closed_form.py"
    )
    assert uncovered(upper, UPPER_BOUNDS.values()) == [], "add the new upper bound to tests/bounds/test_upper_bounds.py"


class ToyCeilingBound(Bound):
    """A new bound written as one class: DV's value, a made-up ceiling of 3 nats, Re-X-style target."""

    is_lower_bound = True
    log_domain_second_term = True
    optimal_second_term = 0.0

    def terms(self, pairs: PairScores) -> tuple[Tensor, Tensor]:
        return pairs.joint.mean(), log_mean_exp(pairs.marginal)

    def pointwise(self, pairs: PairScores) -> PairScores:
        return pairs

    def value_ceiling(self, negatives_per_row: int) -> float:
        return 3.0

    @property
    def second_term_target(self) -> float:
        return 0.25


def test_a_new_bound_is_flagged_by_the_coverage_check():
    """Defining a Bound subclass anywhere makes it visible to the check that guards the tables."""
    assert ToyCeilingBound in all_bound_subclasses()
    assert uncovered({ToyCeilingBound}, BOUNDS.values()) == ["ToyCeilingBound"]


def test_callbacks_read_a_new_bounds_metadata_without_being_edited(tmp_path):
    """Label, value ceiling and second-term target reach the callbacks through the step record."""
    torch.manual_seed(0)
    callbacks = [
        StaircaseFigure(output_dir=str(tmp_path)),
        DriftMonitor(output_dir=str(tmp_path)),
        BiasVarianceMSE(output_dir=str(tmp_path), verbose=False),
    ]
    trainer = L.Trainer(
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )
    module = MIEstimationModule(JointCritic(2, 2, [8]), ToyCeilingBound())
    trainer.fit(module, CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0], steps_per_level=6, batch_size=8))
    staircase, drift, bias_variance = callbacks
    assert staircase.streams.title(0) == "ToyCeilingBound" and staircase.streams.ceiling(0) == 3.0
    assert drift._c_star == 0.25 and drift._title == "ToyCeilingBound: drift"
    assert (tmp_path / "bias_variance.md").read_text().startswith("### ToyCeilingBound")
    assert (tmp_path / "staircase.png").exists() and (tmp_path / "drift.png").exists()
    assert all(v <= 3.0 for v in bias_variance.estimates) and not math.isnan(bias_variance.estimates[0])


def test_every_bound_fragment_is_a_zoo_key():
    """One key per estimator: the file name of its fragment in configs/mi/bounds/ is its zoo key
    (and its report key and run directory), so the fragment's bound is the zoo's."""
    import os

    import yaml

    from pdlightning.cli.configs import packaged_configs_dir
    from pdlightning.runner.config import instantiate

    folder = packaged_configs_dir() / "mi" / "bounds"
    keys = sorted(p[:-5] for p in os.listdir(folder) if p.endswith(".yaml"))
    assert len(keys) >= 20 and [k for k in keys if k not in BOUNDS] == []
    for key in keys:
        spec = yaml.safe_load((folder / f"{key}.yaml").read_text())["model"]["init_args"]["bound"]
        assert type(instantiate(spec, Bound)) is type(BOUNDS[key]()), key
