"""What the report says about where its numbers come from, and the rules that keep one number from being counted
twice or read from a damaged file.

- :func:`count_once`: the same fit in two runs of one ``--out`` (``infonce nwj`` then ``infonce smile_tau5``: the
  InfoNCE member trained twice on the same batches from the same seed) is one fit. Results are grouped by their unit
  (for the staircase: task, critic, estimator, seed); a unit held by several runs keeps the first run's (by run
  name) when their members' fit hashes agree (or are unknown: runs of unknown provenance), and says so; with
  different known hashes (two protocols in one ``--out``: a single fit and an ensemble member, another critic) the
  first is kept too, never pooled with the other as a seed, and the line names the keys that differ.
- :func:`read_stream_checked`: a run's per-step stream (``estimates.csv``), refused as damaged
  (:class:`~pdlightning.runner.DamagedRunFile`, naming the file) when it is cut mid-row, does not parse, lacks a
  member the run recorded, or a member that finished stops before the run's last step.
- :func:`read_results_checked`: a run's ``results.json``, refused as damaged when it does not parse.
- :func:`provenance_cells`, :func:`provenance_notes`: the report's columns and lines about each run's provenance.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

import numpy as np

from pdlightning.runner import DamagedRunFile, ProtocolMismatch, RunRecord
from pdlightning.runner.provenance import UNKNOWN, config_differences

__all__ = [
    "count_once",
    "read_stream_checked",
    "read_results_checked",
    "provenance_cells",
    "provenance_notes",
    "recorded_config",
    "suite_column_fit",
    "recorded_budget_line",
]

T = TypeVar("T")
Stream = tuple[np.ndarray, np.ndarray, np.ndarray]


def count_once(
    items: Iterable[T],
    unit: Callable[[T], Any],
    run: Callable[[T], str],
    fit: Callable[[T], Optional[str]],
    config: Callable[[T], Mapping[str, Any]],
    describe: Callable[[Any], str],
) -> tuple[list[T], list[str]]:
    """``items`` with every unit once, and one line per unit held by more than one run (see the module docstring):
    a table never pools one estimator and seed twice as if they were two seeds.

    Args:
        items: results, in any order.
        unit: what a table counts once (e.g. ``(task, critic, estimator, seed)``).
        run: the name of the run an item came from.
        fit: the item's member fit hash (``None``: unknown provenance).
        config: the item's run's recorded config (for the keys of a refusal).
        describe: a unit in words, for the lines.
    """
    groups: dict[Any, list[T]] = {}
    for item in items:
        groups.setdefault(unit(item), []).append(item)
    kept, notes = [], []
    for key, group in groups.items():
        group = sorted(group, key=run)
        first = group[0]
        kept.append(first)
        others = [item for item in group[1:] if run(item) != run(first)]
        if not others:
            continue
        known = {fit(item) for item in group if fit(item) is not None}
        names = ", ".join(run(item) for item in others)
        if len(known) > 1:
            other = next(item for item in others if fit(item) not in (None, fit(first)))
            keys = config_differences(config(first), config(other), limit=4)
            notes.append(
                f"{describe(key)}: runs {run(first)} and {names} both hold it, fitted with different configurations "
                f"({'; '.join(keys) or 'the recorded configs are missing'}): not pooled as seeds; the tables use "
                f"{run(first)} (the first by run name) only. One --out should hold one protocol"
            )
            continue
        why = (
            "the same member, seed and configuration"
            if None not in {fit(item) for item in group}
            else f"the same member and seed; {UNKNOWN}, so not checked further"
        )
        notes.append(
            f"{describe(key)}: the same fit in runs {run(first)} and {names} ({why}): counted once, from "
            f"{run(first)} (the first by run name)"
        )
    return kept, notes


def _damaged(path: Path, problem: str) -> DamagedRunFile:
    return DamagedRunFile(path, problem)


def read_stream_checked(
    path: Path, record: RunRecord, members: Optional[Sequence[str]] = None
) -> dict[Optional[str], Stream]:
    """The per-step streams of a finished run's ``estimates.csv``: ``{member: (steps, true_mi, estimates)}`` (key
    ``None`` for a single fit, whose file has no ``member`` column), each checked (see the module docstring).

    Args:
        path: the run's ``estimates.csv``.
        record: its ``run.json`` (status, steps, retired members).
        members: the members the run recorded (``None``: a single fit).
    """
    if not path.is_file():
        raise _damaged(path, "missing: a finished run of the report always writes its per-step stream")
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise _damaged(path, f"truncated in the middle of a row ({len(data)} bytes, no final line end)")
    rows: dict[Optional[str], list[tuple[int, float, float]]] = {}
    try:
        reader = csv.DictReader(data.decode().splitlines())
        expected = {"step", "true_mi", "estimate"} | ({"member"} if members is not None else set())
        if reader.fieldnames is None or not expected <= set(reader.fieldnames):
            raise _damaged(path, f"its header is {reader.fieldnames}, expected the columns {sorted(expected)}")
        for row in reader:
            member = row["member"] if members is not None else None
            rows.setdefault(member, []).append((int(row["step"]), float(row["true_mi"]), float(row["estimate"])))
    except (ValueError, TypeError, KeyError, csv.Error, UnicodeDecodeError) as error:
        if isinstance(error, DamagedRunFile):
            raise
        raise _damaged(path, f"line {reader.line_num} does not parse ({type(error).__name__}: {error})") from None
    missing = [m for m in (members if members is not None else [None]) if m not in rows]
    if missing:
        names = ", ".join(str(m) for m in missing) if members is not None else "the run"
        raise _damaged(path, f"it holds no stream of {names}, which run.json records (the file was cut short)")
    retired = (record.extra or {}).get("retired", {}) or {}
    streams = {}
    for member, values in rows.items():
        steps = np.asarray([v[0] for v in values], dtype=np.int64)
        if record.status == "ok" and member not in retired and int(steps.max()) + 1 < record.steps:
            who = f"member {member}'s stream" if member is not None else "the stream"
            raise _damaged(
                path,
                f"{who} ends at step {int(steps.max())} of the {record.steps} steps run.json records for a run "
                "that finished (the file was cut short): its last level would be computed from fewer steps than "
                "the report states",
            )
        streams[member] = (steps, np.asarray([v[1] for v in values]), np.asarray([v[2] for v in values]))
    return streams


def read_results_checked(path: Path) -> dict[str, Any]:
    """A run's ``results.json``; :class:`~pdlightning.runner.DamagedRunFile` naming it when it does not parse."""
    from pdlightning.results import read_results

    try:
        return read_results(path)
    except json.JSONDecodeError as error:
        raise _damaged(path, f"truncated or not JSON ({path.stat().st_size} bytes; {error})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise _damaged(path, str(error)) from None


def recorded_config(record: RunRecord) -> dict[str, Any]:
    """The resolved config the run recorded (``{}``: unknown provenance)."""
    return dict((record.provenance or {}).get("config") or {})


def provenance_cells(record: RunRecord) -> list[str]:
    """``[config hash, source]`` of a run for a table: 12 hex digits, ``<version> @ <revision>`` (``+dirty``)."""
    provenance = record.provenance or {}
    if not provenance.get("config_hash"):
        return [UNKNOWN, UNKNOWN]
    revision = str(provenance.get("git_revision") or "unknown")
    source = f"{provenance.get('package_version', '?')} @ {revision[:10]}"
    source += " (uncommitted changes)" if provenance.get("git_dirty") else ""
    return [str(provenance["config_hash"])[:12], source]


def provenance_notes(records: Iterable[RunRecord]) -> list[str]:
    """Lines under a table of runs: their config folder(s), and what unknown provenance means if any run has it."""
    records = list(records)
    folders = sorted({str(r.provenance.get("configs_dir")) for r in records if (r.provenance or {}).get("configs_dir")})
    lines = []
    if folders:
        lines.append(f"Config folder{'s' if len(folders) > 1 else ''}: {', '.join(folders)}.")
    unknown = sum(not (r.provenance or {}).get("config_hash") for r in records)
    if unknown:
        lines.append(
            f"{unknown} run(s) of {UNKNOWN}: their run.json was written before pdlightning recorded the configuration "
            "a run was fitted with, so it cannot be checked; a sweep into this folder skips them as finished."
        )
    return lines


def suite_column_fit(record: RunRecord, column: str, member: str) -> Optional[str]:
    """The fit hash of one column of a suite run: the estimator's member, or for a baseline (KSG, CCA: computed on
    the run's held-out pairs) its data configuration; ``None`` for unknown provenance."""
    from pdlightning.runner.provenance import config_hash, member_fit

    provenance = record.provenance or {}
    if not provenance.get("config_hash"):
        return None
    fit = member_fit(provenance, member)
    if fit is not None:
        return fit
    config = provenance.get("config") or {}
    return config_hash({"data": config.get("data"), "baseline": column})


def recorded_budget_line(records: Sequence[RunRecord], describe: Callable[[dict[str, Any]], str], out: Path) -> str:
    """The budget line of a table, from the configs the runs recorded (never from config files on disk now): one
    line when every run recorded the same, :class:`~pdlightning.runner.ProtocolMismatch` when they differ, and
    ``None``-free words for runs of unknown provenance."""
    texts = {describe(recorded_config(r)) for r in records if (r.provenance or {}).get("config_hash")}
    if len(texts) > 1:
        listed = "; ".join(f"({i + 1}) {t}" for i, t in enumerate(sorted(texts)))
        raise ProtocolMismatch(f"out: {out} holds runs of {len(texts)} protocols: {listed}; use one --out each")
    unknown = sum(not (r.provenance or {}).get("config_hash") for r in records)
    if unknown and texts:
        raise ProtocolMismatch(
            f"out: {out} holds runs that recorded their configuration and {unknown} of {UNKNOWN} (written before "
            "pdlightning recorded it): they cannot be shown to share one protocol; use one --out each"
        )
    return next(iter(texts)) if texts else ""
