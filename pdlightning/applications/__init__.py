"""Point-wise dependency applications: cross-modal retrieval, PMI prediction, self-consistency
tests, and the supervised / contrastive MI benchmarks (SLB / CLB)."""

from .accuracy import ClassifierAccuracy, NearestNeighbourAccuracy, cross_scores
from .prediction import PMIWriter
from .retrieval import CrossModalRetrieval, least_squares_scores, matching_trials, ranked_listing, retrieval_accuracy

__all__ = [
    "ClassifierAccuracy",
    "NearestNeighbourAccuracy",
    "cross_scores",
    "PMIWriter",
    "CrossModalRetrieval",
    "least_squares_scores",
    "matching_trials",
    "ranked_listing",
    "retrieval_accuracy",
]
