"""Losses any model adds to its own: :class:`MILoss`, a bound and its critic as one module (MI as a regulariser or
as the objective, e.g. the MI-regularised GAN and Deep InfoMax of :mod:`pdlightning.applications`)."""

from .mi_loss import MILoss

__all__ = ["MILoss"]
