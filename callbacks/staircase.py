"""The staircase figure: per-step estimate vs the true MI (PD paper Fig. 1, SMILE Fig. 1, ReMINE
Fig. 7): raw estimate (faint), EWM with span 200, the true MI, and the reporting bound's value
ceiling where it has one (``log K`` for InfoNCE, Oord et al. 2018; Poole et al. 2019)."""

from __future__ import annotations

from typing import Any, Optional

import lightning as L

from pdlightning.bounds import step_records

from .figures import staircase_figure
from .output import publish_figure, run_directory
from .stream import EstimateStream

__all__ = ["StaircaseFigure"]


class StaircaseFigure(L.Callback):
    """At fit end, draws the staircase panel of the run and logs it (image ``staircase/figure``)
    and saves ``staircase.png`` in ``output_dir`` (default: the logger's run directory).

    Works with any datamodule whose batches carry ``mi``; steps without it are skipped.

    Args:
        ewm_span: span of the smoothed curve (200 as the papers).
        output_dir: where to save the PNG; None = the logger's run directory.
        title: panel title; None = the reporting bound's class name.
    """

    def __init__(self, ewm_span: float = 200.0, output_dir: Optional[str] = None, title: Optional[str] = None) -> None:
        if not ewm_span >= 1:
            raise ValueError(f"ewm_span: expected a value >= 1, got {ewm_span}")
        self.ewm_span, self.output_dir, self.title = ewm_span, output_dir, title
        self.stream = EstimateStream()
        self._label = "estimate"
        #: the reporting bound's label and value ceiling (``log K`` for InfoNCE), from the first
        #: recorded step.
        self._ceiling: Optional[float] = None
        self._described = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        for record in step_records(outputs):
            if self.stream.record_step(trainer, record) and not self._described:
                self._label, self._ceiling, self._described = record.reporting_bound.label, record.ceiling, True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not len(self.stream) or not trainer.is_global_zero:
            return
        steps, true_mi, estimates = self.stream.arrays()
        figure = staircase_figure(steps, estimates, true_mi, self.ewm_span, self._ceiling, self.title or self._label)
        path = f"{run_directory(trainer, self.output_dir)}/staircase.png"
        publish_figure(trainer, figure, "staircase/figure", path, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {**self.stream.state_dict(), "label": self._label, "ceiling": self._ceiling,
                "described": self._described}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stream.load_state_dict(state_dict)
        self._label = state_dict.get("label", self._label)
        self._ceiling = state_dict.get("ceiling")
        self._described = bool(state_dict.get("described", False))
