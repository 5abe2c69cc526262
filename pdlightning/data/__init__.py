"""Datamodules, their sources and the MI batch contract.

- :mod:`.batch`: the batch contract of every MI datamodule; :mod:`.protocol`: the optional
  attributes modules and callbacks read from a datamodule; :mod:`.derangement`: product-of-marginals
  pairs from a random derangement of a batch.
- :mod:`.synthetic`: the base of the synthetic tasks (seeded resumable stream, held-out sets);
  :mod:`.gaussian`, :mod:`.onehot`: the tasks; :mod:`.tasks`: any task of :mod:`pdlightning.tasks` under the
  suite's finite-sample protocol; :mod:`.divergence`: KL(P || Q) between two samplers or sample sets;
  :mod:`.mixture`: the 25-Gaussian grid of the MI-regularised GAN.
- :mod:`.sources`: one reader per data source; :mod:`.splits`: the one split rule;
  :mod:`.image_sources`: the table of image datasets.
- :mod:`.images` (SSL / linear evaluation), :mod:`.labeled_images` (SLB / CLB),
  :mod:`.self_consistency`, :mod:`.paired_features`, :mod:`.arrays` (a user's paired arrays, split and held out:
  ``pdlightning.estimate_mi`` and ``configs/mi/arrays.yaml``): the datamodules of real data; :mod:`.views`:
  two-view pipelines.
"""

from .arrays import ArraysDataModule
from .batch import check_mi_batch
from .derangement import random_derangement, with_derangement_pairs
from .divergence import (
    DivergenceDataModule,
    FunctionSampler,
    GaussianSampler,
    Sampler,
    SampleSet,
    StudentTSampler,
    kl_divergence,
)
from .gaussian import CorrelatedGaussianDataModule, gaussian_log_ratio, rho_from_mi, sample_correlated_gaussian
from .image_sources import IMAGE_SOURCES, ImageSource
from .images import CIFAR10DataModule, DigitsDataModule, FashionMNISTDataModule, ImageDataModule, MNISTDataModule
from .labeled_images import LabeledImagesDataModule, SameClassPairsDataModule, SupervisedImagesDataModule
from .mixture import GridMixtureDataModule
from .onehot import OneHotDataModule
from .paired_features import MultipleFeaturesDataModule, PairedFeaturesDataModule
from .protocol import HasChannels, HasClasses, HasPairDims, HasReferenceSet
from .schedule import MISchedule
from .self_consistency import SelfConsistencyDataModule
from .synthetic import SubStream, SyntheticDataModule
from .tasks import TaskDataModule
from .views import HalvesViews, MNISTViews, SimCLRViews, Views

__all__ = [
    "ArraysDataModule",
    "check_mi_batch",
    "random_derangement",
    "with_derangement_pairs",
    "DivergenceDataModule",
    "Sampler",
    "GaussianSampler",
    "StudentTSampler",
    "SampleSet",
    "FunctionSampler",
    "kl_divergence",
    "CorrelatedGaussianDataModule",
    "MISchedule",
    "OneHotDataModule",
    "GridMixtureDataModule",
    "SyntheticDataModule",
    "SubStream",
    "TaskDataModule",
    "MultipleFeaturesDataModule",
    "PairedFeaturesDataModule",
    "LabeledImagesDataModule",
    "SameClassPairsDataModule",
    "SelfConsistencyDataModule",
    "SupervisedImagesDataModule",
    "gaussian_log_ratio",
    "rho_from_mi",
    "sample_correlated_gaussian",
    "IMAGE_SOURCES",
    "ImageSource",
    "ImageDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "DigitsDataModule",
    "HasPairDims",
    "HasClasses",
    "HasReferenceSet",
    "HasChannels",
    "Views",
    "MNISTViews",
    "SimCLRViews",
    "HalvesViews",
]
