"""Drift diagnostics: the bound's two terms and the critic's outputs on joint vs marginal pairs.

Choi & Lee, "Combating the Instability of Mutual Information-based Losses via Regularization"
(ReMINE, UAI 2022), Figs. 1-5: DV/MINE's optimal critic is ``T* = log r + C`` for any ``C``, so its
first term ``E_p[T]`` and second term ``log E_q[e^T]`` can drift together while the estimate
``first - second`` looks converged; NWJ's ``E_q[e^{T-1}]`` is self-normalising but can explode at
small batch. Re-X pins the second term to ``C*``. Plotting the terms separately and ``T`` on joint
pairs vs marginal pairs (split into inside/outside the joint support where the data says so, Fig. 2)
shows these failures, which the estimate alone hides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor

from pdlightning.records import StepRecord, step_records

from .figures import auto_span, drift_figure, drift_grid_figure
from .output import log_scalars, logging_step, publish_figure, run_directory, tensorboard_writers

__all__ = ["DriftMonitor", "pair_groups"]


def pair_groups(joint: Tensor, marginal: Tensor, batch: Any) -> dict[str, Tensor]:
    """Critic outputs per pair group, each ``[K, m]`` (members first): ``joint`` ``[K, n]``, ``marginal`` (all
    marginal pairs) and, when the batch flags explicit marginal pairs (``in_joint_support``, one pair per row),
    ``marginal_in_support`` / ``marginal_off_support``."""
    groups = {"joint": joint, "marginal": marginal.reshape(marginal.shape[0], -1)}
    flag = batch.get("in_joint_support") if isinstance(batch, dict) else None
    if flag is not None and "x_marginal" in batch and marginal.shape[-1] == 1 and flag.dim() == 1:
        flag = torch.as_tensor(flag, device=marginal.device).bool().reshape(-1)
        column = marginal[..., 0]
        groups["marginal_in_support"] = column[:, flag]
        groups["marginal_off_support"] = column[:, ~flag]
    return groups


class DriftMonitor(L.Callback):
    """Logs, every training step, the reported bound's terms and the critic's outputs ``T``.

    Scalars (to every logger, at the trainer's ``log_every_n_steps`` and Lightning's step index):
    ``drift/first_term``, ``drift/second_term``, ``drift/mi_estimate`` (of the reporting bound;
    ``mi = first - second``), ``drift/train_first_term``/``drift/train_second_term`` when the
    training bound differs, and per pair group ``drift/T_<group>_mean`` and
    ``drift/T_<group>_q<100 q>`` for each quantile. Groups: ``joint``, ``marginal``, and where the
    batch carries ``in_joint_support`` with explicit pairs, ``marginal_in_support`` /
    ``marginal_off_support`` (logged only on steps where the group is non-empty).

    Histograms ``drift/T_<group>`` every ``histogram_every_n_steps`` steps (TensorBoard loggers),
    and at fit end a figure of the term curves (raw + EWM), the estimate and ``T`` (image
    ``drift/figure`` and ``drift.png`` in ``output_dir``, default the logger's run directory).

    It reads the :class:`~pdlightning.bounds.StepRecord` each training step returns (``outputs``)
    and never changes training; steps without a record (skipped) are ignored.

    Args:
        quantiles: quantiles of ``T`` per group, each in ``(0, 1)``.
        histogram_every_n_steps: histogram period; 0 disables histograms.
        ewm_span: span of the EWM curves in the figure; ``None`` (default) scales the papers' 200 to
            the level length of the true MI (200 without a true MI).
        figure: draw the figure at fit end.
        output_dir: directory of ``drift.png``; None = the logger's run directory.
    """

    def __init__(
        self,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        histogram_every_n_steps: int = 100,
        ewm_span: Optional[float] = None,
        figure: bool = True,
        output_dir: Optional[str] = None,
    ) -> None:
        quantiles = [float(q) for q in quantiles]
        if not all(0.0 < q < 1.0 for q in quantiles):
            raise ValueError(f"quantiles: expected values in (0, 1), got {quantiles}")
        if len({round(100 * q) for q in quantiles}) != len(quantiles):
            raise ValueError(f"quantiles: must differ in whole percent (tags use q<percent>), got {quantiles}")
        if not (isinstance(histogram_every_n_steps, int) and histogram_every_n_steps >= 0):
            raise ValueError(f"histogram_every_n_steps: expected an integer >= 0, got {histogram_every_n_steps!r}")
        if ewm_span is not None and not ewm_span >= 1:
            raise ValueError(f"ewm_span: expected None (scaled to the level length) or a value >= 1, got {ewm_span}")
        self.quantiles = quantiles
        self.histogram_every_n_steps = histogram_every_n_steps
        self.ewm_span = ewm_span
        self.figure = figure
        self.output_dir = output_dir
        #: per member (``None``: a single module): the recorded steps and scalars, the training bound's
        #: second-term target (Re-X's C*) and the reporting bound's label, from the records.
        self.tracks: dict[Optional[str], _Track] = {}

    def _track(self, member: Optional[str] = None) -> "_Track":
        return self.tracks.setdefault(member, _Track())

    @property
    def steps(self) -> list[int]:
        return self._track().steps

    @property
    def history(self) -> dict[str, list[float]]:
        return self._track().history

    @property
    def _c_star(self) -> Optional[float]:
        return self._track().c_star

    @property
    def _title(self) -> Optional[str]:
        label = self._track().label
        return None if label is None else f"{label}: drift"

    # ------------------------------------------------------------------------------- per step
    def _quantile_names(self) -> list[str]:
        return [f"q{round(100 * q)}" for q in self.quantiles]

    def step_metrics(self, record: StepRecord) -> list[dict[str, float]]:
        """The scalars of one step, per member (one device transfer for all of them)."""
        names = ["first_term", "second_term", "mi_estimate"]
        values = [record.first_term, record.second_term, record.estimate]
        if record.train_first_term is not record.first_term:
            names += ["train_first_term", "train_second_term"]
            values += [record.train_first_term, record.train_second_term]
        k = len(record.members)
        q = torch.tensor(self.quantiles, device=record.joint.device)
        for group, scores in pair_groups(record.joint, record.marginal, record.batch).items():
            if scores.shape[1] == 0:
                continue
            names += [f"T_{group}_mean"] + [f"T_{group}_{name}" for name in self._quantile_names()]
            values += [scores.float().mean(1), *torch.quantile(scores.float(), q, dim=1)]
        values.append(record.reported)
        host = torch.stack([v.detach().float().reshape(k) for v in values]).cpu().tolist()
        rows = []
        for member in range(k):
            metrics = {name: host[i][member] for i, name in enumerate(names)}
            if record.true_mi is not None:  # for the figure only (the module logs mi/true)
                metrics["true_mi"] = record.true_mi
            rows.append(metrics if host[-1][member] else {})
        return rows

    def _record(self, step: int, metrics: dict[str, float], member: Optional[str] = None) -> None:
        """Append one step; tags absent at this step (or before they first appeared) read NaN."""
        track = self._track(member)
        index = len(track.steps)
        for name, value in metrics.items():
            track.history.setdefault(name, [float("nan")] * index).append(value)
        for column in track.history.values():
            if len(column) == index:
                column.append(float("nan"))
        track.steps.append(step)

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        records = step_records(outputs)
        if not records:
            return
        record = records[0]
        step = logging_step(trainer)
        single = len(record.members) == 1
        scalars: dict[str, float] = {}
        for info, metrics in zip(record.members, self.step_metrics(record)):
            if not metrics:  # the member reported nothing this step (skipped, non-finite, retired)
                continue
            member = None if single else info.name
            track, suffix = self._track(member), "" if single else f"/{info.name}"
            if track.label is None:
                track.label, track.c_star = info.label, info.second_term_target
            self._record(step, metrics, member)
            scalars.update({f"drift/{k}{suffix}": v for k, v in metrics.items() if k != "true_mi"})
        histogram = self.histogram_every_n_steps and step % self.histogram_every_n_steps == 0
        writers = tensorboard_writers(trainer) if histogram else []
        if writers:
            for group, scores in pair_groups(record.joint, record.marginal, record.batch).items():
                values = scores.detach().float().cpu()
                for index, info in enumerate(record.members):
                    suffix = "" if single else f"/{info.name}"
                    if values.shape[1]:
                        for writer in writers:
                            writer.add_histogram(f"drift/T_{group}{suffix}", values[index], step)
        log_scalars(trainer, scalars, step)

    # ------------------------------------------------------------------------------ fit end
    def series(self, member: Optional[str] = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Recorded steps and every recorded scalar as arrays (NaN where absent)."""
        track = self._track(member)
        return np.asarray(track.steps), {k: np.asarray(v, dtype=np.float64) for k, v in track.history.items()}

    def _figure_row(self, member: Optional[str]) -> dict[str, Any]:
        steps, series = self.series(member)
        names = self._quantile_names()
        outputs = {}
        for group in ("joint", "marginal", "marginal_in_support", "marginal_off_support"):
            if f"T_{group}_mean" in series:
                outputs[group] = {"mean": series[f"T_{group}_mean"]}
                if len(names) >= 2:  # band between the lowest and the highest quantile
                    outputs[group].update(low=series[f"T_{group}_{names[0]}"], high=series[f"T_{group}_{names[-1]}"])
        track = self._track(member)
        label = track.label or "estimate"
        return {
            "steps": steps,
            "series": series,
            "outputs": outputs,
            "true_mi": series.get("true_mi"),
            "c_star": track.c_star,
            "label": label if member is None else f"{member}: {label}",
        }

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        members = [m for m, track in self.tracks.items() if track.steps]
        if not self.figure or not members or not trainer.is_global_zero:
            return
        rows = [self._figure_row(m) for m in members]
        true_mi = rows[0]["true_mi"]
        span = auto_span(true_mi if true_mi is not None else np.array([]), self.ewm_span)
        if len(rows) == 1:
            row = rows[0]
            figure = drift_figure(
                row["steps"],
                row["series"],
                row["outputs"],
                span,
                true_mi=row["true_mi"],
                c_star=row["c_star"],
                title=f"{row['label']}: drift",
            )
        else:
            figure = drift_grid_figure(rows, span, title="drift per member")
        path = f"{run_directory(trainer, self.output_dir)}/drift.png"
        publish_figure(trainer, figure, "drift/figure", path, trainer.global_step)

    # --------------------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """The recorded curves, so a resumed fit draws the whole run."""
        return {
            "tracks": [
                {
                    "member": m,
                    "steps": list(t.steps),
                    "history": {k: list(v) for k, v in t.history.items()},
                    "c_star": t.c_star,
                    "label": t.label,
                }
                for m, t in self.tracks.items()
            ]
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tracks = {}
        for entry in state_dict.get("tracks", []):
            track = self._track(entry["member"])
            track.steps = list(entry.get("steps", []))
            track.history = {k: list(v) for k, v in entry.get("history", {}).items()}
            track.c_star, track.label = entry.get("c_star"), entry.get("label")


@dataclass
class _Track:
    """One member's drift record."""

    steps: list[int] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)
    c_star: Optional[float] = None
    label: Optional[str] = None
