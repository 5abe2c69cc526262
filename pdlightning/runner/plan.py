"""A run of a sweep: one ``pdlightning fit`` command, with what identifies it and its budget."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

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
        configs_dir: the folder of the config files (recorded in ``run.json``'s provenance); ``None``: the
            folder holding all of ``configs``.

    ``{run_dir}`` in an override stands for the run's directory (e.g. a logger's ``save_dir``).
    """

    run_id: str
    configs: tuple[str, ...]
    overrides: tuple[str, ...] = ()
    spec: dict = field(default_factory=dict, compare=False)
    budget: dict = field(default_factory=dict, compare=False)
    test: bool = False
    configs_dir: Optional[str] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.run_id or "/" in self.run_id or self.run_id in (".", ".."):
            raise ValueError(f"run_id: expected a directory name, got {self.run_id!r}")
        object.__setattr__(self, "configs", tuple(str(c) for c in self.configs))
        object.__setattr__(self, "overrides", tuple(str(o) for o in self.overrides))
        object.__setattr__(self, "spec", as_json(dict(self.spec)))
        object.__setattr__(self, "budget", as_json(dict(self.budget)))
        if self.configs_dir is not None:
            object.__setattr__(self, "configs_dir", str(self.configs_dir))

    def args(self, run_dir: Path) -> list[str]:
        """The CLI arguments of the run (no subcommand); Lightning's own files go to ``run_dir``."""
        return (
            [f"--config={c}" for c in self.configs]
            + [f"--trainer.default_root_dir={run_dir}"]
            + [o.replace("{run_dir}", str(run_dir)) for o in self.overrides]
        )

    @property
    def command(self) -> str:
        """The equivalent ``pdlightning fit`` command (``{run_dir}`` left as a placeholder)."""
        return command_line(self.configs, self.overrides)

    def command_in(self, run_dir: Path) -> str:
        """The equivalent ``pdlightning fit`` command of the run in ``run_dir``."""
        return command_line(self.configs, [o.replace("{run_dir}", str(run_dir)) for o in self.overrides])
