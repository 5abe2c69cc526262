"""Runs through the CLI: a resume continues only its own experiment and records what ran; test / predict
evaluate the model that was trained (bound and critic from the checkpoint) and never an untrained one."""

from __future__ import annotations

import logging
import math
import os
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from pdlightning.bounds import DV, NWJ, SMILE
from pdlightning.cli.checkpoint_io import CheckpointError
from pdlightning.cli.identity import defining_config, identity_of
from pdlightning.cli.main import ResumeError, RunMismatchError, UntrainedModelError, build_cli
from tests.modules.test_resume import read_scalars

REPO = Path(__file__).resolve().parents[2]
GAUSSIAN = str(REPO / "configs" / "mi" / "gaussian.yaml")
NWJ_FRAGMENT = str(REPO / "configs" / "mi" / "bounds" / "nwj.yaml")
STEPS = 12  # 2 levels x 6 steps


def tiny(tmp_path: Path, bound: str = "pdlightning.bounds.SMILE") -> Path:
    config = tmp_path / f"{bound.rsplit('.', 1)[-1].lower()}.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        seed_everything: 0
        trainer:
          max_epochs: 1
          max_steps: {STEPS}
          log_every_n_steps: 1
          enable_progress_bar: false
          enable_model_summary: false
          num_sanity_val_steps: 0
          limit_val_batches: 0
          accelerator: cpu
          logger:
            class_path: lightning.pytorch.loggers.TensorBoardLogger
            init_args: {{save_dir: {tmp_path / "logs"}, name: mi}}
        model:
          class_path: pdlightning.modules.MIEstimationModule
          init_args:
            critic: {{class_path: pdlightning.critics.JointCritic, init_args: {{x_dim: 3, y_dim: 3, hidden_dims: [16]}}}}
            bound: {{class_path: {bound}}}
            optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.01}}}}
        data:
          class_path: pdlightning.data.CorrelatedGaussianDataModule
          init_args: {{dim: 3, mi_schedule: [0.5, 1.0], steps_per_level: 6, batch_size: 16, seed: 5}}
        """)
    )
    return config


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def lr_of(checkpoint: Path) -> float:
    return torch.load(checkpoint, weights_only=True)["optimizer_states"][0]["param_groups"][0]["lr"]


# ------------------------------------------------------------------------------------ identity
def test_the_identity_ignores_budget_logging_and_loading_but_not_the_experiment():
    base = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 100,
            "max_epochs": 1,
            "precision": "32-true",
            "logger": {"init_args": {"save_dir": "a"}},
            "callbacks": [],
        },
        "model": {"class_path": "M", "init_args": {"bound": {"class_path": "NWJ"}, "lr": 0.1}},
        "data": {"class_path": "D", "init_args": {"seed": 1, "num_workers": 0}},
        "ckpt_path": None,
    }
    identity = identity_of(defining_config(base))

    def changed(path: str, value) -> str:
        config = yaml.safe_load(yaml.safe_dump(base))
        *parents, key = path.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[key] = value
        return identity_of(defining_config(config))

    for same in [
        ("trainer.max_steps", 5000),
        ("trainer.max_epochs", 3),
        ("trainer.logger.init_args.save_dir", "b"),
        ("trainer.callbacks", [{"class_path": "X"}]),
        ("data.init_args.num_workers", 4),
        ("ckpt_path", "last"),
    ]:
        assert changed(*same) == identity, same
    for other in [
        ("seed_everything", 1),
        ("model.init_args.lr", 0.05),
        ("model.init_args.bound.class_path", "DV"),
        ("data.init_args.seed", 2),
        ("trainer.precision", "bf16-mixed"),
    ]:
        assert changed(*other) != identity, other
    assert identity_of(defining_config({**base, "seed_everything": 7}, random_seed=True)) == identity_of(
        defining_config({**base, "seed_everything": 8}, random_seed=True)
    )


def test_last_refuses_the_newer_run_of_another_experiment_and_touches_none_of_its_files(tmp_path):
    build_cli(["fit", "-c", str(tiny(tmp_path, "pdlightning.bounds.SMILE")), "--trainer.max_steps=4"])
    run = tmp_path / "logs" / "mi" / "version_0"
    before = snapshot(run)
    expected = r'(?s)version_0/checkpoints/last.ckpt \(step 4\).*bound.class_path: "pdlightning.bounds.SMILE" -> "pdl'
    with pytest.raises(RunMismatchError, match=expected):
        build_cli(["fit", "-c", str(tiny(tmp_path, "pdlightning.bounds.NWJ")), "--ckpt_path=last"])
    assert snapshot(run) == before
    assert sorted(os.listdir(tmp_path / "logs" / "mi")) == ["version_0"]


def test_last_resumes_the_run_of_this_experiment_even_when_another_one_is_newer(tmp_path):
    nwj, smile = tiny(tmp_path, "pdlightning.bounds.NWJ"), tiny(tmp_path, "pdlightning.bounds.SMILE")
    build_cli(["fit", "-c", str(nwj), "--trainer.max_steps=4"])
    build_cli(["fit", "-c", str(smile), "--trainer.max_steps=4"])
    smile_run = snapshot(tmp_path / "logs" / "mi" / "version_1")
    cli = build_cli(["fit", "-c", str(nwj), "--ckpt_path=last"])
    assert isinstance(cli.model.bound, NWJ) and cli.trainer.global_step == STEPS
    assert cli.config.fit.ckpt_path.endswith(os.path.join("version_0", "checkpoints", "last.ckpt"))
    assert snapshot(tmp_path / "logs" / "mi" / "version_1") == smile_run
    assert sorted(os.listdir(tmp_path / "logs" / "mi")) == ["version_0", "version_1"]


def test_a_new_fit_into_a_fixed_version_that_holds_a_run_is_refused(tmp_path):
    config = tiny(tmp_path)
    build_cli(["fit", "-c", str(config), "--trainer.max_steps=2", "--trainer.logger.init_args.version=seed0"])
    run = tmp_path / "logs" / "mi" / "seed0"
    before = snapshot(run)
    with pytest.raises(RunMismatchError, match="already holds a run"):
        build_cli(["fit", "-c", str(config), "--trainer.logger.init_args.version=seed0"])
    assert snapshot(run) == before


# ------------------------------------------------------------------------------ resume overrides
def test_an_override_on_resume_is_refused_with_what_differs(tmp_path):
    config = tiny(tmp_path)
    build_cli(["fit", "-c", str(config), "--trainer.max_steps=4"])
    with pytest.raises(RunMismatchError, match=r"optimizer.init_args.lr: 0.01 -> 0.05"):
        build_cli(["fit", "-c", str(config), "--ckpt_path=last", "--model.init_args.optimizer.init_args.lr=0.05"])


def test_a_forced_resume_applies_the_new_learning_rate_and_records_both_configs(tmp_path):
    config = tiny(tmp_path)
    build_cli(["fit", "-c", str(config), "--trainer.max_steps=4"])
    run = tmp_path / "logs" / "mi" / "version_0"
    first_config = (run / "config.yaml").read_bytes()
    with pytest.warns(UserWarning, match=r"forced resume: optimizer 0 lr: 0.01 -> 0.05 from step 4 on"):
        cli = build_cli(
            [
                "fit",
                "-c",
                str(config),
                "--ckpt_path=last",
                "--model.init_args.optimizer.init_args.lr=0.05",
                "--force_resume=true",
            ]
        )
    assert cli.trainer.global_step == STEPS
    assert lr_of(run / "checkpoints" / "last.ckpt") == 0.05  # what ran, not the restored 0.01
    assert (run / "config.yaml").read_bytes() == first_config
    resumed = yaml.safe_load((run / "config.resumed_at_step_4.yaml").read_text())
    assert resumed["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.05
    record = yaml.safe_load((run / "run_identity.yaml").read_text())
    assert [s["from_step"] for s in record["segments"]] == [0, 4]
    assert record["identity"] == record["segments"][1]["identity"] != record["segments"][0]["identity"]


def test_a_run_stopped_by_max_steps_resumes_longer_exactly(tmp_path):
    """max_epochs: 1 (the protocol's) and a first fit of 5 of the data's 12 steps: the resume with a
    larger max_steps trains the remaining 7 steps and logs what one uninterrupted fit logs."""
    config = tiny(tmp_path)
    build_cli(["fit", "-c", str(config), "--trainer.max_steps=5"])
    cli = build_cli(["fit", "-c", str(config), "--ckpt_path=last"])
    assert cli.trainer.global_step == STEPS
    (tmp_path / "ref").mkdir()
    build_cli(["fit", "-c", str(tiny(tmp_path / "ref"))])
    resumed = read_scalars(str(tmp_path / "logs" / "mi" / "version_0"))
    reference = read_scalars(str(tmp_path / "ref" / "logs" / "mi" / "version_0"))
    for tag in ("train/loss", "mi/estimate", "mi/true"):
        assert sorted(resumed[tag]) == list(range(STEPS))
        for step in range(STEPS):
            assert math.isclose(resumed[tag][step], reference[tag][step], rel_tol=1e-5, abs_tol=1e-6), (tag, step)
    run = tmp_path / "logs" / "mi" / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 5
    assert yaml.safe_load((run / "config.resumed_at_step_5.yaml").read_text())["trainer"]["max_steps"] == STEPS


def test_a_resume_past_the_end_of_its_data_says_why_it_trains_nothing(tmp_path):
    config = tiny(tmp_path)
    build_cli(["fit", "-c", str(config)])
    with pytest.raises(ResumeError, match=r"trained 0 steps although trainer.max_steps is 30: the run's data ends"):
        build_cli(["fit", "-c", str(config), "--ckpt_path=last", "--trainer.max_steps=30"])
    cli = build_cli(["fit", "-c", str(config), "--ckpt_path=last"])  # same budget: complete, nothing to do
    assert cli.trainer.global_step == STEPS


# ------------------------------------------------------------------------- test / predict
def gaussian_args(tmp_path: Path) -> list[str]:
    return [
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--data.init_args.mi_schedule=[1.0]",
        "--data.init_args.steps_per_level=5",
        "--trainer.max_steps=5",
        "--data.init_args.eval_batches_per_level=2",
    ]


@pytest.fixture
def lightning_log(caplog):
    """Lightning's log (its own stderr handler is bound before pytest captures)."""
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    yield caplog
    logger.removeHandler(caplog.handler)


def test_test_and_predict_use_the_trained_bound_and_critic_from_the_checkpoint(tmp_path, capfd, lightning_log):
    """The README's line after an NWJ fit: ``test -c gaussian.yaml --ckpt_path <NWJ run>`` (no bound
    fragment) reports with NWJ, says so, and uses the trained critic (here 16 hidden units, not the
    config's 2 x 256)."""
    build_cli(
        [
            "fit",
            "-c",
            GAUSSIAN,
            "-c",
            NWJ_FRAGMENT,
            *gaussian_args(tmp_path),
            "--model.init_args.critic.init_args.hidden_dims=[16]",
        ]
    )
    ckpt = tmp_path / "mi" / "nwj" / "version_0" / "checkpoints" / "last.ckpt"
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["bound"]["class_path"] == "pdlightning.bounds.NWJ"
    assert hparams["critic"]["init_args"]["hidden_dims"] == [16]
    capfd.readouterr()
    lightning_log.clear()

    cli = build_cli(["test", "-c", GAUSSIAN, *gaussian_args(tmp_path), f"--ckpt_path={ckpt}"])
    out, err = capfd.readouterr()
    err = lightning_log.text
    assert isinstance(cli.model.bound, NWJ) and cli.model.estimator is None
    assert cli.model.critic.first.out_features == 16  # the trained critic, not the config's 2 x 256
    assert "Held-out MI, reported by NWJ:" in err and "SMILE" not in out + err
    assert "critic, bound and estimator from the checkpoint (trained with NWJ, reported with NWJ)" in err
    assert os.path.isdir(tmp_path / "mi" / "nwj" / "version_0" / "test")  # next to the run, no new version
    assert sorted(os.listdir(tmp_path / "mi" / "nwj")) == ["version_0"]

    cli = build_cli(
        [
            "predict",
            "-c",
            GAUSSIAN,
            *gaussian_args(tmp_path),
            f"--ckpt_path={ckpt}",
            "--trainer.callbacks+=pdlightning.callbacks.PMIWriter",
        ]
    )
    assert (
        isinstance(cli.model.bound, NWJ) and isinstance(cli.model.reporting_bound, NWJ) and cli.model.estimator is None
    )
    rows = (tmp_path / "mi" / "nwj" / "version_0" / "predict" / "pmi.csv").read_text().splitlines()
    assert rows[0] == "row,mi,pmi" and len(rows) == 1 + 2 * 64
    assert sorted(os.listdir(tmp_path / "mi" / "nwj")) == ["version_0"]


def test_an_explicit_reporting_bound_is_used_with_a_warning(tmp_path, capfd, lightning_log):
    build_cli(
        [
            "fit",
            "-c",
            GAUSSIAN,
            "-c",
            NWJ_FRAGMENT,
            *gaussian_args(tmp_path),
            "--model.init_args.critic.init_args.hidden_dims=[16]",
        ]
    )
    ckpt = str(tmp_path / "mi" / "nwj" / "version_0" / "checkpoints" / "last.ckpt")
    capfd.readouterr()
    with pytest.warns(UserWarning, match=r"reporting with DV \(from the command line\).*trained with NWJ"):
        cli = build_cli(
            [
                "test",
                "-c",
                GAUSSIAN,
                *gaussian_args(tmp_path),
                f"--ckpt_path={ckpt}",
                "--model.init_args.estimator=pdlightning.bounds.DV",
            ]
        )
    assert isinstance(cli.model.bound, NWJ) and isinstance(cli.model.estimator, DV)
    assert "reported by DV (trained with NWJ)" in lightning_log.text
    smile = str(REPO / "configs" / "mi" / "bounds" / "smile_tau5.yaml")  # a bound fragment is explicit too
    with pytest.warns(UserWarning, match=r"reporting with SMILE\(tau=5.0\)"):
        cli = build_cli(["test", "-c", GAUSSIAN, "-c", smile, *gaussian_args(tmp_path), f"--ckpt_path={ckpt}"])
    assert isinstance(cli.model.bound, NWJ) and isinstance(cli.model.estimator, SMILE)


def test_a_critic_that_does_not_match_the_checkpoint_is_a_clear_error(tmp_path):
    build_cli(["fit", "-c", GAUSSIAN, *gaussian_args(tmp_path), "--model.init_args.critic.init_args.hidden_dims=[16]"])
    (ckpt,) = (str(path) for path in tmp_path.glob("mi/**/version_0/checkpoints/last.ckpt"))
    with pytest.raises(
        CheckpointError,
        match=r"model.init_args.critic: the checkpoint .* was trained with the critic "
        r"JointCritic\(.*hidden_dims=\[16\]",
    ):
        build_cli(
            [
                "test",
                "-c",
                GAUSSIAN,
                *gaussian_args(tmp_path),
                f"--ckpt_path={ckpt}",
                "--model.init_args.critic.init_args.hidden_dims=[32]",
            ]
        )
    with pytest.raises(CheckpointError, match=r"does not match the checkpoint .*critic"):  # the whole model given
        build_cli(
            [
                "test",
                "-c",
                GAUSSIAN,
                *gaussian_args(tmp_path),
                f"--ckpt_path={ckpt}",
                "--model=pdlightning.modules.MIEstimationModule",
                "--model.init_args.critic.init_args.hidden_dims=[8]",
            ]
        )


@pytest.mark.parametrize("subcommand", ["test", "predict", "validate"])
def test_evaluating_without_a_checkpoint_is_refused_unless_asked_for(subcommand, tmp_path):
    config = tiny(tmp_path)
    with pytest.raises(UntrainedModelError, match=rf"ckpt_path: {subcommand} needs the trained weights"):
        build_cli([subcommand, "-c", str(config)])
    if subcommand == "test":
        cli = build_cli([subcommand, "-c", str(config), "--allow_untrained=true"])
        assert "test/mi_estimate@1" in cli.trainer.callback_metrics
