"""Point-wise dependency applications run as sweeps of CLI configs: self-consistency tests and the
supervised / contrastive MI benchmarks (SLB / CLB). Their evaluation callbacks (classifier and
nearest-neighbour accuracy, cross-modal retrieval, the PMI writer) live in :mod:`pdlightning.callbacks`."""

from .._deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        name: "pdlightning.callbacks"
        for name in (
            "ClassifierAccuracy",
            "NearestNeighbourAccuracy",
            "cross_scores",
            "PMIWriter",
            "CrossModalRetrieval",
            "least_squares_scores",
            "matching_trials",
            "ranked_listing",
            "retrieval_accuracy",
        )
    },
)
