"""Members are known by name, never by position: checkpoints store the member table, and ``test`` / ``predict`` map
the weights by name (another order, a subset), refuse a member the checkpoint lacks, and list retired members."""

from __future__ import annotations

import json
import math
import textwrap
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from pdlightning.bounds import NWJ, SMILE, PairScores
from pdlightning.cli.main import build_cli
from pdlightning.critics import JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import Member, MIEstimationModule
from pdlightning.records import MemberId

MEMBERS = ["nwj", "smile_tau5", "infonce"]


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "three.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        seed_everything: 0
        trainer:
          max_epochs: 1
          max_steps: 12
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
            members: {MEMBERS}
            summary: false
            optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.01}}}}
        data:
          class_path: pdlightning.data.CorrelatedGaussianDataModule
          init_args: {{dim: 3, mi_schedule: [0.5, 1.0], steps_per_level: 6, batch_size: 16, seed: 5}}
        """)
    )
    return config


def _members_fragment(tmp_path: Path, members: list[str]) -> Path:
    fragment = tmp_path / f"members_{'_'.join(members)}.yaml"
    fragment.write_text(f"model:\n  init_args:\n    members: {members}\n")
    return fragment


def _cli(*args: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_cli(list(args))


def _rows(directory: Path) -> dict[tuple[str, float], dict]:
    (path,) = directory.glob("results*.json")
    rows = json.loads(path.read_text())["results"]
    return {(r["key"], r["true_mi"]): r for r in rows if r.get("true_mi") is not None and r["status"] == "ok"}


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    config = _config(tmp_path)
    _cli("fit", "-c", str(config))
    return config, tmp_path / "logs" / "mi" / "version_0" / "checkpoints" / "last.ckpt"


def test_the_checkpoint_stores_the_member_table(trained):
    _, checkpoint = trained
    state = torch.load(checkpoint, weights_only=True)
    assert [MemberId.from_json(m).key for m in state["members"]] == MEMBERS
    assert set(state["member_layout"]["critics"]) == set(MEMBERS)


def test_members_listed_in_another_order_are_evaluated_by_name(tmp_path, trained):
    """`test -c run.yaml -c members_reordered.yaml` (a fragment holding only the members) gives every member the
    row it gives in the trained order: the weights are mapped by name. Loading them by position (the bug this
    test was written for) gives `nwj` the infonce critic and a row of another value."""
    config, checkpoint = trained
    _cli("test", "-c", str(config), f"--ckpt_path={checkpoint}")
    test_dir = tmp_path / "logs" / "mi" / "version_0" / "test"
    in_order = _rows(test_dir)
    for path in test_dir.glob("results*.json"):
        path.rename(tmp_path / f"first_{path.name}")
    reordered = _members_fragment(tmp_path, ["infonce", "nwj", "smile_tau5"])
    _cli("test", "-c", str(config), "-c", str(reordered), f"--ckpt_path={checkpoint}")
    other_order = _rows(test_dir)
    assert set(other_order) == set(in_order) and len(in_order) == 2 * 3
    for key, row in in_order.items():
        assert other_order[key]["estimate"] == pytest.approx(row["estimate"], abs=1e-6), key
    # the three members really differ, so a mix-up could not pass unnoticed
    assert len({round(in_order[(m, 1.0)]["estimate"], 4) for m in MEMBERS}) == 3


def test_a_subset_is_evaluated_and_the_rest_are_listed_as_left_out(tmp_path, trained, caplog):
    config, checkpoint = trained
    _cli("test", "-c", str(config), f"--ckpt_path={checkpoint}")
    test_dir = tmp_path / "logs" / "mi" / "version_0" / "test"
    everyone = _rows(test_dir)
    for path in test_dir.glob("results*.json"):
        path.rename(tmp_path / f"all_{path.name}")
    subset = _members_fragment(tmp_path, ["smile_tau5", "nwj"])
    with caplog.at_level("INFO", logger="lightning.pytorch"):
        _cli("test", "-c", str(config), "-c", str(subset), f"--ckpt_path={checkpoint}")
    document = json.loads(next(test_dir.glob("results*.json")).read_text())
    assert document["left_out"] == ["infonce"]
    chosen = _rows(test_dir)
    assert {key for key, _ in chosen} == {"smile_tau5", "nwj"}
    for key, row in chosen.items():
        assert row["estimate"] == pytest.approx(everyone[key]["estimate"], abs=1e-6), key
    assert "left out (in the checkpoint, not asked for): infonce" in caplog.text


def test_a_member_the_checkpoint_lacks_is_an_error_naming_it(tmp_path, trained):
    config, checkpoint = trained
    extra = _members_fragment(tmp_path, ["nwj", "smile_tau1"])
    with pytest.raises(ValueError, match=r"members: the checkpoint has no member 'smile_tau1'.*holds \['nwj'"):
        _cli("test", "-c", str(config), "-c", str(extra), f"--ckpt_path={checkpoint}")


def test_resuming_a_fit_with_the_members_in_another_order_is_refused(tmp_path, trained):
    config, checkpoint = trained
    reordered = _members_fragment(tmp_path, ["infonce", "nwj", "smile_tau5"])
    with pytest.raises(Exception, match=r"resuming a fit needs the checkpoint's members in its order"):
        _cli("fit", "-c", str(config), "-c", str(reordered), f"--ckpt_path={checkpoint}", "--force_resume=true")


def test_a_retired_member_appears_in_the_table_and_results_with_its_step_and_error(tmp_path, caplog):
    """A member retired for divergence is never silently dropped: `test` lists it as retired, with the step and
    the error, in the printed table and in results.json."""

    class PoisonedFromStep4(NWJ):
        calls = 0

        def forward(self, scores=None, **kwargs):
            type(self).calls += 1
            if type(self).calls > 4:
                scores = PairScores(scores.joint * 0 + 1e4, scores.marginal * 0 + 1e4)
            return super().forward(scores)

    module = MIEstimationModule(
        critic=JointCritic(3, 3, [16]),
        members=[Member(SMILE(), name="smile", seed=1), Member(PoisonedFromStep4(), name="bad", seed=2)],
        on_member_divergence="retire",
        summary=False,
    )
    data = CorrelatedGaussianDataModule(dim=3, mi_schedule=[1.0], steps_per_level=10, batch_size=16, seed=0)
    trainer = L.Trainer(
        max_steps=10,
        logger=False,
        default_root_dir=str(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator="cpu",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, data)
        with caplog.at_level("INFO", logger="lightning.pytorch"):
            trainer.test(module, data, verbose=False)
    assert module.retired["bad"]["step"] == 4
    document = json.loads((tmp_path / "results.json").read_text())
    (retired,) = [r for r in document["results"] if r["status"] == "retired"]
    assert retired["member"] == "bad" and retired["retired_step"] == 4 and "non-finite" in retired["error"]
    assert "estimate" not in retired  # no number for a member whose weights stopped at their last finite step
    assert any(r["member"] == "smile" and math.isfinite(r["estimate"]) for r in document["results"])
    assert "retired" in caplog.text and "at step 4: member 'bad'" in caplog.text


def test_evaluations_never_overwrite_each_other(tmp_path, trained):
    """A second `test` of one checkpoint (here with another reporting subset) and a second `predict` write
    results_2.json and pmi_2.csv beside the first ones, and the first ones stay as they were."""
    config, checkpoint = trained
    run = tmp_path / "logs" / "mi" / "version_0"
    _cli("test", "-c", str(config), f"--ckpt_path={checkpoint}")
    first = (run / "test" / "results.json").read_text()
    subset = _members_fragment(tmp_path, ["nwj"])
    _cli("test", "-c", str(config), "-c", str(subset), f"--ckpt_path={checkpoint}")
    assert (run / "test" / "results.json").read_text() == first
    assert json.loads((run / "test" / "results_2.json").read_text())["left_out"] == ["smile_tau5", "infonce"]
    for _ in range(2):
        _cli(
            "predict",
            "-c",
            str(config),
            f"--ckpt_path={checkpoint}",
            "--trainer.callbacks+=pdlightning.callbacks.PMIWriter",
        )
    header = (run / "predict" / "pmi.csv").read_text().splitlines()[0]
    assert header == "row,mi,pmi_nwj,pmi_smile_tau5,pmi_infonce"
    assert (run / "predict" / "pmi_2.csv").read_text() == (run / "predict" / "pmi.csv").read_text()
