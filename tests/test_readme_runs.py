"""The README's first five minutes run as written, at tiny budgets.

Every ``pdlightning`` command of the README's "The first five minutes" and "Your own data" sections runs through the
CLI (``build_cli``), grouped by the config it fits and in the README's order within a group (the ``test`` after a
``fit`` evaluates that fit's checkpoint), with ``--trainer.max_steps=3`` for a fit and the logs in a temporary
folder; each must finish and write its outputs. The section's Python block runs with ``pdlightning.estimate_mi`` at
a few steps. The commands on your own arrays (``configs/mi/arrays.yaml``, ``pdlightning.estimate_mi``) skip until
this checkout has them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import pdlightning
from pdlightning.cli.configs import packaged_configs_dir
from pdlightning.cli.main import build_cli
from tests.test_configs import REPO, markdown_commands

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")]

README = (REPO / "README.md").read_text()
SECTIONS = ("The first five minutes", "Your own data")


def section(title: str) -> str:
    """The text of the README's ``## <title>`` section (up to the next ``## `` heading)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def first_commands() -> list[list[str]]:
    """The arguments of every ``pdlightning`` command of :data:`SECTIONS`, in the README's order."""
    return [args for title in SECTIONS for tool, args in markdown_commands(section(title)) if tool == "pdlightning"]


def config_of(args: list[str]) -> str:
    """The first ``-c`` config of a command, relative to the configs folder."""
    value = args[args.index("-c") + 1]
    return value[len("configs/") :] if value.startswith("configs/") else value


GROUPS: dict[str, list[list[str]]] = {}
for _args in first_commands():
    GROUPS.setdefault(config_of(_args), []).append(_args)


def test_the_section_teaches_the_demo_and_the_arrays():
    assert "mi/demo.yaml" in GROUPS and any(a[0] == "fit" for a in GROUPS["mi/demo.yaml"])
    assert "mi/arrays.yaml" in GROUPS
    assert "pdlightning.estimate_mi(" in section("The first five minutes")


def _files(root: Path, name: str) -> set[Path]:
    return set(root.rglob(name))


@pytest.mark.parametrize("config", sorted(GROUPS))
def test_the_commands_run_at_a_tiny_budget_and_write_their_outputs(config, tmp_path, monkeypatch):
    if not (packaged_configs_dir() / config).is_file():
        pytest.skip(f"configs/{config} is not in this checkout yet (it comes with pdlightning.estimate_mi)")
    monkeypatch.chdir(tmp_path)
    logs = tmp_path / "logs"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    np.save("x.npy", x)  # the arrays the "own data" commands name
    np.save("y.npy", 0.8 * x + 0.6 * rng.normal(size=(200, 3)))
    test_after_fit = bool(yaml.safe_load((packaged_configs_dir() / config).read_text()).get("test_after_fit"))
    for args in GROUPS[config]:
        checkpoints, results = _files(logs, "last.ckpt"), _files(logs, "results*.json")
        extra = [f"--trainer.logger.init_args.save_dir={logs}"]
        if args[0] == "fit":
            extra.append("--trainer.max_steps=3")
        build_cli([*args, *extra])
        if args[0] == "fit":
            new = _files(logs, "last.ckpt") - checkpoints
            assert len(new) == 1, (args, new)
            run = next(iter(new)).parent.parent
            assert (run / "config.yaml").is_file(), args
            if config == "mi/demo.yaml":
                assert "| 2 | 3 |" in (run / "bias_variance.md").read_text()  # the level table the README shows
        if args[0] == "test" or (args[0] == "fit" and test_after_fit):
            new = _files(logs, "results*.json") - results
            assert len(new) == 1, (args, new)


def test_the_python_block_runs(tmp_path, monkeypatch):
    if not hasattr(pdlightning, "estimate_mi"):
        pytest.skip("pdlightning.estimate_mi is not in this checkout yet")
    blocks = re.findall(r"```python\n(.*?)```", section("The first five minutes"), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    estimate_mi = pdlightning.estimate_mi

    def tiny(*args, **kwargs):
        return estimate_mi(*args, **{**kwargs, "steps": 3, "progress": False})

    monkeypatch.setattr(pdlightning, "estimate_mi", tiny)
    namespace: dict = {"__name__": "readme"}
    exec(compile(blocks[0], "README.md python block", "exec"), namespace)
    shown = repr(namespace["result"])
    assert "smile_tau5" in shown and "infonce" in shown
