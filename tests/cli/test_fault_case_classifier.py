"""The classifier of benchmarks/fault_cases.py (issue 14's table): each class is reachable, and an error
counts as good only when its message names what the case expects, without a stack."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fault_cases.py"


@pytest.fixture(scope="module")
def fc():
    spec = importlib.util.spec_from_file_location("fault_cases", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


STACK = """Traceback (most recent call last):
  File "x.py", line 1, in <module>
    main()
ValueError: batch_size: need at least 2 pairs per batch for negatives, got -8
"""
CLEAR = "pdlightning: error: batch_size: need at least 2 pairs per batch for negatives, got -8\n(set PDLIGHTNING_DEBUG=1 to see the traceback)\n"
USAGE = 'usage: pdlightning [-h] [--batch_size B] fit\nerror: Parser key "data": something went wrong\n'


def test_errors_are_good_only_when_clear_and_naming_the_parameter(fc):
    expect = fc.error("batch_size")
    assert fc.classify(2, CLEAR, expect)[0] == "good"
    assert fc.classify(1, STACK, expect)[0] == "traceback"
    # the usage line names --batch_size, the error itself does not: unclear
    assert fc.classify(2, USAGE, expect) == ("unclear", "the message does not name batch_size")
    assert fc.classify(2, CLEAR, fc.error(("lr", "batch_size"), "-8"))[0] == "good"
    assert fc.classify(2, CLEAR, fc.error("batch_size", "train_x.npy"))[0] == "unclear"


def test_exit_zero_where_an_error_was_due_or_a_failed_check_is_silent_wrong(fc):
    assert fc.classify(0, "", fc.error("batch_size"))[0] == "silent wrong"
    assert fc.classify(0, "", fc.success(), fc.Check(False, "pmi.csv: 20 rows, expected 21")) == (
        "silent wrong",
        "pmi.csv: 20 rows, expected 21",
    )
    assert fc.classify(0, "", fc.success(), fc.Check(True, "ok"))[0] == "good"
    assert fc.classify(0, "", fc.either("lr"), fc.Check(False, "lr 5e-4 trained"))[0] == "silent wrong"


def test_a_failure_where_a_result_was_expected_is_never_good(fc):
    assert fc.classify(1, "pdlightning: error: something\n", fc.success())[0] == "unclear"
    assert fc.classify(1, STACK, fc.success())[0] == "traceback"


def test_either_accepts_a_clear_refusal(fc):
    assert fc.classify(2, "pdlightning: error: lr: refused on resume\n", fc.either("lr"))[0] == "good"


def test_hang_and_data_loss_come_first(fc):
    assert fc.classify(None, "", fc.success())[0] == "hang"
    lost = fc.Check(False, "no loadable checkpoint left", lost=True)
    assert fc.classify(0, "", fc.success(), lost)[0] == "data loss"
    assert fc.classify(2, CLEAR, fc.error("batch_size"), lost)[0] == "data loss"


def test_error_message_picks_the_raised_line_or_the_error_line(fc):
    assert fc.error_message(STACK).startswith("ValueError: batch_size")
    assert (
        fc.error_message(CLEAR)
        == "pdlightning: error: batch_size: need at least 2 pairs per batch for negatives, got -8"
    )
    assert fc.error_message(USAGE).startswith('error: Parser key "data"')


def test_a_parameter_named_only_in_the_echoed_value_is_not_named(fc):
    echoed = (
        "pdlightning: error: Does not validate against any of the Union subtypes\n"
        "Errors:\n  - Trying to create tensor with negative dimension -4: [-4, 6]\n"
        "Given value: Namespace(critic=Namespace(hidden_dims=[-4]))\n"
    )
    assert fc.classify(2, echoed, fc.error("hidden_dims")) == ("unclear", "the message does not name hidden_dims")
    assert fc.classify(2, echoed.replace("  - Trying", "  - hidden_dims: Trying"), fc.error("hidden_dims"))[0] == "good"
