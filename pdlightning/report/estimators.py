"""The report's estimators: one per bound fragment in ``configs/mi/bounds/``.

An estimator's key is its fragment's file name, the same key as the test zoo's
(``tests/bounds/zoo.py``) and the run directory's (``mi/<key>``). A new bound is one class plus one
fragment: the report lists it with its :attr:`~pdlightning.bounds.Bound.label` without being edited.
:data:`DOCUMENTED` holds the human labels of the papers' rows and the budgets measured by
``benchmarks/estimator_budgets.py`` (README, "Budgets"), once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import yaml

from pdlightning.cli.configs import packaged_configs_dir

__all__ = [
    "Documented",
    "DOCUMENTED",
    "ALIASES",
    "DEFAULT_ESTIMATORS",
    "Estimator",
    "estimators",
    "resolve",
    "label_of",
    "fragment_label",
]


@dataclass(frozen=True)
class Documented:
    """What the README documents about an estimator.

    Attributes:
        label: the name of its row in the papers' tables.
        settles_at: steps per level after which its per-level statistics on the protocol (Gaussian,
            joint critic) stop moving (``benchmarks/estimator_budgets.py``); ``None``: not measured.
    """

    label: str
    settles_at: Optional[int] = None


#: The one table of human labels and measured budgets, in the order of the report's rows.
DOCUMENTED: dict[str, Documented] = {
    "infonce": Documented("CPC (InfoNCE)", 1000),
    "nwj": Documented("NWJ", 2000),
    "js": Documented("JS"),
    "dv": Documented("DV"),
    "mine": Documented("MINE"),
    "smile_tau1": Documented("SMILE τ=1"),
    "smile_tau5": Documented("SMILE τ=5", 1000),
    "smile_tauinf": Documented("SMILE τ=∞"),
    "remine": Documented("ReMINE λ=1", 1000),
    "pd_variational": Documented("Variational MI bounds"),
    "pd_classifier": Documented("Probabilistic Classifier", 2000),
    "pd_classifier_log_ratio": Documented("Probabilistic Classifier (log-ratio form)"),
    "pd_matching_1": Documented("Density Matching I"),
    "pd_matching_2": Documented("Density Matching II"),
    "pd_ratio_fitting": Documented("Density-Ratio Fitting", 1000),
    "eta_dv": Documented("η-DV"),
}
#: Report keys of the previous release -> the key (accepted with a FutureWarning until the next one).
ALIASES: dict[str, str] = {
    "cpc": "infonce",
    "pc": "pd_classifier",
    "drf": "pd_ratio_fitting",
    "dm1": "pd_matching_1",
    "dm2": "pd_matching_2",
}
#: Song & Ermon's Table 2 rows, ReMINE, and the PD paper's two plug-in estimators with the lowest variance (the
#: classifier in the paper's logit form and in the log-ratio form).
DEFAULT_ESTIMATORS = (
    "infonce",
    "nwj",
    "smile_tau1",
    "smile_tau5",
    "smile_tauinf",
    "remine",
    "pd_classifier",
    "pd_classifier_log_ratio",
    "pd_ratio_fitting",
)


@dataclass(frozen=True)
class Estimator:
    """A row of the report: a bound fragment and its label."""

    key: str
    fragment: Path
    label: str
    settles_at: Optional[int] = None


def fragment_label(fragment: Path) -> str:
    """The :attr:`~pdlightning.bounds.Bound.label` of the bound a fragment configures."""
    from pdlightning.bounds import Bound
    from pdlightning.runner.config import instantiate

    with open(fragment) as f:
        spec = yaml.safe_load(f)["model"]["init_args"]["bound"]
    return instantiate(spec, Bound).label


def label_of(key: str, recorded: Optional[str] = None) -> str:
    """The row label of ``key``: the papers' name when documented, else the label a run recorded."""
    key = ALIASES.get(key, key)
    return DOCUMENTED[key].label if key in DOCUMENTED else (recorded or key)


def order(keys: Sequence[str]) -> list[str]:
    """``keys`` in report order: the documented rows first, the others alphabetically."""
    rank = {key: i for i, key in enumerate(DOCUMENTED)}
    return sorted(dict.fromkeys(keys), key=lambda k: (rank.get(k, len(rank)), k))


def estimators(configs: Optional[Path] = None) -> dict[str, Estimator]:
    """Every fragment of ``<configs>/mi/bounds/`` (default: the packaged configs), in report order."""
    folder = Path(configs if configs is not None else packaged_configs_dir()) / "mi" / "bounds"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"configs: {folder.parent.parent} has no mi/bounds/ folder of bound fragments; "
            "pass --configs <folder with mi/gaussian.yaml and mi/bounds/>"
        )
    fragments = {p.stem: p for p in folder.glob("*.yaml")}
    found = {}
    for key in order(list(fragments)):
        documented = DOCUMENTED.get(key)
        label = documented.label if documented else fragment_label(fragments[key])
        found[key] = Estimator(key, fragments[key], label, documented.settles_at if documented else None)
    return found


def resolve(names: Sequence[str], known: Sequence[str]) -> list[str]:
    """The estimator keys ``names`` stand for: ``all``, keys, or old report keys (with a warning)."""
    if list(names) == ["all"]:
        return list(known)
    keys = []
    for name in names:
        if name in ALIASES and name not in known:
            warnings.warn(
                f"estimator {name!r} is now {ALIASES[name]!r} (the fragment's name); the old name works "
                "until the next release",
                FutureWarning,
                stacklevel=2,
            )
            name = ALIASES[name]
        keys.append(name)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValueError(f"estimators: unknown {unknown}; known: {', '.join(known)} (or 'all')")
    return keys
