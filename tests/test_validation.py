"""Bad inputs fail at set-up with a message that names the parameter and what was expected.

``BAD_INPUTS`` is the list of bad inputs tried; ``python -m tests.test_validation`` prints the
message each one produces.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Callable

import pytest
import torch

from pdlightning.bounds import DV
from pdlightning.cli.main import build_cli
from pdlightning.critics import JointCritic, SeparableCritic
from pdlightning.data import CorrelatedGaussianDataModule, MISchedule, check_mi_batch
from pdlightning.modules import MIEstimationModule

QUIET = [
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.max_steps=2",
    "--trainer.limit_val_batches=0",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.accelerator=cpu",
]


def tiny_config(directory: Path, **overrides: str) -> Path:
    """A 2-step CLI config in ``directory``; ``overrides`` replace whole lines by key."""
    lines = {
        "critic": "    critic: {class_path: pdlightning.critics.JointCritic, init_args: {x_dim: 3, y_dim: 3, hidden_dims: [8]}}",
        "bound": "    bound: {class_path: pdlightning.bounds.DV}",
        "data": "  init_args: {dim: 3, mi_schedule: [1.0], steps_per_level: 2, batch_size: 8}",
        "trainer": "trainer:",
    }
    lines.update(overrides)
    config = directory / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        {lines["trainer"]}
          logger:
            class_path: lightning.pytorch.loggers.CSVLogger
            init_args: {{save_dir: {directory / "logs"}}}
        model:
          class_path: pdlightning.modules.MIEstimationModule
          init_args:
        {lines["critic"]}
        {lines["bound"]}
        data:
          class_path: pdlightning.data.CorrelatedGaussianDataModule
        {lines["data"]}
        """)
    )
    return config


def cli(directory: Path, *args: str, **overrides: str) -> Callable[[], object]:
    return lambda: build_cli(["fit", "-c", str(tiny_config(directory, **overrides)), *QUIET, *args])


def batch(n: int = 4, d: int = 3, **extra: object) -> dict:
    return {"x": torch.randn(n, d), "y": torch.randn(n, d), **extra}


def run_module_step(module: MIEstimationModule, data: dict) -> object:
    return module.training_step(data, 0)


def _bad_inputs(tmp: Path) -> list[tuple[str, Callable[[], object], tuple[type, ...], list[str]]]:
    """``(what, action, exception types, fragments the message must contain)``."""
    critic = JointCritic(3, 3, (8,))
    return [
        # -- critic input size vs data
        (
            "critic x_dim 5 for 3-d data (CLI)",
            cli(
                tmp,
                critic="    critic: {class_path: pdlightning.critics.JointCritic, init_args: {x_dim: 5, y_dim: 3, hidden_dims: [8]}}",
            ),
            (ValueError,),
            ["critic x_dim", "expects 5", "yields 3", "model.init_args.critic.init_args.x_dim: 3"],
        ),
        (
            "critic y_dim 2 for a 3-d batch (no datamodule dims)",
            lambda: SeparableCritic(3, 2, (4,))(torch.randn(4, 3), torch.randn(4, 3)),
            (ValueError,),
            ["y: the critic expects 2 features per sample (y_dim), got 3"],
        ),
        ("critic x_dim 0", lambda: JointCritic(0, 3), (ValueError,), ["x_dim: expected a positive number"]),
        # -- batch size and negatives
        (
            "data batch_size 1",
            lambda: CorrelatedGaussianDataModule(batch_size=1),
            (ValueError,),
            ["batch_size: need at least 2 pairs per batch for negatives, got 1"],
        ),
        (
            "data eval_batch_size 1",
            lambda: CorrelatedGaussianDataModule(eval_batch_size=1),
            (ValueError,),
            ["eval_batch_size: need at least 2"],
        ),
        (
            "a batch of 1 pair without explicit negatives",
            lambda: check_mi_batch(batch(n=1)),
            (ValueError,),
            ["need at least 2 samples for in-batch negative pairs, got 1"],
        ),
        ("a 1x1 score matrix", lambda: DV()(torch.zeros(1, 1)), (ValueError,), ["batch size must be >= 2"]),
        # -- x / y and explicit negatives
        (
            "x has 4 rows, y has 5",
            lambda: check_mi_batch({"x": torch.zeros(4, 3), "y": torch.zeros(5, 3)}),
            (ValueError,),
            ["batch['x'] and batch['y']: batch sizes differ (4 vs 5)"],
        ),
        (
            "x_marginal without y_marginal",
            lambda: check_mi_batch(batch(x_marginal=torch.zeros(4, 3))),
            (ValueError,),
            ["'x_marginal' and 'y_marginal' must be given together"],
        ),
        (
            "x_marginal with 3 rows for 4 joint pairs",
            lambda: check_mi_batch(batch(x_marginal=torch.zeros(3, 3), y_marginal=torch.zeros(4, 3))),
            (ValueError,),
            ["batch['x_marginal']", "(4, 3)", "got (3, 3)"],
        ),
        (
            "y_marginal with 2 features for 3-d y",
            lambda: check_mi_batch(batch(x_marginal=torch.zeros(4, 3), y_marginal=torch.zeros(4, 2))),
            (ValueError,),
            ["batch['y_marginal']", "shaped like batch['y']", "(4, 3), got (4, 2)"],
        ),
        (
            "in_joint_support of shape [3] for 4 rows",
            lambda: check_mi_batch(
                batch(
                    x_marginal=torch.zeros(4, 3),
                    y_marginal=torch.zeros(4, 3),
                    in_joint_support=torch.zeros(3, dtype=torch.bool),
                )
            ),
            (ValueError,),
            ["batch['in_joint_support']: expected a [n=4] bool tensor, got (3,)"],
        ),
        (
            "explicit marginal scores [3, 2] for 4 joint scores",
            lambda: DV()(joint=torch.zeros(4), marginal=torch.zeros(3, 2)),
            (ValueError,),
            ["marginal scores: expected shape [n=4, k], got (3, 2)"],
        ),
        (
            "a batch without 'y'",
            lambda: check_mi_batch({"x": torch.zeros(4, 3)}),
            (ValueError,),
            ["batch: missing key 'y'"],
        ),
        (
            "a NaN true MI in the batch",
            lambda: check_mi_batch(batch(mi=torch.tensor(float("nan")))),
            (ValueError,),
            ["batch['mi']: the true MI must be finite"],
        ),
        (
            "module step on mismatched x/y",
            lambda: run_module_step(MIEstimationModule(critic, DV()), {"x": torch.zeros(4, 3), "y": torch.zeros(5, 3)}),
            (ValueError,),
            ["batch sizes differ (4 vs 5)"],
        ),
        # -- YAML / CLI
        (
            "misspelled critic key hiden_dims (YAML)",
            cli(
                tmp,
                critic="    critic: {class_path: pdlightning.critics.JointCritic, init_args: {x_dim: 3, y_dim: 3, hiden_dims: [8]}}",
            ),
            (SystemExit,),
            ["hiden_dims"],
        ),
        ("misspelled top-level key trainr (YAML)", cli(tmp, trainer="trainr:"), (SystemExit,), ["trainr"]),
        (
            "unknown bound class",
            cli(tmp, bound="    bound: {class_path: pdlightning.bounds.NotABound}"),
            (SystemExit,),
            ["NotABound"],
        ),
        (
            "non_finite: ignore",
            cli(tmp, "--model.init_args.non_finite=ignore"),
            (SystemExit,),
            ["non_finite", "ignore"],
        ),
        # -- missing files
        ("missing config file", lambda: build_cli(["fit", "-c", str(tmp / "nope.yaml")]), (SystemExit,), ["nope.yaml"]),
        (
            "missing checkpoint file",
            cli(tmp, f"--ckpt_path={tmp / 'missing.ckpt'}"),
            (FileNotFoundError,),
            ["ckpt_path: no checkpoint file at", "missing.ckpt"],
        ),
        # -- schedules
        ("mi_schedule []", lambda: MISchedule([], 10), (ValueError,), ["mi_schedule: expected at least one MI level"]),
        ("mi_schedule [2, -1]", lambda: MISchedule([2.0, -1.0], 10), (ValueError,), ["mi_schedule", "-1.0 at index 1"]),
        ("mi_schedule [nan]", lambda: MISchedule([math.nan], 10), (ValueError,), ["mi_schedule", "nan"]),
        ("mi_schedule [inf]", lambda: MISchedule([math.inf], 10), (ValueError,), ["mi_schedule", "inf"]),
        ("mi_schedule [true]", lambda: MISchedule([True], 10), (ValueError,), ["mi_schedule", "True"]),
        (
            "steps_per_level 0",
            lambda: MISchedule([1.0], 0),
            (ValueError,),
            ["steps_per_level: expected a positive integer, got 0"],
        ),
        (
            "mi_schedule [.nan] (YAML)",
            cli(tmp, data="  init_args: {dim: 3, mi_schedule: [.nan], steps_per_level: 2, batch_size: 8}"),
            (ValueError, SystemExit),
            ["mi_schedule"],
        ),
        (
            "mi_schedule [] (YAML)",
            cli(tmp, data="  init_args: {dim: 3, mi_schedule: [], steps_per_level: 2, batch_size: 8}"),
            (ValueError, SystemExit),
            ["mi_schedule"],
        ),
        (
            "steps_per_level -5 (YAML)",
            cli(tmp, data="  init_args: {dim: 3, mi_schedule: [1.0], steps_per_level: -5, batch_size: 8}"),
            (ValueError, SystemExit),
            ["steps_per_level"],
        ),
        (
            "1000 nats over dim 3",
            lambda: CorrelatedGaussianDataModule(dim=3, mi_schedule=[1000.0]),
            (ValueError,),
            ["mi_schedule: 1000 nats over dim=3", "rho rounds to 1"],
        ),
        # -- bound and critic hyper-parameters
        (
            "SMILE tau -1",
            lambda: __import__("pdlightning.bounds", fromlist=["SMILE"]).SMILE(tau=-1.0),
            (ValueError,),
            ["tau: expected a positive clip value"],
        ),
        (
            "MINE ema_rate 0",
            lambda: __import__("pdlightning.bounds", fromlist=["MINE"]).MINE(ema_rate=0.0),
            (ValueError,),
            ["ema_rate: expected a value in (0, 1]"],
        ),
        (
            "separable temperature 0",
            lambda: SeparableCritic(3, 3, temperature=0.0),
            (ValueError,),
            ["temperature: expected a positive value"],
        ),
        (
            "unknown activation",
            lambda: JointCritic(3, 3, activation="relu6"),
            (ValueError,),
            ["activation: expected one of"],
        ),
    ]


def _message(action: Callable[[], object], expected: tuple[type, ...], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(expected) as info:
        action()
    captured = capsys.readouterr()
    return f"{type(info.value).__name__}: {info.value}\n{captured.err}"


CASE_IDS = [case[0] for case in _bad_inputs(Path("."))]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_bad_input_names_the_parameter(index: int, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    what, action, expected, fragments = _bad_inputs(tmp_path)[index]
    message = _message(action, expected, capsys)
    for fragment in fragments:
        assert fragment in message, f"{what}: {fragment!r} not in {message!r}"


def test_critic_dims_are_checked_before_the_first_step(tmp_path: Path) -> None:
    """The mismatch is reported from ``setup``: no optimiser step ran, no batch was drawn."""
    with pytest.raises(ValueError, match="critic y_dim") as info:
        cli(
            tmp_path,
            critic="    critic: {class_path: pdlightning.critics.JointCritic, init_args: {x_dim: 3, y_dim: 4, hidden_dims: [8]}}",
        )()
    assert any(frame.name == "setup" for frame in info.traceback)


if __name__ == "__main__":  # print the message of every bad input (for the closing note)
    import contextlib
    import io
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        for what, action, _expected, _ in _bad_inputs(Path(directory)):
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    action()
                text = "NO ERROR"
            except BaseException as exc:  # noqa: BLE001 - we print whatever it was
                text = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, SystemExit):
                    lines = err.getvalue().splitlines()
                    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), 0)
                    text = " ".join(line.strip() for line in lines[start:])
            print(f"- {what}: {text.strip()[:400]}")
