"""The optional datamodule attributes that modules and callbacks read, declared as protocols."""

from __future__ import annotations

import lightning as L
import pytest

from pdlightning.data import (
    CorrelatedGaussianDataModule,
    DigitsDataModule,
    HasChannels,
    HasClasses,
    HasPairDims,
    HasReferenceSet,
    MultipleFeaturesDataModule,
    OneHotDataModule,
    SameClassPairsDataModule,
    SelfConsistencyDataModule,
    SupervisedImagesDataModule,
)

CASES = [
    (lambda: CorrelatedGaussianDataModule(dim=3), {HasPairDims}),
    (lambda: OneHotDataModule(num_classes=5), {HasPairDims, HasClasses}),
    (lambda: MultipleFeaturesDataModule(), {HasPairDims}),
    (lambda: DigitsDataModule(), {HasClasses, HasChannels}),
    (lambda: SupervisedImagesDataModule("digits"), {HasClasses, HasChannels, HasReferenceSet}),
    (lambda: SameClassPairsDataModule("digits"), {HasClasses, HasChannels, HasReferenceSet}),
    (lambda: SelfConsistencyDataModule(source="digits", rows=4), {HasClasses, HasChannels, HasReferenceSet}),
    (lambda: L.LightningDataModule(), set()),
]


@pytest.mark.parametrize("make, provided", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_each_datamodule_provides_exactly_the_protocols_it_claims(make, provided):
    dm = make()
    assert {p for p in (HasPairDims, HasClasses, HasReferenceSet, HasChannels) if isinstance(dm, p)} == provided


def test_the_values_are_what_the_readers_need():
    assert (CorrelatedGaussianDataModule(dim=3).x_dim, OneHotDataModule(num_classes=5).y_dim) == (3, 5)
    assert SelfConsistencyDataModule("additivity", source="digits", rows=4).channels == 2
    assert SupervisedImagesDataModule("cifar100").num_classes == 100  # known before any file is read
    x, label = next(iter(SameClassPairsDataModule("digits").reference_dataloader()))
    assert x.shape[1:] == (1, 8, 8) and label.dtype.is_floating_point is False
