"""``pdlightning predict``: the PMI of given pairs, written to a file.

:class:`~pdlightning.modules.MIEstimationModule`'s ``predict_step`` returns the PMI of each pair;
:class:`PMIWriter` writes what it returns as CSV (one row per pair, in order).
"""

from __future__ import annotations

import csv
import errno
import os
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from pdlightning.results import write_new_file

__all__ = ["PMIWriter"]


def _gather_on_rank_zero(columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every process's predicted columns together (under DDP each predicted its share of the pairs).

    With an ``index`` column (a data set of pairs, split by Lightning's ``DistributedSampler``, which repeats a few
    pairs to even the shares) the rows are put back in the data set's order, each pair once. Without one, processes
    that predicted the same pairs (a synthetic stream: every process reads all of it) give them once; otherwise the
    rows are every process's, in rank order."""
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, columns)
    if "index" in columns:
        merged = {key: torch.cat([part[key] for part in parts]) for key in columns}
        index, order = merged["index"].sort(stable=True)
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return {key: values[order][first] for key, values in merged.items()}
    if all(part.keys() == columns.keys() and all(torch.equal(part[k], columns[k]) for k in columns) for part in parts):
        return columns
    return {key: torch.cat([part[key] for part in parts]) for key in columns}


class PMIWriter(BasePredictionWriter):
    """Writes the predicted PMI of every pair to ``output_path`` (CSV: ``row``, then ``index``,
    ``label``, the pair's true MI level ``mi`` and exact ``pmi_true`` where the data carry them, and
    ``pmi``; a fit of several members writes one column ``pmi_<member>`` per member). Under DDP, rank 0 writes
    every process's pairs into the one file, in the data set's order where the pairs carry an ``index``.

    Args:
        output_path: CSV file to write (its folder is created); default ``<trainer.log_dir>/pmi.csv``.
    """

    def __init__(self, output_path: Optional[str] = None) -> None:
        super().__init__(write_interval="epoch")
        if output_path is not None and not output_path:
            raise ValueError("output_path: expected a file path for the PMI scores, or None")
        self.output_path = output_path

    def write_on_epoch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, predictions: Sequence[Any], batch_indices: Any
    ) -> None:
        if predictions and isinstance(predictions[0], list):  # several predict dataloaders
            predictions = [p for loader in predictions for p in loader]
        if not predictions or "pmi" not in predictions[0]:
            raise ValueError("PMIWriter: predict_step must return dicts with 'pmi' (MIEstimationModule's does)")
        members = predictions[0].get("members")
        columns = {key: torch.cat([p[key].cpu() for p in predictions]) for key in predictions[0] if key != "members"}
        # every rank computes the target: trainer.log_dir is a broadcast under DDP
        target = self.output_path or os.path.join(trainer.log_dir or ".", "pmi.csv")
        if trainer is not None and trainer.world_size > 1 and torch.distributed.is_initialized():
            columns = _gather_on_rank_zero(columns)
            if not trainer.is_global_zero:
                return  # one writer: rank 0 writes every rank's pairs
        if members is not None:  # [n, K]: one column per member
            stacked = columns.pop("pmi")
            columns.update({f"pmi_{name}": stacked[:, k] for k, name in enumerate(members)})
        if os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, "PMIWriter output_path: a directory, expected a CSV file", target)
        estimates = ["pmi"] if members is None else [f"pmi_{name}" for name in members]
        n = columns[estimates[0]].shape[0]
        integers = [k for k in ("index", "label") if k in columns]
        floats = [k for k in ("mi", "pmi_true") if k in columns] + estimates

        def write(handle: Any) -> None:
            writer = csv.writer(handle)
            writer.writerow(["row", *integers, *floats])
            for row in range(n):
                writer.writerow(
                    [
                        row,
                        *(int(columns[k][row]) for k in integers),
                        *(
                            f"{float(columns[k][row]):.6g}" if k == "mi" else f"{float(columns[k][row]):.6f}"
                            for k in floats
                        ),
                    ]
                )

        # a second predict into the same place writes pmi_2.csv, never over the first
        path = write_new_file(os.path.dirname(os.path.abspath(target)), os.path.basename(target), write)
        rank_zero_info(f"PMIWriter: {n} pairs -> {path}")
