"""The package installs as declared: every sub-package is listed, the top-level callbacks/ folder
imports as ``pdlightning.callbacks`` (never as a bare ``callbacks``) from a plain install, and the
configs ship with it: ``fit`` and the report find them from a directory outside the clone."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def declared_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_every_package_folder_is_declared():
    found = {"pdlightning.callbacks", "pdlightning.configs"}
    for root, _, files in os.walk(os.path.join(REPO, "pdlightning")):
        if "__init__.py" in files and "__pycache__" not in root:
            found.add(os.path.relpath(root, REPO).replace(os.sep, "."))
    assert found == declared_packages()


def plain_install(tmp_path) -> str:
    """``pip install`` (not editable) of the checkout into ``tmp_path/site``; its path."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(target),
            REPO,
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


@pytest.mark.slow
def test_plain_install_imports_callbacks_in_the_pdlightning_namespace(tmp_path):
    target = plain_install(tmp_path)
    assert (target / "pdlightning" / "callbacks" / "__init__.py").is_file()
    assert not (target / "callbacks").exists()
    probe = (
        "import pdlightning.callbacks as c, pdlightning; "
        "assert c.__file__.startswith(pdlightning.__path__[0]), c.__file__; "
        "import importlib.util; assert importlib.util.find_spec('callbacks') is None"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_editable_install_imports_callbacks_in_the_pdlightning_namespace(tmp_path):
    probe = "import pdlightning.callbacks as c; print(c.BiasVarianceMSE.__module__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pdlightning.callbacks.bias_variance"


@pytest.mark.slow
def test_plain_install_ships_the_configs_for_fit_and_the_report(tmp_path):
    """From a directory outside the clone, with only the installed package: the configs are found by
    ``pdlightning fit`` (README paths and short ones) and by ``pdlightning-report`` without --configs."""
    target = plain_install(tmp_path)
    installed = {p.relative_to(Path(REPO) / "configs") for p in (Path(REPO) / "configs").rglob("*.yaml")}
    assert installed and all((target / "pdlightning" / "configs" / p).is_file() for p in installed)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", *args], cwd=work, env=env, capture_output=True, text=True, timeout=600
        )

    where = run("pdlightning.cli.main", "--print-configs-dir")
    assert where.returncode == 0 and where.stdout.strip() == str(target / "pdlightning" / "configs")
    fit = run(
        "pdlightning.cli.main",
        "fit",
        "-c",
        "configs/mi/gaussian.yaml",
        "-c",
        "mi/bounds/nwj.yaml",
        "--trainer.max_steps=2",
        "--data.init_args.steps_per_level=2",
        "--data.init_args.mi_schedule=[2.0]",
        "--model.init_args.critic.init_args.hidden_dims=[8]",
        "--trainer.enable_progress_bar=false",
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert (work / "lightning_logs" / "mi" / "nwj" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    report = run(
        "pdlightning.report.main",
        "--out",
        "report",
        "--estimators",
        "nwj",
        "--tasks",
        "gaussian",
        "--critics",
        "joint",
        "--steps-per-level",
        "2",
        "--levels",
        "2",
        "--batch-size",
        "8",
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "| **Bias (abs)** | NWJ † |" in (work / "report" / "report.md").read_text()
    missing = run("pdlightning.cli.main", "fit", "-c", "mi/nope.yaml")
    assert missing.returncode == 2 and "error: -c/--config: no config file 'mi/nope.yaml'" in missing.stderr
    assert "Traceback" not in missing.stderr
