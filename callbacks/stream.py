"""The per-step estimate streams the callbacks record (see :mod:`pdlightning.streams`, where they live so that
the modules' own end-of-fit summary reads them too)."""

from pdlightning.streams import EstimateStream, MemberStreams

__all__ = ["EstimateStream", "MemberStreams"]
