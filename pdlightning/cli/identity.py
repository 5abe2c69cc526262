"""A run's identity: which experiment a log directory and its checkpoints belong to.

``--ckpt_path last`` must continue *this* experiment, never another run that happens to log under the
same directory (all MI bounds log under ``mi/``). The identity is a hash of the configuration that
defines the experiment, :func:`defining_config`:

- ``seed_everything`` (left out when it is ``true``, i.e. drawn at random by each invocation),
- ``model``: its class and every init argument (critic, bound, estimator, optimiser, scheduler, ...),
- ``data``: its class and every init argument except those that only change how batches are
  loaded (:data:`LOADER_ONLY_DATA_ARGS`),
- the trainer settings that change the arithmetic of a step (:data:`DEFINING_TRAINER_ARGS`).

Left out on purpose: the budget (``max_steps``, ``max_epochs``: a longer run of the same experiment
is the same run), logging, callbacks (they observe), checkpoint settings and the hardware (devices,
accelerator, strategy). The identity and the defining configuration are stored in every checkpoint
(``checkpoint["pdlightning_run"]``) and in the run directory (:data:`RUN_FILE`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Optional

__all__ = [
    "DEFINING_TRAINER_ARGS",
    "LOADER_ONLY_DATA_ARGS",
    "RUN_FILE",
    "CHECKPOINT_KEY",
    "defining_config",
    "identity_of",
    "differences",
    "run_record",
]

#: trainer settings that change what a training step computes.
DEFINING_TRAINER_ARGS = ("precision", "accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm")
#: data init arguments that change how batches are loaded, not which batches.
LOADER_ONLY_DATA_ARGS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
#: the run record in the run directory (``<log dir>/run_identity.yaml``).
RUN_FILE = "run_identity.yaml"
#: where a checkpoint holds the run record.
CHECKPOINT_KEY = "pdlightning_run"


def _plain(value: Any) -> Any:
    """Namespaces, paths and tuples as plain JSON-able data (dicts, lists, str, numbers, None)."""
    if hasattr(value, "as_dict") and callable(value.as_dict):  # jsonargparse Namespace
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def defining_config(config: Mapping[str, Any], random_seed: bool = False) -> dict[str, Any]:
    """The part of a subcommand's parsed config that defines the experiment (see the module docstring).

    Args:
        config: the subcommand's config (``seed_everything``, ``model``, ``data``, ``trainer`` ...).
        random_seed: ``seed_everything`` was ``true`` (a fresh random seed per invocation): left out.
    """
    config = _plain(config)
    defining: dict[str, Any] = {}
    if not random_seed:
        defining["seed_everything"] = config.get("seed_everything")
    defining["model"] = config.get("model")
    data = config.get("data")
    if isinstance(data, dict) and isinstance(data.get("init_args"), dict):
        data = {**data, "init_args": {k: v for k, v in data["init_args"].items() if k not in LOADER_ONLY_DATA_ARGS}}
    defining["data"] = data
    trainer = config.get("trainer") or {}
    defining["trainer"] = {k: trainer.get(k) for k in DEFINING_TRAINER_ARGS}
    return defining


def identity_of(defining: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the defining configuration in canonical JSON (sorted keys)."""
    text = json.dumps(_plain(defining), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


_ABSENT = object()


def differences(
    found: Mapping[str, Any], wanted: Mapping[str, Any], limit: int = 8, width: Optional[int] = None
) -> list[str]:
    """``"key: found -> wanted"`` for every dotted key whose value differs (at most ``limit`` lines; each value
    cut to ``width`` characters when given)."""

    def show(value: Any) -> str:
        text = "(absent)" if value is _ABSENT else json.dumps(value, sort_keys=True)
        return text if width is None or len(text) <= width else text[: width - 3] + "..."

    a, b = _flatten(_plain(found)), _flatten(_plain(wanted))
    lines = [
        f"{key}: {show(a.get(key, _ABSENT))} -> {show(b.get(key, _ABSENT))}"
        for key in sorted(set(a) | set(b))
        if a.get(key, _ABSENT) != b.get(key, _ABSENT)
    ]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def run_record(defining: Mapping[str, Any], segments: Optional[list[dict[str, Any]]] = None) -> dict[str, Any]:
    """The record stored in checkpoints and the run directory: the identity, its defining
    configuration, and the run's segments (``{"identity", "from_step"}``; more than one only when a
    resume was forced onto a run of another identity)."""
    identity = identity_of(defining)
    return {
        "identity": identity,
        "config": _plain(defining),
        "segments": list(segments) if segments else [{"identity": identity, "from_step": 0}],
    }
