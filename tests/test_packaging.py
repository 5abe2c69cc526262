"""The package installs as declared: every sub-package is listed, and the top-level callbacks/
folder imports as ``pdlightning.callbacks`` (never as a bare ``callbacks``) from a plain install."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def declared_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_every_package_folder_is_declared():
    found = {"pdlightning.callbacks"}
    for root, _, files in os.walk(os.path.join(REPO, "pdlightning")):
        if "__init__.py" in files and "__pycache__" not in root:
            found.add(os.path.relpath(root, REPO).replace(os.sep, "."))
    assert found == declared_packages()


def test_plain_install_imports_callbacks_in_the_pdlightning_namespace(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile",
         "--target", str(target), REPO],
        check=True, capture_output=True, timeout=300,
    )
    assert (target / "pdlightning" / "callbacks" / "__init__.py").is_file()
    assert not (target / "callbacks").exists()
    probe = ("import pdlightning.callbacks as c, pdlightning; "
             "assert c.__file__.startswith(pdlightning.__path__[0]), c.__file__; "
             "import importlib.util; assert importlib.util.find_spec('callbacks') is None")
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_editable_install_imports_callbacks_in_the_pdlightning_namespace(tmp_path):
    probe = "import pdlightning.callbacks as c; print(c.BiasVarianceMSE.__module__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pdlightning.callbacks.bias_variance"
