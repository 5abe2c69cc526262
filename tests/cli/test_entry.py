"""The ``pdlightning`` console script answers ``--help`` and ``--print-configs-dir`` without importing
torch (pdlightning/cli/entry.py), with the same top level as the full parser; everything else reaches
the full command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pdlightning.cli.configs import packaged_configs_dir
from pdlightning.cli.entry import DESCRIPTION, SUBCOMMANDS, _fast_answer, fast_parser, main
from pdlightning.cli.main import build_cli


def option_strings_in_help(text: str) -> set[str]:
    """The option strings an argparse help lists in its sections (lines ``  -c CONFIG, --config CONFIG``)."""
    found = set()
    for line in text.splitlines():
        match = re.match(r"^  (-[^ ].*?)(?:\s{2,}|$)", line)
        if match:
            tokens = (part.split()[0] for part in match.group(1).split(", "))
            found |= {token for token in tokens if re.fullmatch(r"--?[A-Za-z][\w-]*", token)}
    return found


def test_the_fast_top_level_has_the_full_parsers_subcommands_and_options(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pdlightning"])
    with pytest.raises(SystemExit) as exit:
        build_cli(["--help"])
    assert exit.value.code == 0
    full = capsys.readouterr().out
    fast = fast_parser().format_help()
    assert option_strings_in_help(fast) == option_strings_in_help(full)
    assert {"-c", "--config", "--print_config", "--print-configs-dir", "-h", "--help"} <= option_strings_in_help(fast)
    subcommands = re.search(r"\{([a-z,]+)\}", full)
    assert subcommands is not None and subcommands.group(1).split(",") == list(SUBCOMMANDS)
    # both say what the tool is (not Lightning's "Lightning Trainer command line tool")
    assert " ".join(DESCRIPTION.split()[:6]) in " ".join(full.split())
    assert " ".join(DESCRIPTION.split()[:6]) in " ".join(fast.split())


def test_help_and_configs_dir_are_answered_here_and_the_rest_goes_to_the_full_cli(capsys):
    assert _fast_answer(["--help"]) == 0 and "fit" in capsys.readouterr().out
    assert _fast_answer(["-h"]) == 0 and "--print-configs-dir" in capsys.readouterr().out
    assert _fast_answer(["--print-configs-dir"]) == 0
    assert Path(capsys.readouterr().out.strip()) == packaged_configs_dir()
    assert _fast_answer([]) == 2
    assert "choose a subcommand: fit, validate, test, predict" in capsys.readouterr().err
    for args in (["fit", "--help"], ["test", "-h"], ["fit", "-c", "x.yaml"], ["-c", "x.yaml", "fit"]):
        assert _fast_answer(args) is None, args
    with pytest.raises(SystemExit) as exit:
        main(["--print-configs-dir"])
    assert exit.value.code == 0


def test_the_console_script_is_the_fast_entry_point():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts") if e.name == "pdlightning"}
    assert scripts == {"pdlightning": "pdlightning.cli.entry:main"}


def test_help_and_configs_dir_import_neither_torch_nor_lightning(tmp_path):
    code = textwrap.dedent("""
        import contextlib, io, sys
        from pdlightning.cli.entry import main
        for args in (["--help"], ["--print-configs-dir"], ["-c", "x.yaml", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    main(args)
                except SystemExit as exit:
                    assert exit.code == 0, (args, exit.code)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "numpy", "jsonargparse"))
        assert not heavy, heavy[:10]
        """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
