"""A run's configuration without running it: the merged config, and objects built from its parts."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Iterator

import yaml

from .plan import Run

__all__ = ["resolved_config", "instantiate", "key_paths"]


def resolved_config(run: Run) -> dict:
    """The configuration ``run`` would fit with, as ``pdlightning fit ... --print_config`` prints it."""
    from pdlightning.cli.main import build_cli

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        try:
            build_cli(["fit", *run.args(Path.cwd()), "--print_config"])
        except SystemExit as exit:
            if exit.code not in (0, None):
                raise
    return yaml.safe_load(buffer.getvalue())


def instantiate(spec: Any, base: type) -> Any:
    """An object of ``base`` (or a subclass) from a ``{class_path, init_args}`` spec, as the CLI builds it."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(base, "object", required=True)
    return parser.instantiate_classes(parser.parse_object({"object": spec})).object


def key_paths(config: Any, key: str, prefix: str = "") -> Iterator[str]:
    """The dotted paths of every ``key`` in a nested config (``model.init_args.critic...in_channels``)."""
    if isinstance(config, dict):
        for name, value in config.items():
            path = f"{prefix}.{name}" if prefix else str(name)
            if name == key:
                yield path
            yield from key_paths(value, key, path)
