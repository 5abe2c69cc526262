"""The staircase figure: per-step estimate vs the true MI (PD paper Fig. 1, SMILE Fig. 1, ReMINE
Fig. 7): raw estimate (faint), its EWM (span 200 at the papers' 4,000 steps per level), the true MI,
and the reporting bound's value ceiling where it has one (``log K`` for InfoNCE, Oord et al. 2018;
Poole et al. 2019). One panel per ensemble member."""

from __future__ import annotations

from typing import Any, Optional

import lightning as L

from pdlightning.records import step_records
from pdlightning.step_logging import logging_step
from pdlightning.streams import MemberStreams

from .figures import staircase_figure, staircase_grid_figure
from .output import publish_figure, run_directory

__all__ = ["StaircaseFigure"]


class StaircaseFigure(L.Callback):
    """At fit end, draws the staircase panel of the run (one panel per member of an ensemble), logs
    it (image ``staircase/figure``) and saves ``staircase.png`` in ``output_dir`` (default: the
    logger's run directory).

    Works with any datamodule whose batches carry ``mi``; steps without it are skipped.

    Args:
        ewm_span: span of the smoothed curve; ``None`` (default) scales the papers' 200 to the level
            length (a twentieth of the shortest level, at most 200).
        output_dir: where to save the PNG; None = the logger's run directory.
        title: panel title; None = the reporting bound's label (and the member's name).
    """

    def __init__(
        self, ewm_span: Optional[float] = None, output_dir: Optional[str] = None, title: Optional[str] = None
    ) -> None:
        if ewm_span is not None and not ewm_span >= 1:
            raise ValueError(f"ewm_span: expected None (scaled to the level length) or a value >= 1, got {ewm_span}")
        self.ewm_span, self.output_dir, self.title = ewm_span, output_dir, title
        self.streams = MemberStreams()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for record in step_records(outputs):
            self.streams.record(logging_step(trainer), record)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        members = [k for k in range(len(self.streams.members)) if len(self.streams[k])]
        if not len(self.streams) or not members or not trainer.is_global_zero:
            return
        panels: list[dict[str, Any]] = []
        for member in members:
            steps, true_mi, estimates = self.streams[member].arrays()
            title = self.title or self.streams.title(member)
            panels.append(
                {
                    "steps": steps,
                    "estimates": estimates,
                    "true_mi": true_mi,
                    "title": title,
                    "batch_limit": self.streams.ceiling(member),
                }
            )
        if len(panels) == 1:
            panel = panels[0]
            figure = staircase_figure(
                panel["steps"],
                panel["estimates"],
                panel["true_mi"],
                self.ewm_span,
                panel["batch_limit"],
                panel["title"],
            )
        else:
            figure = staircase_grid_figure(panels, self.ewm_span)
        path = f"{run_directory(trainer, self.output_dir)}/staircase.png"
        publish_figure(trainer, figure, "staircase/figure", path, trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return self.streams.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.streams.load_state_dict(state_dict)
