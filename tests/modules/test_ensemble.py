"""One engine for K members: K members in one fit follow exactly the runs they would follow alone."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Any, Callable, Optional

import lightning as L
import pytest
import torch

from pdlightning.bounds import (
    NWJ,
    SMILE,
    TUBA,
    DensityRatioFitting,
    PairScores,
    ProbabilisticClassifier,
)
from pdlightning.critics import BilinearCritic, JointCritic, SeparableCritic
from pdlightning.data import CorrelatedGaussianDataModule, OneHotDataModule
from pdlightning.data.stream import replica_seed
from pdlightning.modules import Member, MIEstimationModule, NonFiniteBoundError
from pdlightning.modules.stacking import StackedCritic
from pdlightning.records import step_records

STEPS = 50
#: Tolerance of the step-by-step comparison. The ensemble and a standalone run perform the same
#: float32 arithmetic except that a layer's product for K members is one batched GEMM, whose blocking
#: can sum each dot product (length <= 256) in another order: a relative difference of a few units of
#: float32 rounding (u = 6e-8) times sqrt(256) ~ 1e-6 per layer and step. Adam's update
#: lr * m / (sqrt(v) + eps) carries such a relative gradient difference into the weights scaled by lr
#: (1e-3), so after 50 steps the weights differ by ~1e-7 and an estimate of O(1) nats by well under
#: 1e-4. Measured: at most 6e-7 here (a few float32 ulps of the estimate). We assert 1e-4 (absolute, nats).
TOLERANCE = 1e-4


class Recorder(L.Callback):
    """Every step's reported estimate per member (``None`` for a single module)."""

    def __init__(self) -> None:
        self.estimates: dict[Optional[str], list[float]] = defaultdict(list)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        for record in step_records(outputs):
            host = record.host(("estimate", "reported"))
            single = len(record.members) == 1
            for k, info in enumerate(record.members):
                value = host["estimate"][k] if host["reported"][k] else math.nan
                self.estimates[None if single else info.name].append(value)


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Fits without a logger write their summary and results to the working directory: keep it temporary."""
    monkeypatch.chdir(tmp_path)


def _trainer(steps: int = STEPS, **kwargs: Any) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator="cpu",
        **kwargs,
    )


def _fit(module: L.LightningModule, data: L.LightningDataModule, steps: int = STEPS, **kwargs: Any) -> Recorder:
    recorder = Recorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(steps, callbacks=[recorder], **kwargs).fit(module, data)
    return recorder


def _gaussian(seed: int = 0, replicas: Optional[int] = None) -> CorrelatedGaussianDataModule:
    return CorrelatedGaussianDataModule(
        dim=4, mi_schedule=[1.0, 2.0], steps_per_level=STEPS // 2, batch_size=16, seed=seed, replicas=replicas
    )


MEMBERS: dict[str, Callable[[], tuple[Any, Any]]] = {
    "nwj": lambda: (NWJ(), None),
    "smile": lambda: (SMILE(tau=5.0), None),
    "pc": lambda: (ProbabilisticClassifier(), None),
}
SEEDS = {"nwj": 11, "smile": 12, "pc": 13}


def _critic() -> JointCritic:
    return JointCritic(4, 4, [32, 32])


def _standalone(name: str) -> MIEstimationModule:
    bound, estimator = MEMBERS[name]()
    torch.manual_seed(SEEDS[name])
    return MIEstimationModule(_critic(), bound, estimator, summary=False, level_snapshots=False)


def _member(name: str, **kwargs: Any) -> Member:
    bound, estimator = MEMBERS[name]()
    return Member(bound, name=name, estimator=estimator, seed=SEEDS[name], **kwargs)


def _ensemble(data: str = "shared", **kwargs: Any) -> MIEstimationModule:
    members = [_member(name) for name in MEMBERS]
    return MIEstimationModule(
        critic=_critic(), members=members, data=data, summary=False, level_snapshots=False, **kwargs
    )


@pytest.mark.parametrize("chunk_size", [None, 3, 2, 1], ids=["cpu-default", "one-call", "chunks-of-2", "loop"])
def test_critic_ensemble_matches_its_members_for_every_architecture(chunk_size):
    """The explicit batched layer (one call for the 3 members), vmap in chunks, the loop, and the CPU default."""
    for make in (
        lambda: JointCritic(5, 4, [16, 8]),
        lambda: SeparableCritic(5, 4, [16], 8),
        lambda: BilinearCritic(5, 4),
    ):
        critics = []
        for seed in range(3):
            torch.manual_seed(seed)
            critics.append(make())
        ensemble = StackedCritic(critics, chunk_size=chunk_size)
        x, y = torch.randn(6, 5), torch.randn(6, 4)
        torch.testing.assert_close(ensemble(x, y), torch.stack([c(x, y) for c in critics]), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(
            ensemble.pointwise(x, y), torch.stack([c.pointwise(x, y) for c in critics]), atol=1e-6, rtol=1e-5
        )
        xs, ys = torch.randn(3, 6, 5), torch.randn(3, 6, 4)
        torch.testing.assert_close(
            ensemble(xs, ys, members_dim=True),
            torch.stack([c(a, b) for c, a, b in zip(critics, xs, ys)]),
            atol=1e-6,
            rtol=1e-5,
        )
        member = ensemble.member(1)
        for key, value in critics[1].state_dict().items():
            torch.testing.assert_close(member.state_dict()[key], value)


def test_members_are_initialised_as_standalone_critics_with_their_seed():
    module = _ensemble()
    for name in MEMBERS:
        torch.manual_seed(SEEDS[name])
        alone = _critic()
        for key, value in alone.state_dict().items():
            assert torch.equal(module.member_critic(name).state_dict()[key], value), (name, key)


def test_shared_batch_ensemble_equals_separate_runs_step_for_step():
    """K = 3 (NWJ, SMILE tau=5, probabilistic classifier), 50 Adam steps on one shared stream: every
    member's per-step estimate equals its standalone fit's within TOLERANCE, and so do the weights."""
    ensemble = _ensemble()
    together = _fit(ensemble, _gaussian())
    for name in MEMBERS:
        module = _standalone(name)
        alone = _fit(module, _gaussian()).estimates[None]
        assert len(alone) == len(together.estimates[name]) == STEPS
        difference = max(abs(a - b) for a, b in zip(alone, together.estimates[name]))
        assert difference < TOLERANCE, (name, difference)
        for key, value in module.critic.state_dict().items():
            torch.testing.assert_close(ensemble.member_critic(name).state_dict()[key], value, atol=1e-5, rtol=1e-4)


def test_replica_streams_ensemble_equals_separate_runs_with_the_replica_seeds():
    """data='replicas': member k trains on replica stream k, i.e. the stream of seed replica_seed(0, k)."""
    together = _fit(_ensemble(data="replicas"), _gaussian(seed=0, replicas=3))
    for k, name in enumerate(MEMBERS):
        alone = _fit(_standalone(name), _gaussian(seed=replica_seed(0, k))).estimates[None]
        difference = max(abs(a - b) for a, b in zip(alone, together.estimates[name]))
        assert difference < TOLERANCE, (name, difference)


def test_adam_on_stacked_parameters_is_independent_adams():
    """Element-wise: one Adam over [K, ...] tensors updates each slice as its own Adam would."""
    torch.manual_seed(0)
    stacked = torch.nn.Parameter(torch.randn(3, 5, 4))
    alone = [torch.nn.Parameter(stacked.detach()[k].clone()) for k in range(3)]
    together = torch.optim.Adam([stacked], lr=0.1)
    separate = [torch.optim.Adam([p], lr=0.1) for p in alone]
    for step in range(20):
        gradients = torch.randn(3, 5, 4) * (step + 1)
        stacked.grad = gradients.clone()
        together.step()
        for k, (p, opt) in enumerate(zip(alone, separate)):
            p.grad = gradients[k].clone()
            opt.step()
    for k in range(3):
        assert torch.equal(stacked.detach()[k], alone[k].detach())


def test_one_members_nan_skips_only_that_member():
    """A member whose loss is non-finite (NWJ at scores of 1e4) is skipped alone under 'skip': the
    others train exactly as without it, its weights do not move, and it is counted."""

    class Poisoned(NWJ):
        def forward(self, scores=None, **kwargs):
            return super().forward(PairScores(scores.joint * 0 + 1e4, scores.marginal * 0 + 1e4))

    members = [Member(Poisoned(), name="bad", seed=1), Member(SMILE(), name="smile", seed=12)]
    ensemble = MIEstimationModule(
        critic=_critic(),
        members=members,
        non_finite="skip",
        summary=False,
        level_snapshots=False,
        max_consecutive_skips=1000,
    )
    before = ensemble.member_critic("bad").state_dict()
    recorder = _fit(ensemble, _gaussian(), steps=10)
    alone = _fit(
        MIEstimationModule(
            critic=_critic(), members=[Member(SMILE(), name="smile", seed=12)], summary=False, level_snapshots=False
        ),
        _gaussian(),
        steps=10,
    ).estimates[None]
    assert max(abs(a - b) for a, b in zip(alone, recorder.estimates["smile"])) < TOLERANCE
    for key, value in ensemble.member_critic("bad").state_dict().items():
        assert torch.equal(value, before[key]), key
    assert ensemble.guard.skipped_steps.tolist() == [10, 0]
    assert all(math.isnan(v) for v in recorder.estimates["bad"])


def test_raise_policy_names_the_member():
    class Poisoned(NWJ):
        def forward(self, scores=None, **kwargs):
            return super().forward(PairScores(scores.joint * 0 + 1e4, scores.marginal * 0 + 1e4))

    members = [Member(SMILE(), name="fine", seed=1), Member(Poisoned(), name="exploding", seed=2)]
    with pytest.raises(NonFiniteBoundError, match="member 'exploding': bound Poisoned: non-finite"):
        _fit(MIEstimationModule(critic=_critic(), members=members, summary=False), _gaussian(), steps=2)


def test_learned_bound_parameters_and_explicit_pairs_match_standalone_runs():
    """TUBA with a learned baseline (a bound parameter per member) on the one-hot task (explicit
    marginal pairs) still equals the standalone runs."""

    def onehot():
        return OneHotDataModule(num_classes=4, batch_size=16, steps=20, seed=0)

    members = [
        Member(TUBA(log_a=0.3, learn_log_a=True), name="tuba", seed=5),
        Member(DensityRatioFitting(), name="drf", seed=6),
    ]
    ensemble = MIEstimationModule(critic=JointCritic(4, 4, [16]), members=members, summary=False, level_snapshots=False)
    together = _fit(ensemble, onehot(), steps=20)
    for member, bound in (("tuba", TUBA(log_a=0.3, learn_log_a=True)), ("drf", DensityRatioFitting())):
        torch.manual_seed({"tuba": 5, "drf": 6}[member])
        module = MIEstimationModule(JointCritic(4, 4, [16]), bound, summary=False, level_snapshots=False)
        alone = _fit(module, onehot(), steps=20).estimates[None]
        assert max(abs(a - b) for a, b in zip(alone, together.estimates[member])) < TOLERANCE, member
        ours, theirs = (
            ensemble.member_bound(member, reporting=False),
            module.member_bound(module.member_names[0], False),
        )
        for (name, value), alone_value in zip(ours.named_parameters(), theirs.parameters()):
            assert float(value) == pytest.approx(float(alone_value), abs=1e-6), name
    assert float(ensemble.member_bound("tuba", reporting=False).log_a) != pytest.approx(0.3, abs=1e-4)  # it learned


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MIEstimationModule(critic=_critic(), members=[]), r"members: expected at least one member \(K = 0\)"),
        (
            lambda: MIEstimationModule(critic=_critic(), members=[Member(NWJ(), name="a"), Member(SMILE(), name="a")]),
            r"members\[1\].name: duplicate member name 'a'",
        ),
        (
            lambda: MIEstimationModule(critic=_critic(), members=["nwj", "nwj"]),
            r"members\[1\].name: duplicate member name 'nwj'",
        ),
        (lambda: MIEstimationModule(critic=_critic(), members=[Member(NWJ(), name="a.b")]), r"members\[0\].name"),
        (
            lambda: MIEstimationModule(
                members=[
                    Member(NWJ(), name="a", critic=JointCritic(4, 4, [8])),
                    Member(NWJ(), name="b", critic=JointCritic(5, 4, [8])),
                ]
            ),
            r"members\[1\].critic \(b\): a JointCritic for inputs of 5 x 4 features; .* every member scores the same",
        ),
        (lambda: MIEstimationModule(members=[Member(NWJ(), name="a")]), r"members\[0\].critic \(a\): no critic"),
        (lambda: MIEstimationModule(critic=_critic(), members=[Member("NWJ", name="a")]), r"members\[0\].bound \(a\)"),
        (
            lambda: MIEstimationModule(critic=_critic(), members=["smile_tua5"]),
            r"members\[0\].bound \(smile_tua5\): unknown estimator key 'smile_tua5'.*did you mean 'smile_tau5'",
        ),
        (
            lambda: MIEstimationModule(critic=_critic(), members=[Member(NWJ(), name="a")], data="both"),
            r"data: expected",
        ),
        (
            lambda: MIEstimationModule(critic=_critic(), bound=NWJ(), members=["nwj"]),
            r"members: give either `members` or the one member's `bound`",
        ),
    ],
)
def test_bad_ensembles_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_data_mode_must_match_the_datamodule():
    with pytest.raises(ValueError, match="data: the datamodule stacks 3 replica streams"):
        _fit(_ensemble(), _gaussian(replicas=3), steps=1)
    with pytest.raises(ValueError, match="data: 'replicas' needs 3 streams .* the datamodule stacks 2"):
        _fit(_ensemble(data="replicas"), _gaussian(replicas=2), steps=1)


def test_global_norm_clipping_is_refused():
    with pytest.raises(ValueError, match="gradient_clip_val: clipping the global gradient norm couples the members"):
        _fit(_ensemble(), _gaussian(), steps=1, gradient_clip_val=1.0)


@pytest.mark.slow
def test_cli_ensemble_members_equal_standalone_cli_runs(tmp_path):
    """`pdlightning fit -c gaussian.yaml -c ensemble/table2.yaml`: each member's logged estimates equal
    those of `pdlightning fit -c gaussian.yaml -c bounds/<estimator>.yaml` (same seed_everything, same
    data), read back from TensorBoard."""
    from pathlib import Path

    from pdlightning.cli.main import build_cli
    from tests.modules.test_resume import read_scalars

    repo = Path(__file__).resolve().parents[2]
    common = [
        "--trainer.max_steps=12",
        "--data.init_args.steps_per_level=6",
        "--trainer.enable_progress_bar=false",
        "--model.init_args.critic.init_args.hidden_dims=[16]",
        "--checkpoint.every_n_train_steps=0",
    ]

    def fit(name: str, *configs: str) -> dict:
        save_dir = tmp_path / name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_cli(
                [
                    "fit",
                    "-c",
                    str(repo / "configs/mi/gaussian.yaml"),
                    *[a for c in configs for a in ("-c", c)],
                    *common,
                    f"--trainer.logger.init_args.save_dir={save_dir}",
                ]
            )
        (run,) = save_dir.glob("**/version_0")  # mi/version_0, or mi/<fragment>/version_0 for a bound fragment
        return read_scalars(str(run))

    together = fit("ensemble", str(repo / "configs/mi/ensemble/table2.yaml"))
    for member, fragment in (("nwj", "nwj.yaml"), ("smile_tau5", "smile_tau5.yaml")):
        alone = fit(member, str(repo / "configs/mi/bounds" / fragment))["mi/estimate"]
        ours = together[f"mi/estimate/{member}"]
        assert sorted(alone) == sorted(ours) == list(range(12))
        assert max(abs(alone[s] - ours[s]) for s in alone) < TOLERANCE, member


ENSEMBLE_MODEL = """\
model:
  class_path: pdlightning.modules.MIEstimationModule
  init_args:
    critic: {class_path: pdlightning.critics.JointCritic, init_args: {x_dim: 3, y_dim: 3, hidden_dims: [16]}}
    members:
      - {name: mine, bound: {class_path: pdlightning.bounds.MINE}, seed: 1}
      - {name: eta, bound: {class_path: pdlightning.bounds.EtaDV}, seed: 2}
      - {name: smile, bound: {class_path: pdlightning.bounds.SMILE}, seed: 3}
    optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.01}}
"""


@pytest.mark.slow
def test_ensemble_fit_killed_mid_run_resumes_exactly(tmp_path):
    """As for the single module (tests/modules/test_resume.py): a CLI ensemble fit killed between two
    checkpoints and resumed with --ckpt_path last logs every member's scalars exactly as an
    uninterrupted run (stateful bounds included: MINE's average, eta-DV's learned eta)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pdlightning.cli.main import build_cli
    from tests.modules.test_resume import CRASH_MODULE, EVERY, KILL_AT, STEPS, read_scalars, write_config

    def config(directory: Path) -> Path:
        path = write_config(directory)
        text = path.read_text()
        start, end = text.index("model:"), text.index("data:")
        path.write_text(text[:start] + ENSEMBLE_MODEL + text[end:])
        return path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "killer.py").write_text(CRASH_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo)])}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdlightning.cli.main",
            "fit",
            "-c",
            str(config(tmp_path)),
            "--trainer.callbacks+=killer.KillAtStep",
            f"--trainer.callbacks.step={KILL_AT}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 17, killed.stderr[-3000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_cli(["fit", "-c", str(config(tmp_path)), "--ckpt_path", "last"])
        (tmp_path / "reference").mkdir()
        build_cli(["fit", "-c", str(config(tmp_path / "reference"))])
    resumed = read_scalars(str(tmp_path / "logs" / "mi" / "version_0"))
    reference = read_scalars(str(tmp_path / "reference" / "logs" / "mi" / "version_0"))
    tags = {f"mi/estimate/{m}" for m in ("mine", "eta", "smile")} | {"bound/eta/eta", "bound/log_partition_ema/mine"}
    assert tags <= set(reference) and EVERY < KILL_AT
    for tag in tags:
        assert sorted(resumed[tag]) == list(range(STEPS)), tag
        for step in range(STEPS):
            assert math.isclose(resumed[tag][step], reference[tag][step], rel_tol=1e-5, abs_tol=1e-6), (tag, step)


@pytest.mark.slow
def test_callbacks_and_test_report_every_member(tmp_path, caplog):
    """BiasVarianceMSE, StaircaseFigure and DriftMonitor cover all members (one table / figure), and
    `test` prints one row per member and level."""
    from pdlightning.callbacks import BiasVarianceMSE, DriftMonitor, StaircaseFigure

    callbacks = [
        BiasVarianceMSE(output_dir=str(tmp_path), save_stream=True, verbose=False),
        StaircaseFigure(output_dir=str(tmp_path)),
        DriftMonitor(output_dir=str(tmp_path)),
    ]
    module = _ensemble()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = _trainer(callbacks=callbacks)
        trainer.fit(module, _gaussian())
        with caplog.at_level("INFO", logger="lightning.pytorch"):  # the report, run in-process, quiets it
            results = trainer.test(module, _gaussian(), verbose=False)[0]
    rows = (tmp_path / "bias_variance.csv").read_text().splitlines()
    assert rows[0] == "member,true_mi,steps,mean,bias,variance,mse" and len(rows) == 1 + 3 * 2
    assert {r.split(",")[0] for r in rows[1:]} == set(MEMBERS)
    table = (tmp_path / "bias_variance.md").read_text()
    assert "### nwj: NWJ" in table and "### smile: SMILE(τ=5)" in table and "### pc: ProbabilisticClassifier" in table
    assert (tmp_path / "staircase.png").exists() and (tmp_path / "drift.png").exists()
    assert set(callbacks[2].tracks) == set(MEMBERS)
    for name in MEMBERS:
        for level in (1, 2):
            assert f"test/mi_estimate/{name}@{level}" in results
    assert caplog.text.count("end of level") == 0 and "smile" in caplog.text and "SMILE(τ=5)" in caplog.text


def test_members_can_share_a_replica_stream():
    """Estimators x seeds in one fit: members with `replica` s train on seed s's stream, so NWJ and
    SMILE on replica 1 equal their standalone runs on the stream of replica_seed(0, 1)."""
    members = [
        Member(MEMBERS[name]()[0], name=f"{name}_{s}", seed=SEEDS[name], replica=s)
        for s in (0, 1)
        for name in ("nwj", "smile")
    ]
    ensemble = MIEstimationModule(
        critic=_critic(), members=members, data="replicas", summary=False, level_snapshots=False
    )
    together = _fit(ensemble, _gaussian(seed=0, replicas=2))
    for name in ("nwj", "smile"):
        alone = _fit(_standalone(name), _gaussian(seed=replica_seed(0, 1))).estimates[None]
        assert max(abs(a - b) for a, b in zip(alone, together.estimates[f"{name}_1"])) < TOLERANCE, name
    with pytest.raises(
        ValueError,
        match=r"members\[0\].replica \(a\): expected a stream index >= 0 with "
        r"data='replicas', got 1 with data='shared'",
    ):
        MIEstimationModule(critic=_critic(), members=[Member(NWJ(), name="a", replica=1)])


def test_retire_policy_retires_only_the_diverged_member_and_the_others_go_on_unchanged():
    """on_member_divergence='retire': a member that turns non-finite at step 6 is retired (when and why
    recorded, also in the checkpoint), its weights stay at their last finite values, it reports nothing at
    test, and the others train exactly as without it; the default 'stop' ends the fit as before."""

    class PoisonedFromStep6(NWJ):
        calls = 0

        def forward(self, scores=None, **kwargs):
            type(self).calls += 1
            if type(self).calls > 6:
                scores = PairScores(scores.joint * 0 + 1e4, scores.marginal * 0 + 1e4)
            return super().forward(scores)

    def members(bad: bool):
        kept = [Member(SMILE(), name="smile", seed=12), Member(NWJ(), name="nwj", seed=11)]
        return kept + [Member(PoisonedFromStep6(), name="bad", seed=1)] if bad else kept

    def module(bad: bool, **kwargs: Any) -> MIEstimationModule:
        return MIEstimationModule(critic=_critic(), members=members(bad), summary=False, **kwargs)

    ensemble = module(True, on_member_divergence="retire", level_snapshots=False)
    recorder = Recorder()
    with pytest.warns(UserWarning, match="member 'bad' retired at step 6, the others go on"):
        _trainer(12, callbacks=[recorder]).fit(ensemble, _gaussian())
    estimates = recorder.estimates
    assert set(ensemble.retired) == {"bad"} and ensemble.retired["bad"]["step"] == 6
    assert "non-finite" in ensemble.retired["bad"]["error"]
    assert all(math.isnan(v) for v in estimates["bad"][6:]) and not any(math.isnan(v) for v in estimates["bad"][:6])
    alone = _fit(module(False, level_snapshots=False), _gaussian(), 12)
    for name in ("smile", "nwj"):
        assert max(abs(a - b) for a, b in zip(alone.estimates[name], estimates[name])) < TOLERANCE, name
    frozen = {k: v.clone() for k, v in ensemble.member_critic("bad").state_dict().items()}
    _fit(ensemble, _gaussian(seed=1), steps=15)  # more steps: the retired member does not move
    for key, value in ensemble.member_critic("bad").state_dict().items():
        assert torch.equal(value, frozen[key]), key
    checkpoint: dict = {}
    ensemble.on_save_checkpoint(checkpoint)
    restored = module(True, on_member_divergence="retire")
    restored.on_load_checkpoint(checkpoint)
    assert restored.retired == ensemble.retired
    PoisonedFromStep6.calls = 0
    with pytest.raises(NonFiniteBoundError, match="member 'bad'"):
        _fit(module(True), _gaussian(), steps=12)
    with pytest.raises(ValueError, match="on_member_divergence: expected 'stop' or 'retire'"):
        module(False, on_member_divergence="freeze")
