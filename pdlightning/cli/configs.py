"""Where the shipped configs are, and how ``-c`` finds them.

The configs ship inside the package (``pdlightning.configs``, the top-level ``configs/`` folder of the
repository), so ``pdlightning fit -c mi/gaussian.yaml`` or the README's ``-c configs/mi/gaussian.yaml``
run from any directory after a plain ``pip install``. A ``-c`` path is read as given when it exists;
otherwise, relative to the packaged configs (with or without a leading ``configs/``). A config that
moved (listed in :data:`MOVED`) still resolves to its replacement for one release, with a
``FutureWarning`` that gives the new command.

Each bound / objective fragment (a config holding only ``model.init_args.bound``) also names the
run: the base config's logger name gets the fragment's file name appended
(``mi`` + ``bounds/nwj.yaml`` -> ``lightning_logs/mi/nwj/version_N``), so runs of different
estimators never share a log directory, unless the command line sets the logger or its name.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

import yaml

__all__ = [
    "MOVED",
    "PackagedConfigs",
    "packaged_configs_dir",
    "resolve_config",
    "resolve_config_args",
    "fragment_key",
    "run_name",
]

_CONFIG_FLAGS = ("-c", "--config")
_SSL_DATASETS = ("mnist", "fashion_mnist", "cifar10", "mnist_shallow", "demo")
_DRIFT_BOUNDS = ("dv", "mine", "nwj", "remine", "renwj")

#: configs that moved (paths relative to the configs folder) -> what replaces them, stacked in order.
MOVED: dict[str, tuple[str, ...]] = {
    "mi/bounds/smile.yaml": ("mi/bounds/smile_tau5.yaml",),
    **{f"drift/onehot_{bound}.yaml": ("drift/onehot.yaml", f"mi/bounds/{bound}.yaml") for bound in _DRIFT_BOUNDS},
    **{
        f"ssl/{data}/{objective}.yaml": (f"ssl/{data}.yaml", f"ssl/objectives/{objective}.yaml")
        for data in _SSL_DATASETS
        for objective in ("cpc", "pcc", "drfc")
    },
}


def packaged_configs_dir() -> Path:
    """The configs folder of the installed package (the checkout's ``configs/`` for an editable install)."""
    import pdlightning.configs

    return Path(pdlightning.configs.__file__).resolve().parent


def _looks_like_a_file(value: str) -> bool:
    return value.endswith((".yaml", ".yml", ".json")) and "\n" not in value and not value.lstrip().startswith("{")


def _relative_names(value: str) -> list[str]:
    """The names ``value`` may have relative to a configs folder: itself and what follows ``configs/``."""
    posix = value.replace(os.sep, "/")
    names = [] if os.path.isabs(value) else [posix]
    if "configs/" in posix:
        names.append(posix.rsplit("configs/", 1)[1])
    return names


def resolve_config(value: str, error: Callable[[str], NoReturn]) -> list[str]:
    """The config file(s) a ``-c`` value stands for: itself if it exists, else a packaged config, else
    the replacement of a moved config (warning); ``error`` is called with a message otherwise."""
    if os.path.exists(value) or not _looks_like_a_file(value):
        return [value]
    packaged = packaged_configs_dir()
    for name in _relative_names(value):
        if (packaged / name).is_file():
            return [str(packaged / name)]
    for name in _relative_names(value):
        if name in MOVED:
            root = value[: len(value) - len(name)]  # the same configs folder the old path was in
            new = [
                os.path.join(root, n) if root and os.path.isfile(os.path.join(root, n)) else str(packaged / n)
                for n in MOVED[name]
            ]
            shown = " ".join(f"-c {Path(root or 'configs') / n}" for n in MOVED[name])
            warnings.warn(
                f"config {value} moved: use {shown} (the old name works until the next release)",
                FutureWarning,
                stacklevel=2,
            )
            return new
    error(
        f"-c/--config: no config file {value!r}, neither here ({os.getcwd()}) nor among the packaged configs "
        f"({packaged}); list them with `pdlightning --print-configs-dir`"
    )


def resolve_config_args(args: Sequence[str], error: Callable[[str], NoReturn]) -> tuple[list[str], list[str]]:
    """``args`` with every ``-c`` / ``--config`` value resolved (:func:`resolve_config`), and the config
    files named, in order."""
    out: list[str] = []
    files: list[str] = []
    i = 0
    while i < len(args):
        token = str(args[i])
        if token in _CONFIG_FLAGS and i + 1 < len(args):
            resolved = resolve_config(str(args[i + 1]), error)
            for path in resolved:
                out += [token, path]
            files += resolved
            i += 2
            continue
        if token.startswith("--config="):
            resolved = resolve_config(token[len("--config=") :], error)
            out += [f"--config={path}" for path in resolved]
            files += resolved
        else:
            out.append(token)
        i += 1
    return out, files


def fragment_key(path: str) -> Optional[str]:
    """The estimator key (file name) of a bound / objective fragment, a config that holds only
    ``model.init_args.bound`` (and, for an estimator that needs its own critic, such as CLUB or TRE,
    ``model.init_args.critic``); ``None`` for any other config."""
    if not _looks_like_a_file(path) or not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            content = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    is_fragment = (
        isinstance(content, dict)
        and set(content) == {"model"}
        and isinstance(content["model"], dict)
        and set(content["model"]) == {"init_args"}
        and isinstance(content["model"]["init_args"], dict)
        and "bound" in content["model"]["init_args"]
        and set(content["model"]["init_args"]) <= {"bound", "critic"}
    )
    return Path(path).stem if is_fragment else None


def run_name(base: Optional[str], files: Sequence[str]) -> Optional[str]:
    """The logger name of a run: ``base/<key>`` of the last fragment among ``files`` (``None``: keep ``base``)."""
    keys = [key for key in map(fragment_key, files) if key is not None]
    if not keys:
        return None
    return f"{base}/{keys[-1]}" if base else keys[-1]


def _sets_logger_name(token: str) -> bool:
    """A command-line argument that chooses the logger or its name (then the fragment does not)."""
    return token.split("=", 1)[0] in (
        "--trainer.logger",
        "--trainer.logger.class_path",
        "--trainer.logger.init_args",
        "--trainer.logger.init_args.name",
        "--trainer.logger.name",
    )


class _PrintConfigsDir(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="print the directory of the packaged configs and exit",
        )

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Optional[str] = None) -> None:
        print(packaged_configs_dir())
        parser.exit()


class PackagedConfigs:
    """LightningCLI mixin: ``--print-configs-dir``, ``-c`` resolved against the packaged configs
    (:func:`resolve_config_args`), and the fragment's run name (:func:`run_name`)."""

    def init_parser(self, **kwargs: Any) -> Any:
        parser = super().init_parser(**kwargs)  # type: ignore[misc]
        parser.add_argument("--print-configs-dir", action=_PrintConfigsDir)
        return parser

    def parse_arguments(self, parser: Any, args: Any) -> None:
        if isinstance(args, dict) or (args is not None and not isinstance(args, (list, tuple))):
            return super().parse_arguments(parser, args)  # type: ignore[misc]
        given = list(sys.argv[1:] if args is None else args)
        resolved, files = resolve_config_args(given, parser.error)
        if args is None:  # LightningCLI warns when both args and sys.argv are given: parse directly
            self.config = parser.parse_args(resolved)
        else:
            super().parse_arguments(parser, resolved)  # type: ignore[misc]
        if not any(_sets_logger_name(str(token)) for token in given):
            self._name_run(files)

    def _name_run(self, files: Sequence[str]) -> None:
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else self.config
        logger = config.get("trainer", {}).get("logger") if config is not None else None
        init_args = getattr(logger, "init_args", None)
        if init_args is None or "name" not in init_args:
            return
        name = run_name(init_args.name, files)
        if name is not None:
            init_args.name = name
