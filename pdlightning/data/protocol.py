"""What modules and callbacks read from a datamodule beyond Lightning's loaders, as typed protocols.

Each is optional: a reader looks for it (``getattr(datamodule, ..., None)``) and uses it when the
datamodule has it, or stops with an error that names it. Any datamodule (ours or a user's) that
provides the attribute takes part; ``isinstance(datamodule, HasPairDims)`` tells whether it does
(note: on Python 3.11 ``isinstance`` evaluates the properties, which may load the data).

================================  =================================================  ==========================================
attribute                         read by                                            provided by
================================  =================================================  ==========================================
``x_dim``, ``y_dim`` (int)        ``MIEstimationModule.setup`` (modules/              the synthetic tasks (Gaussian, one-hot),
                                  mi_estimation.py): fails early when the critic's    the paired-feature datamodules
                                  input sizes differ
``num_classes`` (int)             ``ClassifierAccuracy`` / ``NearestNeighbourAccuracy``  the image and labelled-image datamodules
                                  (applications/accuracy.py): the accuracy metric     (from the image table); ``OneHotDataModule``
``reference_dataloader()``        ``NearestNeighbourAccuracy`` (CLB): the labelled    the labelled-image datamodules (SLB, CLB,
                                  training images of the 1-NN classifier             self-consistency)
``channels`` (int)                nothing yet: for the runners that size image        the image, labelled-image and
                                  encoders to the data (applications/self_consistency self-consistency datamodules
                                  .py still computes it from the setting itself)
================================  =================================================  ==========================================
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
