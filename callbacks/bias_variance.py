"""Bias / variance / MSE of the per-step MI estimates, per true-MI level (SMILE, Table 2), as a callback.

The statistics, the stream and the writer are :mod:`pdlightning.streams` (``level_statistics``,
``MemberStreams``, ``write_summary``), which :class:`~pdlightning.modules.MIEstimationModule` also uses for its
own end-of-fit summary; this callback is the configurable version (burn-in, output folder, the raw stream) and
replaces the module's summary when a trainer has it.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import lightning as L

from pdlightning.records import step_records
from pdlightning.results import run_directory
from pdlightning.step_logging import logging_step
from pdlightning.streams import (
    EstimateStream,
    LevelStatistics,
    MemberStreams,
    level_statistics,
    markdown_table,
    write_csv,
    write_stream,
    write_summary,
)

__all__ = ["LevelStatistics", "level_statistics", "markdown_table", "write_csv", "BiasVarianceMSE"]


class BiasVarianceMSE(L.Callback):
    """Collects every training step's reported estimates and the batch's true ``mi``; at fit end logs
    ``bias_variance/{mean,bias,variance,mse}@<level>`` (``bias_variance/<member>/...`` for each member of a fit
    of several) to every logger, writes ``bias_variance.csv`` and ``bias_variance.md`` (and, with
    ``save_stream``, the raw ``estimates.csv``: step, true_mi, estimate) to ``output_dir``, and prints the
    table(s). Several members get one table each and a ``member`` column in the CSV files.

    Works with any datamodule whose batches carry ``mi`` (steps without it are ignored). Recording keeps the
    values on the device (no per-step sync); the streams are checkpointed with the callback state, so a resumed
    fit reports over all its steps. Steps without a finite estimate are counted and reported under the table.

    Args:
        burn_in: fraction of each level's first steps to skip (0, as the papers).
        output_dir: where to write the files; None = the logger's ``log_dir`` (or the trainer root).
        save_stream: also write the per-step stream ``estimates.csv``.
        verbose: print the table at fit end.
    """

    #: the module's own summary steps aside for this callback's (one writer of bias_variance.*).
    writes_level_summary = True

    def __init__(
        self, burn_in: float = 0.0, output_dir: Optional[str] = None, save_stream: bool = False, verbose: bool = True
    ) -> None:
        if not 0.0 <= burn_in < 1.0:
            raise ValueError(f"burn_in: expected a fraction in [0, 1), got {burn_in}")
        self.burn_in = burn_in
        self.output_dir = output_dir
        self.save_stream = save_stream
        self.verbose = verbose
        self.streams = MemberStreams()

    @property
    def stream(self) -> EstimateStream:
        """The stream of a single fit (or of the first member)."""
        return self.streams[0]

    @property
    def estimates(self) -> list[float]:
        return self.stream.estimates.tolist()

    @property
    def true_mis(self) -> list[float]:
        return self.stream.true_mi.tolist()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for record in step_records(outputs):
            self.streams.record(logging_step(trainer), record)

    def statistics(self, member: int | str = 0) -> list[LevelStatistics]:
        return self.streams[member].statistics(self.burn_in)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not len(self.streams) or not trainer.is_global_zero:
            return
        directory = run_directory(trainer, self.output_dir)
        write_summary(self.streams, directory, trainer, self.burn_in, self.verbose)
        if self.save_stream:
            write_stream(self.streams, os.path.join(directory, "estimates.csv"))

    def state_dict(self) -> dict[str, Any]:
        return self.streams.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.streams.load_state_dict(state_dict)
