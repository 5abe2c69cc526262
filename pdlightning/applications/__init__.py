"""Point-wise dependency applications run as sweeps of CLI configs: self-consistency tests and the
supervised / contrastive MI benchmarks (SLB / CLB). Their evaluation callbacks (classifier and
nearest-neighbour accuracy, cross-modal retrieval, the PMI writer) live in :mod:`pdlightning.callbacks`.

MI as a term of another model's loss (:class:`~pdlightning.losses.MILoss`), as in the η-MINE paper:
:class:`MIRegularizedGAN` (:mod:`.mi_gan`, the 25-Gaussian grid) and :class:`DeepInfoMax` (:mod:`.deep_infomax`)."""

from .._deprecation import moved_names
from .deep_infomax import DeepInfoMax
from .mi_gan import MIRegularizedGAN

__all__ = ["MIRegularizedGAN", "DeepInfoMax"]

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
