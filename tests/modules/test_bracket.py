"""A fit holding lower- and upper-bound members states a bracket at test: the largest lower and the smallest upper
estimate per level, with their intervals, and says when the two cross (which no MI satisfies)."""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from pdlightning.bounds import CLUB, NWJ, InfoNCE
from pdlightning.critics import ConditionalGaussianCritic, JointCritic
from pdlightning.data import CorrelatedGaussianDataModule
from pdlightning.modules import Member, MIEstimationModule
from pdlightning.modules.reporting import brackets
from pdlightning.results import EstimateResult
from pdlightning.uncertainty import Interval


def _row(member: str, estimate: float, level: float = 2.0) -> EstimateResult:
    return EstimateResult(
        Interval(estimate, 0.1, estimate - 0.2, estimate + 0.2, 100, "pairs", "bootstrap"),
        member,
        member=member,
        true_mi=level,
    )


SIDES = {"infonce": "lower", "nwj": "lower", "club": "upper", "l1out": "upper", "smile": None}


def test_the_bracket_is_the_largest_lower_and_the_smallest_upper_estimate_per_level():
    rows = [
        _row("infonce", 1.8),
        _row("nwj", 1.9),
        _row("smile", 2.5),
        _row("club", 2.6),
        _row("l1out", 2.2),
        _row("nwj", 3.0, level=4.0),
    ]
    (bracket,) = brackets(rows, lambda r: SIDES[r.member])  # no upper bound at 4 nats: no bracket there
    assert (bracket.lower.member, bracket.upper.member, bracket.crossed) == ("nwj", "l1out", False)
    text = bracket.describe()
    assert "1.900 [1.700, 2.100] (nwj) <= MI <= 2.200 [2.000, 2.400] (l1out)" in text and "holds the true MI" in text
    assert bracket.as_dict()["lower"]["estimate"] == 1.9


def test_a_crossed_bracket_is_said_to_be_no_result():
    (bracket,) = brackets([_row("infonce", 2.4), _row("club", 2.1)], lambda r: SIDES[r.member])
    assert bracket.crossed and "CROSSED" in bracket.describe() and "not a result" in bracket.describe()


def test_a_fit_of_lower_and_upper_members_prints_and_writes_its_bracket(tmp_path, capsys, caplog):
    L.seed_everything(0)
    module = MIEstimationModule(
        JointCritic(2, 2, [32]),
        members=[
            Member(bound=InfoNCE(), name="infonce"),
            Member(bound=NWJ(), name="nwj"),
            Member(bound=CLUB(), name="club", critic=ConditionalGaussianCritic(2, 2, [32])),
        ],
        summary=False,
    )
    data = CorrelatedGaussianDataModule(dim=2, mi_schedule=[1.0], steps_per_level=150, batch_size=64, seed=1)
    trainer = L.Trainer(
        max_steps=150,
        logger=TensorBoardLogger(tmp_path, name="b"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(module, data)
    with caplog.at_level("INFO"):
        trainer.test(module, data, verbose=False)
    printed = caplog.text + capsys.readouterr().out
    assert "bracket at true MI 1.00:" in printed and "(club)" in printed
    (path,) = tmp_path.rglob("results.json")
    (written,) = json.loads(path.read_text())["brackets"]
    assert written["upper"]["member"] == "club" and written["lower"]["member"] in ("infonce", "nwj")
    assert written["lower"]["estimate"] < written["upper"]["estimate"]
