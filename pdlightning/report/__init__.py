"""``pdlightning-report``: the estimator benchmark sweep and its report (Song & Ermon Table 2 layout,
PD paper Fig. 1 grid)."""

from .sweep import DEFAULT_ESTIMATORS, ESTIMATORS, Budget, RunSpec, plan, run_sweep

__all__ = ["DEFAULT_ESTIMATORS", "ESTIMATORS", "Budget", "RunSpec", "plan", "run_sweep"]
