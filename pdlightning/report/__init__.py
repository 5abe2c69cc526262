"""``pdlightning-report``: the estimator benchmark sweep and its report (Song & Ermon Table 2 layout,
PD paper Fig. 1 grid)."""

from .estimators import DEFAULT_ESTIMATORS, DOCUMENTED, Estimator, estimators
from .sweep import Budget, RunSpec, plan, run_sweep

__all__ = ["DEFAULT_ESTIMATORS", "DOCUMENTED", "Estimator", "estimators", "Budget", "RunSpec", "plan", "run_sweep"]
