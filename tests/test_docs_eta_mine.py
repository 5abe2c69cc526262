"""docs/eta_mine.md works as written: every command of its bash blocks parses from a directory outside the clone
(as the README's do, tests/test_configs.py), and its Python blocks run (``py`` blocks are illustrations with paths
of the reader's own runs and are not run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_configs import print_config, readme_commands

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")

DOC = Path(__file__).resolve().parents[1] / "docs" / "eta_mine.md"


def test_the_page_has_the_commands_of_every_piece():
    commands = [" ".join(args) for _, args in readme_commands(DOC)]
    for config in ("kl/gaussians.yaml", "kl/gaussian_student.yaml", "gan/grid25.yaml", "dim/mnist.yaml"):
        assert any(config in c for c in commands), config
    assert any("linear_eval/mnist.yaml" in c and "dim/mnist" in c for c in commands)


@pytest.mark.parametrize(
    "tool, args", readme_commands(DOC), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:90]
)
def test_every_command_parses_from_outside_the_clone(tool, args, tmp_path, monkeypatch, capsys):
    assert tool == "pdlightning"
    monkeypatch.chdir(tmp_path)
    assert print_config(args, capsys)["model"]["class_path"]


PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_every_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(PYTHON_BLOCKS[index], f"docs/eta_mine.md python block {index}", "exec"), {"__name__": "docs"})
