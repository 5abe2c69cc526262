"""pdlightning: point-wise dependency and mutual-information estimation, and contrastive SSL on the
same objectives, with PyTorch Lightning.

``pdlightning.estimate_mi(x, y)`` estimates the MI between two arrays in one call (:mod:`pdlightning.api`); it is
imported on first use, so ``import pdlightning`` stays light (no torch, no Lightning).
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("pdlightning")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "estimate_mi", "MIEstimate"]

#: names served lazily from :mod:`pdlightning.api` (importing it imports torch and Lightning).
_API = ("estimate_mi", "MIEstimate", "EstimatorResult")


if TYPE_CHECKING:  # what type checkers see; at run time the module-level __getattr__ imports them on first use
    from .api import EstimatorResult, MIEstimate, estimate_mi  # noqa: F401
else:

    def __getattr__(name: str) -> Any:
        if name in _API:
            from . import api

            return getattr(api, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*globals(), *_API])
