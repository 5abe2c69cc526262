"""Datamodules and the MI batch contract (see :mod:`.batch`)."""

from .batch import check_mi_batch
from .gaussian import CorrelatedGaussianDataModule, gaussian_log_ratio, rho_from_mi, sample_correlated_gaussian
from .onehot import OneHotDataModule
from .labeled_images import SameClassPairsDataModule, SupervisedImagesDataModule
from .paired_features import MultipleFeaturesDataModule, PairedFeaturesDataModule
from .self_consistency import SelfConsistencyDataModule
from .images import CIFAR10DataModule, DigitsDataModule, FashionMNISTDataModule, MNISTDataModule
from .schedule import MISchedule
from .views import HalvesViews, MNISTViews, SimCLRViews, Views

__all__ = [
    "check_mi_batch",
    "CorrelatedGaussianDataModule",
    "MISchedule",
    "OneHotDataModule",
    "MultipleFeaturesDataModule",
    "PairedFeaturesDataModule",
    "SameClassPairsDataModule",
    "SelfConsistencyDataModule",
    "SupervisedImagesDataModule",
    "gaussian_log_ratio",
    "rho_from_mi",
    "sample_correlated_gaussian",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "Views",
    "MNISTViews",
    "SimCLRViews",
    "HalvesViews",
]
