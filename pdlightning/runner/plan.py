"""A run of a sweep: one ``pdlightning fit`` command, with what identifies it and its budget."""

from __future__ import annotations

import copy
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from .record import as_json

__all__ = ["Run", "run_id", "command_line"]


def run_id(*parts: object) -> str:
    """A directory name made of ``parts`` (``-``-joined; anything but letters, digits, ``._`` -> ``_``)."""
    return "-".join(re.sub(r"[^A-Za-z0-9._]+", "_", str(p)).strip("_") or "_" for p in parts)


def command_line(configs: Sequence[str], overrides: Sequence[str], subcommand: str = "fit") -> str:
    """The equivalent shell command (for logs, records and reports)."""
    return " ".join(
        ["pdlightning", subcommand]
        + [f"-c {shlex.quote(str(c))}" for c in configs]
        + [shlex.quote(o) for o in overrides]
    )


@dataclass(frozen=True)
class Run:
    """One point of a sweep.

    Attributes:
        run_id: the run's directory name under ``<out>/runs``.
        configs: config files stacked with ``-c``.
        overrides: CLI arguments after them.
        spec: what identifies the run within the sweep (goes to ``run.json``).
        budget: what the sweep's runs share and must share to be compared (goes to ``run.json``).
        test: run ``test`` on the final weights after ``fit``.
        settings: nested config values the CLI's parser applies over the configs and overrides (plain data built
            in Python, e.g. a model's members; never serialised to text and parsed again).
        configs_dir: the folder of the config files (recorded in ``run.json``'s provenance); ``None``: the
            folder holding all of ``configs``.

    ``{run_dir}`` in an override or a setting's string stands for the run's directory (e.g. a logger's
    ``save_dir``).
    """

    run_id: str
    configs: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    spec: dict = field(default_factory=dict, compare=False)
    budget: dict = field(default_factory=dict, compare=False)
    test: bool = False
    settings: dict = field(default_factory=dict, compare=False)
    configs_dir: Optional[str] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.run_id or "/" in self.run_id or self.run_id in (".", ".."):
            raise ValueError(f"run_id: expected a directory name, got {self.run_id!r}")
        object.__setattr__(self, "configs", tuple(str(c) for c in self.configs))
        object.__setattr__(self, "overrides", tuple(str(o) for o in self.overrides))
        object.__setattr__(self, "spec", as_json(dict(self.spec)))
        object.__setattr__(self, "budget", as_json(dict(self.budget)))
        object.__setattr__(self, "settings", copy.deepcopy(dict(self.settings)))
        if self.configs_dir is not None:
            object.__setattr__(self, "configs_dir", str(self.configs_dir))

    def args(self, run_dir: Path) -> list[str]:
        """The CLI arguments of the run (no subcommand); Lightning's own files go to ``run_dir``."""
        return (
            [f"--config={c}" for c in self.configs]
            + [f"--trainer.default_root_dir={run_dir}"]
            + [o.replace("{run_dir}", str(run_dir)) for o in self.overrides]
        )

    def settings_in(self, run_dir: Path) -> dict:
        """:attr:`settings` with ``{run_dir}`` in every string replaced by ``run_dir``."""
        return _substitute(self.settings, str(run_dir))

    def _shown_settings(self) -> list[str]:
        """The settings as command-line options (for people: the run itself hands them over as data)."""
        return [f"--{key}={json.dumps(value)}" for key, value in _flatten(self.settings)]

    @property
    def command(self) -> str:
        """The equivalent ``pdlightning fit`` command (``{run_dir}`` left as a placeholder)."""
        return command_line(self.configs, [*self.overrides, *self._shown_settings()])

    def command_in(self, run_dir: Path) -> str:
        """The equivalent ``pdlightning fit`` command of the run in ``run_dir``."""
        shown = [*self.overrides, *self._shown_settings()]
        return command_line(self.configs, [o.replace("{run_dir}", str(run_dir)) for o in shown])


def _substitute(value: Any, run_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{run_dir}", run_dir)
    if isinstance(value, dict):
        return {k: _substitute(v, run_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, run_dir) for v in value]
    return value


def _flatten(settings: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"model": {"init_args": {"a": 1}}}`` -> ``[("model.init_args.a", 1)]`` (lists and leaves kept whole)."""
    out: list[tuple[str, Any]] = []
    for key, value in settings.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out += _flatten(value, path)
        else:
            out.append((path, value))
    return out
