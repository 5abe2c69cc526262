"""Who a number belongs to: the typed identity of an estimator run inside a fit.

Every MI number the package stores (a step of the per-step stream, a held-out interval, a row of
``results.json``, a cell of the report) belongs to one *member* of a fit: an estimator, named by its
fragment key (``configs/mi/bounds/<key>.yaml``), trained from a seed. :class:`MemberId` carries that
identity explicitly, so nothing downstream parses it back out of a display name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

__all__ = ["MemberId", "MEMBER_NAME"]

#: what a member's name may contain (it appears in metric tags, file names and table rows).
MEMBER_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True, order=True)
class MemberId:
    """One member of a fit: estimator ``key``, ``seed``, and the unique ``name`` it is logged under.

    Attributes:
        key: the estimator's fragment key (``nwj``, ``smile_tau5``), or for a bound given inline by
            ``class_path`` a name chosen for it.
        seed: the seed its critic was initialised from (and, with replica streams, its data stream's).
        name: its label in logs, tables and checkpoints; unique within a fit (letters, digits, ``_``, ``-``).
    """

    key: str
    seed: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        if not (isinstance(self.key, str) and MEMBER_NAME.match(self.key)):
            raise ValueError(f"member key: expected letters, digits, '_' or '-', got {self.key!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"member seed ({self.key}): expected an integer, got {self.seed!r}")
        if not self.name:
            object.__setattr__(self, "name", self.key)
        if not MEMBER_NAME.match(self.name):
            raise ValueError(f"member name: expected letters, digits, '_' or '-', got {self.name!r}")

    @classmethod
    def replicate(cls, key: str, seed: int) -> "MemberId":
        """The member of estimator ``key`` at ``seed`` in a fit of several seeds: named ``<key>_s<seed>``."""
        return cls(key, seed, f"{key}_s{seed}")

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "seed": self.seed, "name": self.name}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MemberId":
        return cls(str(data["key"]), int(data.get("seed", 0)), str(data.get("name") or data["key"]))

    @classmethod
    def from_legacy_name(cls, name: str, seed_offset: int = 0) -> "MemberId":
        """The identity behind a member name written before identities were stored: ``<key>-seed<s>``
        (the report's replicate ``s``, trained from seed ``seed_offset + s``), else the name is the key."""
        key, separator, index = name.rpartition("-seed")
        if separator and key and index.isdigit():
            return cls(key, seed_offset + int(index), name)
        return cls(name, seed_offset, name)

    def __str__(self) -> str:
        return self.name


def member_ids(entries: Optional[list[Mapping[str, Any]]]) -> list[MemberId]:
    """:class:`MemberId` s of a stored list (``results.json``, ``run.json``, a checkpoint)."""
    return [MemberId.from_json(entry) for entry in entries or []]
