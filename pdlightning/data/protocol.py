"""What modules and callbacks read from a datamodule beyond Lightning's loaders, as typed protocols.

Each is optional: a reader looks for it (``getattr(datamodule, ..., None)``) and uses it when the
datamodule has it, or stops with an error that names it. Any datamodule (ours or a user's) that
provides the attribute takes part; ``isinstance(datamodule, HasPairDims)`` tells whether it does
(note: on Python 3.11 ``isinstance`` evaluates the properties, which may load the data).

- ``x_dim``, ``y_dim`` (:class:`HasPairDims`): read by ``MIEstimationModule.setup``
  (modules/mi_estimation.py), which fails early when the critic's input sizes differ. Provided by the
  synthetic tasks (Gaussian, one-hot, every :class:`~.synthetic.SyntheticDataModule`) and the
  paired-feature datamodules.
- ``num_classes`` (:class:`HasClasses`): read by ``ClassifierAccuracy`` and ``NearestNeighbourAccuracy``
  (applications/accuracy.py) to size the accuracy metric. Provided by the image and labelled-image
  datamodules (from the image table, before any file is read) and ``OneHotDataModule``.
- ``reference_dataloader()`` (:class:`HasReferenceSet`): read by ``NearestNeighbourAccuracy`` (CLB):
  the labelled training images of its 1-NN classifier. Provided by the labelled-image datamodules
  (SLB, CLB, self-consistency).
- ``channels`` (:class:`HasChannels`): read by nothing yet; for the runners that size image encoders
  to the data (applications/self_consistency.py still derives it from the setting itself). Provided
  by the image, labelled-image and self-consistency datamodules (twice the source's for the settings
  that stack two images).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch.utils.data import DataLoader

__all__ = ["HasPairDims", "HasClasses", "HasReferenceSet", "HasChannels"]


@runtime_checkable
class HasPairDims(Protocol):
    """Flat pair batches: ``x`` is ``[n, x_dim]`` and ``y`` is ``[n, y_dim]``."""

    @property
    def x_dim(self) -> int: ...

    @property
    def y_dim(self) -> int: ...


@runtime_checkable
class HasClasses(Protocol):
    """Batches carry a ``label`` in ``0 .. num_classes - 1``."""

    @property
    def num_classes(self) -> int: ...


@runtime_checkable
class HasReferenceSet(Protocol):
    """Labelled training items for nearest-neighbour evaluation: batches of ``(x, label)`` in a fixed order."""

    def reference_dataloader(self) -> DataLoader: ...


@runtime_checkable
class HasChannels(Protocol):
    """Image batches: ``x`` (and ``y``) are ``[n, channels, H, W]``."""

    @property
    def channels(self) -> int: ...
