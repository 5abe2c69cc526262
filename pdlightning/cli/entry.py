"""The ``pdlightning`` console script: answers ``--help`` and ``--print-configs-dir`` without importing torch.

Building the full command line (:func:`pdlightning.cli.main.build_cli`) imports torch, Lightning and every
class a config can name, a few seconds of CPU time. The top-level help and the configs folder need none
of that, so :func:`main` answers them from a plain :mod:`argparse` parser that mirrors the full parser's
top level (same subcommands and options; ``tests/cli/test_entry.py`` checks that they agree). Anything
else, ``pdlightning fit --help`` included, goes to :func:`pdlightning.cli.main.main` unchanged.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

__all__ = ["DESCRIPTION", "SUBCOMMANDS", "fast_parser", "main"]

#: the description of ``pdlightning --help`` (also given to the full parser, so both say the same).
DESCRIPTION = (
    "Point-wise dependency and mutual-information estimation with PyTorch Lightning. "
    "Example: pdlightning fit -c configs/mi/demo.yaml (list the shipped configs with "
    "--print-configs-dir; a subcommand's options with pdlightning fit --help)."
)

#: the subcommands of the full parser (LightningCLI's) and what each does.
SUBCOMMANDS = {
    "fit": "Train a model; logs and checkpoints go under the logger's save_dir (lightning_logs/ by default).",
    "validate": "Evaluate a trained model (--ckpt_path) on the validation set.",
    "test": "Evaluate a trained model (--ckpt_path) on the test set and print its table.",
    "predict": "Run a trained model (--ckpt_path) on the predict set.",
}

_HELP = ("-h", "--help")
_CONFIGS_DIR = "--print-configs-dir"


def fast_parser() -> argparse.ArgumentParser:
    """The top level of the ``pdlightning`` parser, with no class signatures (nothing imports torch)."""
    parser = argparse.ArgumentParser(prog="pdlightning", description=DESCRIPTION)
    parser.add_argument("-c", "--config", help="Path to a configuration file in json or yaml format.")
    parser.add_argument(
        "--print_config",
        metavar="=flags",
        nargs="?",
        help="Print the configuration after applying all other arguments and exit (flags: skip_default, skip_unset).",
    )
    parser.add_argument(_CONFIGS_DIR, action="store_true", help="print the directory of the packaged configs and exit")
    subcommands = parser.add_subparsers(
        title="subcommands",
        dest="subcommand",
        description="For the options of a subcommand, add it followed by --help (pdlightning fit --help).",
    )
    for name, text in SUBCOMMANDS.items():
        subcommands.add_parser(name, help=text)
    return parser


def _fast_answer(args: Sequence[str]) -> Optional[int]:
    """The exit status when ``args`` asks only for the top-level help or the configs folder (answered
    here), ``None`` when the full command line must handle them."""
    if not args:
        fast_parser().print_usage(sys.stderr)
        print(
            f"pdlightning: error: choose a subcommand: {', '.join(SUBCOMMANDS)} (pdlightning --help)", file=sys.stderr
        )
        return 2
    # only before a subcommand: `pdlightning fit --help` lists the subcommand's options (the full parser)
    subcommand = next((i for i, a in enumerate(args) if a in SUBCOMMANDS), len(args))
    top = list(args[:subcommand])
    if _CONFIGS_DIR in top:
        from .configs import packaged_configs_dir

        print(packaged_configs_dir())
        return 0
    if any(a in _HELP for a in top):
        fast_parser().print_help()
        return 0
    return None


def main(args: Optional[Sequence[str]] = None) -> None:
    """Console entry point ``pdlightning``; see the module docstring."""
    given = list(sys.argv[1:] if args is None else args)
    status = _fast_answer(given)
    if status is not None:
        raise SystemExit(status)
    from .main import main as full_main

    full_main(None if args is None else given)


if __name__ == "__main__":
    main()
