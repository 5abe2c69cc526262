"""pdlightning: point-wise dependency and mutual-information estimation, and contrastive SSL on the
same objectives, with PyTorch Lightning."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pdlightning")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
