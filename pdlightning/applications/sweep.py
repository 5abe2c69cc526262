"""Run one ``pdlightning`` config (fit, then test) from Python and return its metrics; the sweep
runners (self-consistency, SLB/CLB tables) are loops over this with CLI overrides, so every point of
a sweep is a command a user can rerun by hand."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

__all__ = ["run_config", "bound_override", "held_out_mi_estimate", "command_line", "function_cli"]


def bound_override(spec: Mapping[str, Any], key: str = "model.init_args.bound") -> str:
    """``--model.init_args.bound=<json>`` for a bound given as ``{class_path, init_args}``."""
    if "class_path" not in spec:
        raise ValueError(f"bound spec: expected a dict with 'class_path' (and optional 'init_args'), got {spec!r}")
    return f"--{key}={json.dumps(dict(spec))}"


def command_line(configs: Sequence[str], overrides: Sequence[str]) -> str:
    """The equivalent ``pdlightning fit`` command (for logs and reports)."""
    parts = ["pdlightning fit"] + [f"-c {c}" for c in configs] + [f"'{o}'" if " " in o or "{" in o else o for o in overrides]
    return " ".join(parts)


def run_config(configs: Sequence[str], overrides: Sequence[str] = (), test: bool = True) -> dict[str, float]:
    """``pdlightning fit`` then (with ``test``) ``pdlightning test`` on the final weights, in-process.

    Returns the trainer's final callback metrics after fit and the test metrics (``test/...``).
    """
    from ..cli.main import build_cli

    args = [f"--config={c}" for c in configs] + list(overrides)
    cli = build_cli(args, run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if v.numel() == 1}
    if test:
        for result in cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False):
            metrics.update({k: float(v) for k, v in result.items()})
    return metrics


def held_out_mi_estimate(metrics: Mapping[str, float]) -> Optional[float]:
    """The held-out MI estimate: ``test/mi_estimate`` or, when batches carry the true MI, the value
    logged at that level (``test/mi_estimate@<level>``)."""
    if "test/mi_estimate" in metrics:
        return metrics["test/mi_estimate"]
    levels = [v for k, v in metrics.items() if k.startswith("test/mi_estimate@")]
    return levels[0] if len(levels) == 1 else None


def function_cli(function: Any, args: Optional[Sequence[str]] = None) -> Any:
    """Parse ``function``'s arguments (``--config file.yaml`` and/or flags) and call it. Bound specs
    stay plain ``{class_path, init_args}`` dicts (never instantiated here): each run re-parses them."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(description=(function.__doc__ or "").split("\n")[0])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with the arguments below")
    parser.add_function_arguments(function, as_group=False)
    config = parser.parse_args(args).as_dict()
    config.pop("config", None)
    config.pop("__path__", None)
    return function(**config)
