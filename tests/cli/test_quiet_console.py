"""A quiet console: piped output gets progress lines instead of redrawn bars (pdlightning/cli/progress.py),
``test`` prints the module's table and not Lightning's raw metrics as well, short class
names resolve, and an ordinary fit warns about nothing."""

from __future__ import annotations

import io
import re
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from pdlightning.cli.main import QUIET_WARNINGS, build_cli
from pdlightning.cli.progress import LineProgress, format_duration, format_metric, wants_line_progress
from tests.test_configs import print_config

REPO = Path(__file__).resolve().parents[2]
GAUSSIAN = str(REPO / "configs" / "mi" / "gaussian.yaml")


def small(tmp_path: Path) -> list[str]:
    return [
        "-c",
        GAUSSIAN,
        f"--trainer.logger.init_args.save_dir={tmp_path}",
        "--data.init_args.mi_schedule=[1.0]",
        "--data.init_args.steps_per_level=4",
        "--trainer.max_steps=4",
        "--data.init_args.eval_batches_per_level=1",
        "--model.init_args.critic.init_args.hidden_dims=[8]",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_numbers_and_durations_print_plainly():
    assert format_metric(torch.tensor(0.26813)) == "0.2681"
    assert format_metric(2.0) == "2" and format_metric(float("nan")) == "nan" and format_metric(3) == "3"
    assert format_metric("abc") == "abc"
    assert [format_duration(s) for s in (9.4, 75.3, 3725)] == ["9s", "1m15s", "1h02m"]
    with pytest.raises(ValueError, match="every_seconds: expected a positive number"):
        LineProgress(every_seconds=0)


def test_line_progress_only_where_output_is_not_a_terminal_and_no_bar_is_configured():
    assert wants_line_progress({}, [], stdout=io.StringIO())
    assert not wants_line_progress({}, [], stdout=_Terminal())
    assert not wants_line_progress({"enable_progress_bar": False}, [], stdout=io.StringIO())
    assert not wants_line_progress({}, [TQDMProgressBar()], stdout=io.StringIO())


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).pow(2).mean()
        self.log("loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val", self.layer(batch).mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_line_progress_prints_plain_training_lines_and_nothing_per_validation_batch():
    out = io.StringIO()
    data = torch.utils.data.DataLoader(torch.randn(40, 2), batch_size=4)
    trainer = L.Trainer(
        max_steps=10,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[LineProgress(every_seconds=1e-9, stream=out)],
    )
    trainer.fit(_Tiny(), data, data)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 11  # one per training step (every_seconds ~ 0) and the closing line
    assert lines[0].startswith("step 1/10 (10%) ") and " left: loss=" in lines[0]
    assert lines[-1].startswith("step 10/10 (100%) done in ") and "val=" in lines[-1]
    assert all("tensor(" not in line and "v_num" not in line for line in lines)


def test_a_piped_fit_gets_line_progress_unless_the_bar_is_off(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pdlightning"])
    cli = build_cli(small(tmp_path), run=False)  # pytest captures stdout: not a terminal
    assert isinstance(cli.trainer.progress_bar_callback, LineProgress)
    cli = build_cli([*small(tmp_path), "--trainer.enable_progress_bar=false"], run=False)
    assert cli.trainer.progress_bar_callback is None
    monkeypatch.setattr(sys, "stdout", _Terminal())
    cli = build_cli(small(tmp_path), run=False)
    assert isinstance(cli.trainer.progress_bar_callback, TQDMProgressBar)


def test_test_leaves_lightnings_metrics_table_off_unless_asked_and_validate_keeps_it(capsys, tmp_path):
    """``test`` prints the module's held-out table; ``validate`` has no table of its own."""
    assert print_config(["test", *small(tmp_path)], capsys)["verbose"] is False
    assert print_config(["test", *small(tmp_path), "--verbose=true"], capsys)["verbose"] is True
    assert print_config(["validate", *small(tmp_path)], capsys)["verbose"] is True


def test_short_class_names_resolve_to_the_packages_classes(capsys, tmp_path):
    config = print_config(
        [
            "fit",
            *small(tmp_path),
            "--model=MIEstimationModule",
            "--model.critic=SeparableCritic",
            "--model.critic.x_dim=20",
            "--model.critic.y_dim=20",
            "--model.bound=NWJ",
            "--data=CorrelatedGaussianDataModule",
            "--trainer.callbacks+=BiasVarianceMSE",
        ],
        capsys,
    )
    assert config["model"]["class_path"] == "pdlightning.modules.MIEstimationModule"
    assert config["model"]["init_args"]["critic"]["class_path"] == "pdlightning.critics.SeparableCritic"
    assert config["model"]["init_args"]["bound"]["class_path"] == "pdlightning.bounds.NWJ"
    assert config["data"]["class_path"] == "pdlightning.data.CorrelatedGaussianDataModule"
    assert config["trainer"]["callbacks"][-1]["class_path"] == "pdlightning.callbacks.BiasVarianceMSE"


def test_an_ordinary_fit_and_test_warn_about_nothing(tmp_path, monkeypatch):
    """Every warning is recorded, under Python's default filters plus the CLI's (not pytest's, which
    ignore more: setup.cfg)."""
    monkeypatch.setattr(sys, "argv", ["pdlightning"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)  # Python ignores these outside __main__
        for pattern in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, category=Warning)
        build_cli(["fit", *small(tmp_path), "--trainer.enable_progress_bar=false"])
        ckpt = tmp_path / "mi" / "version_0" / "checkpoints" / "last.ckpt"
        build_cli(["test", *small(tmp_path), f"--ckpt_path={ckpt}", "--trainer.enable_progress_bar=false"])
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]


def test_under_ddp_only_the_gathered_held_out_metrics_go_unwarned() -> None:
    """The held-out metrics are computed from every process's units already; ``test/loss`` is one rank's mean,
    and Lightning's advice to sync it stays."""

    def quiet(name: str) -> bool:
        message = f"It is recommended to use `self.log('{name}', ..., sync_dist=True)` when logging on epoch level"
        return any(re.match(pattern, message) for pattern in QUIET_WARNINGS)

    assert quiet("test/mi_estimate@2") and quiet("test/mi_ci_high/nwj@10") and quiet("val/mi_stderr@4")
    assert not quiet("test/loss") and not quiet("train/loss")
