"""The members of a fit: which estimators it trains, named by fragment key, resolved to bounds and critics.

A fit trains ``K >= 1`` members. In YAML a member is a fragment key or a dict::

    members: [nwj, smile_tau5, {name: smile_tau5_s1, bound: smile_tau5, seed: 1}]

A key names ``configs/mi/bounds/<key>.yaml`` (the packaged configs): its ``bound``, ``estimator`` and, where
it sets one, ``critic``. A dict may instead give ``bound`` / ``estimator`` by ``class_path`` (any importable
:class:`~pdlightning.bounds.Bound`), and ``seed`` (its critic is drawn under that seed; default: the run's
seed), ``replica`` (the data stream it trains on, with replica streams), ``lr`` (its own learning rate) and
``critic`` (its own critic architecture). :func:`resolve_members` turns the list into
:class:`ResolvedMember` s with a :class:`~pdlightning.records.MemberId` each; every mistake is an error that
names the member.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
import yaml

from ..bounds import Bound
from ..critics import Critic
from ..records import MEMBER_NAME, MemberId
from .stacking import structure_key

__all__ = ["Member", "ResolvedMember", "resolve_members", "fragment_model", "fragment_key_of", "known_keys"]


@dataclass
class Member:
    """One estimator of a fit, as a config gives it (module docstring).

    Attributes:
        bound: its training bound: a fragment key (``nwj``) or a bound (``class_path`` in YAML).
        name: its name in logs, tables and checkpoints (default: the key; ``<key>_s<seed>`` when the key
            appears with several seeds).
        estimator: its reporting bound (key or bound); default: the fragment's, else the training bound's value.
        seed: the seed its critic is drawn under (default: the run's seed).
        replica: with replica streams, the stream it trains on (default: its position).
        lr: its own learning rate (default: the optimiser's).
        critic: its own critic (default: the module's ``critic``, drawn again under ``seed``).
        key: its estimator key when ``bound`` is given by ``class_path`` (default: the fragment whose bound
            and estimator it equals, else the bound's class name).
    """

    bound: Union[str, Bound]
    name: Optional[str] = None
    estimator: Union[str, Bound, None] = None
    seed: Optional[int] = None
    replica: Optional[int] = None
    lr: Optional[float] = None
    critic: Optional[Critic] = None
    key: Optional[str] = None


@dataclass
class ResolvedMember:
    """A member ready to train: its identity, bounds, critic (``None``: the module's) and options."""

    id: MemberId
    bound: Bound
    estimator: Optional[Bound]
    critic: Optional[Critic]
    replica: Optional[int]
    lr: Optional[float]
    #: the critic is the member's own as given (``False``: the module's, drawn again under the seed).
    own_critic: bool = False

    @property
    def name(self) -> str:
        return self.id.name


def _bounds_dir() -> Path:
    from pdlightning.cli.configs import packaged_configs_dir

    return packaged_configs_dir() / "mi" / "bounds"


@functools.lru_cache(maxsize=None)
def known_keys() -> tuple[str, ...]:
    """The fragment keys of the packaged ``configs/mi/bounds/``."""
    return tuple(sorted(p.stem for p in _bounds_dir().glob("*.yaml")))


@functools.lru_cache(maxsize=None)
def fragment_model(key: str) -> dict[str, Any]:
    """``model.init_args`` of fragment ``key`` (its ``bound``, and ``estimator`` / ``critic`` where set)."""
    path = _bounds_dir() / f"{key}.yaml"
    content = yaml.safe_load(path.read_text()) or {}
    init = (content.get("model") or {}).get("init_args") or {}
    if "bound" not in init:
        raise ValueError(f"members: the fragment {path} sets no model.init_args.bound")
    module_settings = sorted(set(init) - {"bound", "estimator", "critic"})
    if module_settings:
        raise ValueError(
            f"members: the fragment {key!r} also sets {module_settings}, settings of the whole module that a member "
            f"cannot carry; fit it alone (pdlightning fit -c <task> -c {path})"
        )
    return {name: init[name] for name in ("bound", "estimator", "critic") if init.get(name) is not None}


def _build(spec: Any, base: type) -> Any:
    from pdlightning.runner.config import instantiate

    return instantiate(spec, base)


def _unknown_key(key: str, where: str) -> ValueError:
    close = difflib.get_close_matches(key, known_keys(), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"{where}: unknown estimator key {key!r} (no configs/mi/bounds/{key}.yaml){hint}")


def _signature(bound: Optional[Bound]) -> Any:
    """A bound's class, settings and tensor values: equal for equal bounds."""
    if bound is None:
        return None
    values = tuple(tuple(t.detach().cpu().reshape(-1).tolist()) for t in [*bound.parameters(), *bound.buffers()])
    return structure_key(bound), values


@functools.lru_cache(maxsize=None)
def _fragment_signatures() -> tuple[tuple[str, Any], ...]:
    signatures = []
    for key in known_keys():
        try:
            model = fragment_model(key)
            bound = _build(model["bound"], Bound)
            estimator = _build(model["estimator"], Bound) if "estimator" in model else None
        except Exception:  # noqa: BLE001 - a fragment this package cannot build is no candidate
            continue
        signatures.append((key, (_signature(bound), _signature(estimator))))
    return tuple(signatures)


def fragment_key_of(bound: Bound, estimator: Optional[Bound] = None) -> str:
    """The key of the packaged fragment whose bound and estimator equal these, else the bound's class name."""
    wanted = (_signature(bound), _signature(estimator))
    for key, signature in _fragment_signatures():
        if signature == wanted:
            return key
    return type(bound).__name__.lower()


def _bound_or_key(value: Any, where: str) -> tuple[Optional[Bound], Optional[str]]:
    """``(bound, None)`` for a bound, ``(None, key)`` for a known fragment key; an error otherwise."""
    if isinstance(value, Bound):
        return value, None
    if isinstance(value, str):
        if value not in known_keys():
            raise _unknown_key(value, where)
        return None, value
    raise ValueError(f"{where}: expected a fragment key or a Bound, got {type(value).__name__}")


def _fragment_critic(spec: Any, dims: Optional[tuple[int, int]], where: str) -> Critic:
    """A fragment's critic; ``x_dim`` / ``y_dim`` it leaves out (the packaged fragments do: the CLI fills the module
    critic's from the data) are the module critic's ``dims``."""
    if isinstance(spec, dict) and isinstance(spec.get("init_args") or {}, dict):
        init_args = dict(spec.get("init_args") or {})
        missing = [f"{side}_dim" for side in ("x", "y") if init_args.get(f"{side}_dim") is None]
        if missing:
            if dims is None:
                raise ValueError(
                    f"{where}: the fragment's {str(spec.get('class_path', 'critic')).rsplit('.', 1)[-1]} sets no "
                    f"{' / '.join(missing)}, and there is no module critic to take them from; pass the module's "
                    "`critic` (or the member's own critic)"
                )
            init_args.update({name: dims[0 if name == "x_dim" else 1] for name in missing})
            spec = {**spec, "init_args": init_args}
    return _build(spec, Critic)


def resolve_members(
    members: Sequence[Union[str, Member, dict]],
    default_seed: Optional[int] = None,
    data: str = "shared",
    critic_dims: Optional[tuple[int, int]] = None,
) -> list[ResolvedMember]:
    """The members of ``members`` (keys, :class:`Member` s or their dicts), checked and named (module docstring).

    ``critic_dims``: the module critic's ``(x_dim, y_dim)``, which a fragment's own critic takes where it leaves them
    out."""
    if not isinstance(members, (list, tuple)) or not members:
        raise ValueError("members: expected at least one member (K = 0)")
    seed = torch.initial_seed() if default_seed is None else default_seed
    resolved: list[ResolvedMember] = []
    for index, entry in enumerate(members):
        where = f"members[{index}]"
        if isinstance(entry, dict):
            unknown = set(entry) - set(Member.__dataclass_fields__)
            if unknown:
                raise ValueError(
                    f"{where}: unknown fields {sorted(unknown)}; a member has {list(Member.__dataclass_fields__)}"
                )
            entry = Member(**entry)
        if isinstance(entry, str):
            entry = Member(bound=entry)
        if not isinstance(entry, Member):
            raise ValueError(
                f"{where}: expected a fragment key or a member (bound, name, seed, ...), got {type(entry).__name__}"
            )
        label = entry.name or (entry.bound if isinstance(entry.bound, str) else type(entry.bound).__name__)
        bound, key = _bound_or_key(entry.bound, f"{where}.bound ({label})")
        estimator, critic = None, entry.critic
        if key is not None:
            model = fragment_model(key)
            bound = _build(model["bound"], Bound)
            estimator = _build(model["estimator"], Bound) if "estimator" in model else None
            if critic is None and "critic" in model:
                critic = _fragment_critic(model["critic"], critic_dims, f"{where}.critic ({label})")
        if entry.estimator is not None:
            given, estimator_key = _bound_or_key(entry.estimator, f"{where}.estimator ({label})")
            estimator = given if estimator_key is None else _build(fragment_model(estimator_key)["bound"], Bound)
        assert bound is not None
        key = entry.key or key or fragment_key_of(bound, estimator)
        if entry.seed is not None and (isinstance(entry.seed, bool) or not isinstance(entry.seed, int)):
            raise ValueError(f"{where}.seed ({label}): expected an integer, got {entry.seed!r}")
        if entry.replica is not None and (
            data != "replicas"
            or isinstance(entry.replica, bool)
            or not isinstance(entry.replica, int)
            or entry.replica < 0
        ):
            raise ValueError(
                f"{where}.replica ({label}): expected a stream index >= 0 with data='replicas', got "
                f"{entry.replica!r} with data={data!r}"
            )
        if entry.lr is not None and not (isinstance(entry.lr, (int, float)) and entry.lr > 0):
            raise ValueError(f"{where}.lr ({label}): expected a learning rate > 0, got {entry.lr!r}")
        if entry.name is not None and not (isinstance(entry.name, str) and MEMBER_NAME.match(entry.name)):
            raise ValueError(f"{where}.name: expected letters, digits, '_' or '-', got {entry.name!r}")
        if critic is not None and not isinstance(critic, Critic):
            raise ValueError(f"{where}.critic ({label}): expected a Critic, got {type(critic).__name__}")
        member_seed = seed if entry.seed is None else entry.seed
        resolved.append(
            ResolvedMember(
                MemberId(key, member_seed, entry.name or key),
                bound,
                estimator,
                critic,
                entry.replica,
                None if entry.lr is None else float(entry.lr),
                own_critic=entry.critic is not None,
            )
        )
    _name_replicates(resolved, members)
    seen: dict[str, int] = {}
    for index, member in enumerate(resolved):
        if member.name in seen:
            raise ValueError(
                f"members[{index}].name: duplicate member name {member.name!r} (also members[{seen[member.name]}]); "
                "give each member its own name (or its own seed)"
            )
        seen[member.name] = index
    return resolved


def _name_replicates(resolved: list[ResolvedMember], given: Sequence[Any]) -> None:
    """Members left unnamed whose key appears with several seeds are named ``<key>_s<seed>``."""
    seeds: dict[str, set[int]] = {}
    for member in resolved:
        seeds.setdefault(member.id.key, set()).add(member.id.seed)
    for member, entry in zip(resolved, given):
        explicit = isinstance(entry, Member) and entry.name or isinstance(entry, dict) and entry.get("name")
        if not explicit and len(seeds[member.id.key]) > 1:
            member.id = MemberId.replicate(member.id.key, member.id.seed)


def describe(bound: Optional[Bound]) -> Optional[dict[str, Any]]:
    """A bound as plain data for a checkpoint's member table: its class and label."""
    if bound is None:
        return None
    return {"class_path": f"{type(bound).__module__}.{type(bound).__qualname__}", "label": bound.label}
