"""What produced a run: the provenance every ``run.json`` stores (``RunRecord.provenance``).

- ``config``: the *resolved* configuration the run was fitted with, as the CLI parsed it (after every ``-c`` file
  and override; what it writes as ``config.yaml``), taken from the parsed config in the process that ran, with
  the run's own folder written as ``{run_dir}`` (so the same run in another ``--out`` has the same config) and
  without the list of ``-c`` files (where the files were is ``configs_dir`` / ``config_files``, not what they
  said);
- ``config_hash``: 16 hex digits of the SHA-256 of that config in canonical JSON: two runs with one hash ran the
  same configuration;
- ``configs_dir``, ``config_files``: the config folder of the sweep and the files stacked with ``-c``;
- ``package_version``, ``git_revision`` (``"unknown"`` outside a git checkout of the package) and ``git_dirty``;
- ``members``: each estimator of the fit as a :class:`~pdlightning.records.MemberId` (key, seed, name) with
  ``fit``, the hash of the configuration of that member alone (for an ensemble: the config with its member list
  cut to that member, without its display name). Two members with one ``fit`` hash are the same fit, even when
  they were trained inside different ensembles (the report counts them once).

A sweep compares a finished run's ``config_hash`` with the config it would run now (:func:`planned_provenance`)
before skipping it (:func:`check_same_protocol`); a ``run.json`` written before provenance was stored has none
(``{}``): its provenance is unknown, and it is read, skipped and rendered as such.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from pdlightning.records import MEMBER_NAME, MemberId

from .plan import Run

__all__ = [
    "ProtocolMismatch",
    "config_hash",
    "resolved_config",
    "members_of",
    "source_revision",
    "provenance_of",
    "planned_provenance",
    "check_same_protocol",
    "config_differences",
    "member_fit",
    "UNKNOWN",
]

#: what a run.json of unknown provenance (written before pdlightning stored it) is called.
UNKNOWN = "unknown provenance"
RUN_DIR = "{run_dir}"


class ProtocolMismatch(ValueError):
    """``--out`` holds a finished run of the same id fitted with another resolved configuration."""


def _plain(value: Any) -> Any:
    from pdlightning.cli.identity import _plain as plain

    return plain(value)


def _replace_run_dir(value: Any, folders: Sequence[str]) -> Any:
    if isinstance(value, dict):
        return {k: _replace_run_dir(v, folders) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_run_dir(v, folders) for v in value]
    if isinstance(value, str):
        for folder in folders:
            if value == folder:
                return RUN_DIR
            if value.startswith(folder + os.sep):
                return RUN_DIR + value[len(folder) :]
    return value


def resolved_config(config: Any, run_dir: Optional[Path] = None) -> dict[str, Any]:
    """A parsed CLI config (jsonargparse namespace or dict) as plain JSON data, without the ``-c`` file list and
    with ``run_dir`` written as ``{run_dir}``."""
    plain = _plain(config)
    if not isinstance(plain, dict):
        raise TypeError(f"config: expected a mapping, got {type(config).__name__}")
    plain = {k: v for k, v in plain.items() if k not in ("config", "__path__", "subcommand")}
    if run_dir is None:
        return plain
    folders = sorted({str(run_dir), os.path.abspath(run_dir), os.path.realpath(run_dir)}, key=len, reverse=True)
    return _replace_run_dir(plain, folders)


def config_hash(config: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``config`` in canonical JSON (sorted keys)."""
    text = json.dumps(_plain(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def members_of(config: Mapping[str, Any], spec: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """The fit's members (``MemberId`` as JSON plus ``fit``, the hash of that member's own configuration).

    A fit of several members (``model.init_args.members``) gives one per entry, identified as the module does
    (fragment key, seed, name; a legacy ``<key>-seed<s>`` name read as such). A single-estimator
    model is one member: the spec's ``estimator`` (else ``model``) at ``seed_everything``."""
    init = ((config.get("model") or {}).get("init_args") or {}) if isinstance(config.get("model"), dict) else {}
    everything = config.get("seed_everything")
    base = everything if isinstance(everything, int) and not isinstance(everything, bool) else 0
    entries = init.get("members")
    if not (isinstance(entries, list) and entries):
        estimator = (spec or {}).get("estimator")
        single = estimator if isinstance(estimator, str) and MEMBER_NAME.match(estimator) else "model"
        return [{**MemberId(single, base, single).as_json(), "fit": config_hash(config)}]
    ids = [_member_id(entry, index, base) for index, entry in enumerate(entries)]
    seeds: dict[str, set[int]] = {}
    for member in ids:
        seeds.setdefault(member.key, set()).add(member.seed)
    members = []
    for entry, member in zip(entries, ids):
        if not (isinstance(entry, dict) and entry.get("name")) and len(seeds[member.key]) > 1:
            member = MemberId.replicate(member.key, member.seed)  # as the module names replicate seeds
        alone = copy.deepcopy(dict(config))
        cut = {k: v for k, v in entry.items() if k != "name"} if isinstance(entry, dict) else entry
        alone["model"]["init_args"]["members"] = [cut]
        members.append({**member.as_json(), "fit": config_hash(alone)})
    return members


def _member_id(entry: Any, index: int, base: int) -> MemberId:
    """A member entry of a parsed config as the module identifies it (:func:`~pdlightning.modules.members.
    resolve_members`): a fragment key, or ``{bound, key, seed, name, ...}``; a name written before identities
    were stored (``<key>-seed<s>``) is read as such."""
    if isinstance(entry, str):
        return MemberId(entry, base, entry)
    entry = dict(entry) if isinstance(entry, dict) else {}
    name = entry.get("name")
    bound = entry.get("bound")
    key = entry.get("key")
    if not isinstance(key, str):
        if isinstance(bound, str):
            key = bound
        elif isinstance(name, str) and "-seed" in name:
            return MemberId.from_legacy_name(name, base)
        elif isinstance(bound, dict) and isinstance(bound.get("class_path"), str):
            key = bound["class_path"].rsplit(".", 1)[-1].lower()
        else:
            key = f"member{index}"
    seed = entry.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else base
    return MemberId(key, seed, name if isinstance(name, str) and name else key)


def _git(*args: str, cwd: Path) -> Optional[str]:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def source_revision() -> dict[str, Any]:
    """``{"package_version", "git_revision", "git_dirty"}`` of the pdlightning that runs: the revision only when
    the package is imported from a git checkout of itself (not merely from a folder inside some repository),
    else ``"unknown"`` (and ``git_dirty`` ``None``)."""
    import pdlightning

    package = Path(pdlightning.__file__).resolve().parent
    revision, dirty = "unknown", None
    top = _git("rev-parse", "--show-toplevel", cwd=package)
    if top and (Path(top) / "pdlightning").resolve() == package:
        head = _git("rev-parse", "HEAD", cwd=package)
        if head:
            status = _git("status", "--porcelain", "--untracked-files=no", cwd=package)
            revision, dirty = head, (bool(status) if status is not None else None)
    return {"package_version": pdlightning.__version__, "git_revision": revision, "git_dirty": dirty}


def _configs_dir(run: Run) -> str:
    if run.configs_dir is not None:
        return os.path.abspath(run.configs_dir)
    files = [os.path.abspath(c) for c in run.configs]
    return os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""


def provenance_of(config: Any, run: Run, run_dir: Path) -> dict[str, Any]:
    """The provenance of ``run`` fitted in ``run_dir`` with the parsed ``config`` (see the module docstring)."""
    resolved = resolved_config(config, run_dir)
    return {
        "config_hash": config_hash(resolved),
        "configs_dir": _configs_dir(run),
        "config_files": [os.path.abspath(c) for c in run.configs],
        **source_revision(),
        "members": members_of(resolved, run.spec),
        "config": resolved,
    }


def planned_provenance(run: Run, run_dir: Path) -> dict[str, Any]:
    """The provenance ``run`` would record in ``run_dir``, from its config parsed as its fit parses it (no class
    is built, nothing runs)."""
    from pdlightning.cli.main import build_cli

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        settings = run.settings_in(Path(run_dir)) or None
        cli = build_cli(run.args(Path(run_dir)), run=False, settings=settings, parse_only=True)
    return provenance_of(cli.config, run, Path(run_dir))


def config_differences(found: Mapping[str, Any], wanted: Mapping[str, Any], limit: int = 6) -> list[str]:
    """``"key: found -> wanted"`` of every dotted key whose value differs (values cut to 60 characters; at most
    ``limit``)."""
    from pdlightning.cli.identity import differences

    return differences(found, wanted, limit=limit, width=60)


def check_same_protocol(recorded: Mapping[str, Any], planned: Mapping[str, Any], run_dir: Path) -> None:
    """Raise :class:`ProtocolMismatch` (one line naming the differing keys) when a finished run's recorded
    provenance is of another resolved config than the planned one; a record without one (unknown) passes."""
    found = recorded.get("config_hash")
    if not found or found == planned.get("config_hash"):
        return
    keys = config_differences(recorded.get("config") or {}, planned.get("config") or {})
    raise ProtocolMismatch(
        f"out: {run_dir} holds a finished run of another configuration than this sweep's (config {found} -> "
        f"{planned.get('config_hash')}: {'; '.join(keys) or 'the recorded config is missing'}); it is not "
        "skipped as finished: one --out holds one protocol, so use another --out, or move that run away to run it "
        "again"
    )


def member_fit(provenance: Mapping[str, Any], name: Optional[str] = None) -> Optional[str]:
    """The ``fit`` hash of member ``name`` (the only member when ``None``) in a recorded provenance; ``None`` when
    unknown."""
    members = provenance.get("members") or []
    if name is None:
        return members[0].get("fit") if len(members) == 1 else provenance.get("config_hash")
    return next((m.get("fit") for m in members if m.get("name") == name), None)
