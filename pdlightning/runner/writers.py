"""The one CSV and markdown writer of the runners' tables."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

__all__ = ["write_csv", "markdown_table"]


def _as_mapping(row: Any) -> Mapping[str, Any]:
    return dataclasses.asdict(row) if dataclasses.is_dataclass(row) and not isinstance(row, type) else row


def write_csv(rows: Iterable[Any], path: Path, fields: Optional[Sequence[str]] = None) -> None:
    """One row per mapping (or dataclass); the columns are ``fields`` or the first row's keys."""
    rows = [_as_mapping(r) for r in rows]
    if fields is None:
        fields = list(rows[0]) if rows else []
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table (cells as given, ``str`` applied)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
