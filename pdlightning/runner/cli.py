"""The command line of the runners: a function's arguments, from ``--config file.yaml`` and flags."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, NoReturn, Optional, Sequence

from pdlightning.cli.configs import resolve_config, resolve_config_args

__all__ = ["function_cli", "function_arguments", "config_path"]


def config_path(value: Any) -> str:
    """A config file argument as a path: a file parsed relative to the runner's config file (a
    jsonargparse ``Path``) gives its absolute path, a name that exists here or among the packaged
    configs gives that file."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)

    def error(message: str) -> NoReturn:
        raise FileNotFoundError(message)

    return resolve_config(str(value), error)[0]


def function_arguments(
    function: Callable[..., Any], args: Optional[Sequence[str]] = None, prog: Optional[str] = None
) -> dict[str, Any]:
    """``function``'s keyword arguments from ``--config file.yaml`` and/or flags, parsed and checked
    against its signature (not called). The ``--config`` file is found as ``pdlightning -c`` finds
    one (here, else among the packaged configs)."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=(function.__doc__ or "").split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with the arguments below")
    parser.add_function_arguments(function, as_group=False)
    argv, _ = resolve_config_args(list(sys.argv[1:] if args is None else args), parser.error)
    config = parser.parse_args(argv).as_dict()
    config.pop("config", None)
    config.pop("__path__", None)
    return config


def function_cli(function: Callable[..., Any], args: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> Any:
    """Parse ``function``'s arguments (:func:`function_arguments`) and call it. Bound specs stay plain
    ``{class_path, init_args}`` dicts (never instantiated here): each run re-parses them."""
    return function(**function_arguments(function, args, prog))
