"""Cross-modal retrieval by point-wise dependency (PD paper, Tsai et al. NeurIPS 2020, §6, Table 2).

A trained PD estimator scores every (query x_i, candidate y_j) pair of the test split with its PMI
``log r_hat(x_i, y_j)``. A *1:5 matching trial* holds the query's partner ``y_i`` and 4 other test
items drawn at random (seeded); the query is retrieved correctly when its partner has the strictly
highest PMI (ties count as failures, so a constant scorer scores 0, not 100%). Chance is 1/5.

The baseline needs no PD model: a ridge least-squares map ``W = argmin ||X W - Y||^2 + l ||W||^2``
fitted on the training pairs, then nearest neighbour, ``score(x, y) = -||x W - y||^2``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

__all__ = [
    "matching_trials",
    "retrieval_accuracy",
    "ranked_listing",
    "format_listing",
    "least_squares_scores",
    "collect_split",
    "CrossModalRetrieval",
]


def matching_trials(n: int, num_candidates: int = 5, seed: int = 0) -> Tensor:
    """``[n, num_candidates]`` test indices: column 0 is query ``i``'s partner ``i``, the others are
    ``num_candidates - 1`` distinct random items ``!= i`` (seeded, one trial per query)."""
    if not (isinstance(num_candidates, int) and num_candidates >= 2):
        raise ValueError(f"num_candidates: need the partner and at least one other, got {num_candidates!r}")
    if n < num_candidates:
        raise ValueError(f"num_candidates: {num_candidates} exceeds the {n} test items")
    generator = torch.Generator().manual_seed(seed)
    # For each row draw from the n - 1 other items: sample among 0..n-2 and skip over i.
    noise = torch.rand(n, n - 1, generator=generator)
    others = noise.argsort(dim=1)[:, : num_candidates - 1]
    rows = torch.arange(n).unsqueeze(1)
    others = others + (others >= rows).long()
    return torch.cat([rows, others], dim=1)


def retrieval_accuracy(scores: Tensor, trials: Tensor) -> float:
    """Top-1 accuracy: the fraction of trials whose partner (column 0) strictly beats every other
    candidate. ``scores[i, j]`` scores query ``i`` against candidate ``j``."""
    if scores.dim() != 2 or scores.shape[0] != trials.shape[0]:
        raise ValueError(f"scores: expected [n_queries={trials.shape[0]}, n_items], got {tuple(scores.shape)}")
    candidate_scores = scores.gather(1, trials.to(scores.device))
    partner, others = candidate_scores[:, :1], candidate_scores[:, 1:]
    return (partner > others).all(dim=1).float().mean().item()


def ranked_listing(
    scores: Tensor, trials: Tensor, names: Sequence[str], num_success: int = 3, num_failure: int = 3, seed: int = 0
) -> list[dict[str, Any]]:
    """The paper's Table 2: for a few correct and incorrect trials (picked at random, seeded), the
    query and its candidates ranked by PMI. Each entry: ``query``, ``correct`` and ``ranked``, a list
    of ``(name, pmi, is_partner)`` from highest to lowest PMI."""
    candidate_scores = scores.gather(1, trials.to(scores.device)).cpu()
    correct = (candidate_scores[:, :1] > candidate_scores[:, 1:]).all(dim=1)
    generator = torch.Generator().manual_seed(seed)
    entries = []
    for want, count in ((True, num_success), (False, num_failure)):
        rows = torch.nonzero(correct == want).flatten()
        rows = rows[torch.randperm(rows.numel(), generator=generator)[:count]]
        for row in rows.tolist():
            order = candidate_scores[row].argsort(descending=True)
            ranked = [(names[int(trials[row, k])], float(candidate_scores[row, k]), int(k) == 0) for k in order]
            entries.append({"query": names[row], "correct": want, "ranked": ranked})
    return entries


def format_listing(entries: list[dict[str, Any]], accuracy: float) -> str:
    """Markdown rendering of :func:`ranked_listing` (partner marked with ``*``)."""
    lines = [f"Top-1 accuracy: {100 * accuracy:.2f}%", ""]
    for want, title in ((True, "Correct retrievals"), (False, "Incorrect retrievals")):
        lines += [f"### {title}", "", "| query | candidates ranked by PMI (log r) |", "|---|---|"]
        for entry in (e for e in entries if e["correct"] == want):
            ranked = ", ".join(f"{'*' if p else ''}{name} ({pmi:.2f})" for name, pmi, p in entry["ranked"])
            lines.append(f"| {entry['query']} | {ranked} |")
        lines.append("")
    return "\n".join(lines)


def least_squares_scores(
    x_train: Tensor, y_train: Tensor, x_query: Tensor, y_items: Tensor, ridge: float = 1e-3
) -> Tensor:
    """Baseline scores ``-||x W - y||^2`` for all (query, item) pairs, ``W`` the ridge map ``x -> y``
    fitted on the training pairs (with a bias column)."""
    if not ridge >= 0:
        raise ValueError(f"ridge: expected a non-negative penalty, got {ridge}")
    ones = torch.ones(x_train.shape[0], 1, dtype=torch.float64)
    design = torch.cat([x_train.double(), ones], dim=1)
    gram = design.T @ design + ridge * x_train.shape[0] * torch.eye(design.shape[1], dtype=torch.float64)
    weight = torch.linalg.solve(gram, design.T @ y_train.double())
    predicted = torch.cat([x_query.double(), torch.ones(x_query.shape[0], 1, dtype=torch.float64)], 1) @ weight
    return -torch.cdist(predicted, y_items.double()).square().float()


def collect_split(loader: Any) -> dict[str, Tensor]:
    """Concatenate every batch of a dataloader: ``x``, ``y`` and, when present, ``label``/``index``."""
    parts: dict[str, list[Tensor]] = {}
    for batch in loader:
        for key in ("x", "y", "label", "index"):
            if key in batch:
                parts.setdefault(key, []).append(batch[key])
    if "x" not in parts or "y" not in parts:
        raise ValueError("retrieval: the dataloader yielded no batches with 'x' and 'y'")
    return {key: torch.cat(values) for key, values in parts.items()}


class CrossModalRetrieval(Callback):
    """1:5 matching by PMI on a held-out split, after ``fit`` and on ``test``.

    Logs ``retrieval/top1`` (and ``retrieval/chance``, ``retrieval/baseline_top1``; under ``test`` as
    ``test/retrieval_top1``, ...), prints a summary
    and writes ``retrieval.json`` and the ranked-PMI listing ``listing.md`` to ``output_dir``. The
    model must map ``(x, y)`` to a PMI matrix, as :class:`~pdlightning.modules.MIEstimationModule`'s
    ``forward`` does; all pairs of the split are scored at once.

    Args:
        num_candidates: candidates per trial (the paper's 1:5 matching: 5).
        seed: seed of the trials and of the picked listing examples.
        num_examples: correct and incorrect trials each in the listing.
        split: ``"test"`` or ``"val"``: whose dataloader gives the items.
        output_dir: where to write; default ``<trainer.log_dir>/retrieval``.
        after_fit: also evaluate at the end of ``fit``.
        baseline_ridge: ridge of the least-squares nearest-neighbour baseline; ``None`` skips it.
    """

    def __init__(
        self,
        num_candidates: int = 5,
        seed: int = 0,
        num_examples: int = 3,
        split: str = "test",
        output_dir: Optional[str] = None,
        after_fit: bool = True,
        baseline_ridge: Optional[float] = 1e-3,
    ) -> None:
        super().__init__()
        if split not in ("test", "val"):
            raise ValueError(f"split: expected 'test' or 'val', got {split!r}")
        if num_candidates < 2:
            raise ValueError(f"num_candidates: need at least 2, got {num_candidates}")
        self.num_candidates, self.seed, self.num_examples = num_candidates, seed, num_examples
        self.split, self.output_dir, self.after_fit = split, output_dir, after_fit
        self.baseline_ridge = baseline_ridge
        self.results: dict[str, Any] = {}

    def _loader(self, trainer: L.Trainer, split: str) -> Any:
        datamodule = getattr(trainer, "datamodule", None)  # set by Lightning at run time, not declared on Trainer
        if datamodule is None:
            raise ValueError("CrossModalRetrieval: needs a datamodule with a test/val dataloader")
        return getattr(datamodule, f"{split}_dataloader")()

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = collect_split(self._loader(trainer, "val" if self.split == "val" else "test"))
        was_training = pl_module.training
        pl_module.eval()
        try:
            pmi = pl_module(items["x"].to(pl_module.device), items["y"].to(pl_module.device)).float().cpu()
        finally:
            pl_module.train(was_training)
        n = pmi.shape[0]
        trials = matching_trials(n, self.num_candidates, self.seed)
        accuracy = retrieval_accuracy(pmi, trials)
        index = items.get("index", torch.arange(n))
        if "label" in items:
            names = [f"{int(lab)}#{int(i)}" for lab, i in zip(items["label"], index)]
        else:
            names = [f"#{int(i)}" for i in index]
        listing = ranked_listing(pmi, trials, names, self.num_examples, self.num_examples, self.seed)
        results: dict[str, Any] = {
            "retrieval/top1": accuracy,
            "retrieval/chance": 1.0 / self.num_candidates,
            "num_queries": n,
            "partner_pmi_mean": pmi.diagonal().mean().item(),
            "other_pmi_mean": ((pmi.sum() - pmi.diagonal().sum()) / (n * n - n)).item(),
        }
        if self.baseline_ridge is not None:
            train = collect_split(self._loader(trainer, "train"))
            baseline = least_squares_scores(
                train["x"].flatten(1),
                train["y"].flatten(1),
                items["x"].flatten(1),
                items["y"].flatten(1),
                self.baseline_ridge,
            )
            results["retrieval/baseline_top1"] = retrieval_accuracy(baseline, trials)
        results["listing"] = listing
        self.results = results
        self._write(trainer, results, format_listing(listing, accuracy))
        return results

    def _write(self, trainer: L.Trainer, results: dict[str, Any], listing: str) -> None:
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank takes part, or rank 0 waits forever
        if not trainer.is_global_zero:
            return
        directory = self.output_dir or os.path.join(log_dir or ".", "retrieval")
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "retrieval.json"), "w") as f:
            json.dump(results, f, indent=2)
        with open(os.path.join(directory, "listing.md"), "w") as f:
            f.write(listing + "\n")
        summary = ", ".join(f"{k} {v:.4f}" for k, v in results.items() if k.startswith("retrieval/"))
        queries = results["num_queries"]
        rank_zero_info(f"1:{self.num_candidates} matching on {queries} queries: {summary} -> {directory}")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.after_fit:
            return
        results = self.evaluate(trainer, pl_module)
        if trainer.logger is not None:
            metrics = {k: float(v) for k, v in results.items() if k.startswith("retrieval/")}
            trainer.logger.log_metrics(metrics, step=trainer.global_step)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        results = self.evaluate(trainer, pl_module)
        for key, value in results.items():
            if key.startswith("retrieval/"):
                pl_module.log(f"test/retrieval_{key.split('/', 1)[1]}", float(value))
