"""``estimate_mi(x, y)``: the held-out MI between two arrays in one call, on the same module, datamodule and trainer
as ``pdlightning fit -c mi/arrays.yaml``.

It builds an :class:`~pdlightning.data.ArraysDataModule` (split, standardisation, batches) and one
:class:`~pdlightning.modules.MIEstimationModule` whose members are the estimators times the seeds, fits it with a
Lightning ``Trainer`` and runs the module's own ``test`` on the held-out pairs; the numbers are the module's
evaluation rows (:class:`~pdlightning.results.EstimateResult`, what ``results.json`` holds), never recomputed here.

Why the defaults (data of unknown scale and size, measured on a 5-d correlated Gaussian with 2,000 pairs, I = 1 nat,
one CPU thread; the ``gaussian.yaml`` critics are the population protocol's, which draws a fresh batch every step):

- the critic is the task suite's finite-sample critic (``configs/suite/cpu.yaml``): a joint MLP of 16 and 8 hidden
  units, Adam 3e-3. Critics of the Gaussian protocol (2 x 256, Adam 5e-4) overfit 1,600 training pairs: after
  2,000 steps the joint one reported 0.13 / -0.16 nats held out (SMILE / InfoNCE; 0.25 s a CPU step), the
  separable one -2.07 / -2.32; a joint 32 x 32 0.68, where 16 x 8 reports 0.88 to 0.96 (~0.009 s a step);
- 2,000 steps of 128 pairs (fewer training pairs: all of them), 20% of the rows held out, both variables
  standardised with the training rows' statistics (the MI is unchanged by these affine maps);
- estimators SMILE (tau = 5) and InfoNCE: two families with different biases (InfoNCE is capped at
  ``log(eval batch size)``, about 4.9 nats here), so a disagreement between them is visible.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

__all__ = ["estimate_mi", "MIEstimate", "EstimatorResult", "DEFAULT_ESTIMATORS"]

DEFAULT_ESTIMATORS = ("smile_tau5", "infonce")
_CRITICS = ("joint", "separable")
_DEVICES = ("auto", "cpu", "cuda")
#: new pairs scored at once by :meth:`MIEstimate.pmi`.
_PMI_CHUNK = 4096


@dataclass(frozen=True)
class EstimatorResult:
    """One estimator's held-out MI (nats) with its interval.

    With several seeds, ``estimate`` is the mean of the seeds' held-out estimates and ``low`` / ``high`` its 95%
    interval for both the seeds' spread and the shared held-out sample's error
    (:func:`~pdlightning.uncertainty.seeds_and_held_out_interval`); with one seed, the fit's own
    held-out interval over held-out pairs (plug-in estimators) or held-out batches (bounds with in-batch negatives).
    ``n`` and ``unit`` say which: ``"seed"``, ``"pair"`` or ``"batch"``.

    Attributes:
        key: the estimator's fragment key (``configs/mi/bounds/<key>.yaml``).
        label: the reporting bound's name (``SMILE(τ=5)``).
        per_seed: each seed's held-out estimate (``None``: the member was retired for divergence).
        status: ``"ok"``, or ``"failed"`` when no seed gave an estimate.
        notes: what the numbers do not say by themselves (retired seeds, a single seed left).
    """

    key: str
    label: str
    estimate: float
    stderr: float
    low: float
    high: float
    n: int
    unit: str
    method: str
    per_seed: dict[int, Optional[float]]
    status: str = "ok"
    notes: tuple[str, ...] = ()

    @property
    def units(self) -> str:
        """What the interval is over, in words: ``"3 held-out batches"``, ``"400 held-out pairs"``, ``"5 seeds"``."""
        from .uncertainty import count_of

        if self.n == 0:
            return "none"
        text = count_of(self.n, self.unit)
        return text if self.unit == "seed" else text.replace(" ", " held-out ", 1)

    @property
    def interval(self) -> tuple[float, float]:
        return self.low, self.high

    def to_dict(self) -> dict[str, Any]:
        def number(value: Optional[float]) -> Optional[float]:
            return None if value is None or not math.isfinite(value) else float(value)

        return {
            "key": self.key,
            "label": self.label,
            "estimate": number(self.estimate),
            "stderr": number(self.stderr),
            "low": number(self.low),
            "high": number(self.high),
            "confidence": 0.95,
            "n": self.n,
            "unit": self.unit,
            "units": self.units,
            "method": self.method,
            "per_seed": {str(seed): number(value) for seed, value in self.per_seed.items()},
            "status": self.status,
            "notes": list(self.notes),
        }


@dataclass
class MIEstimate:
    """What :func:`estimate_mi` returns: per estimator its held-out MI and interval (:class:`EstimatorResult`),
    the settings and data sizes, and :meth:`pmi` for new pairs. ``result["infonce"]`` is one estimator's;
    :attr:`estimate` / :attr:`interval` are the first estimator's."""

    results: dict[str, EstimatorResult]
    settings: dict[str, Any]
    data: dict[str, Any]
    #: the module's evaluation rows (per member and across seeds), as ``results.json`` holds them.
    rows: list[Any] = field(default_factory=list, repr=False)
    _module: Any = field(default=None, repr=False)
    _datamodule: Any = field(default=None, repr=False)
    _reference: Any = field(default=None, repr=False)

    @property
    def estimators(self) -> tuple[str, ...]:
        return tuple(self.results)

    def __getitem__(self, key: str) -> EstimatorResult:
        if key not in self.results:
            raise KeyError(f"estimator: {key!r} was not estimated (have {list(self.results)})")
        return self.results[key]

    @property
    def estimate(self) -> float:
        """The first estimator's held-out MI (nats)."""
        return next(iter(self.results.values())).estimate

    @property
    def interval(self) -> tuple[float, float]:
        """The first estimator's 95% interval."""
        return next(iter(self.results.values())).interval

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: ``estimators`` (one dict per estimator, in order), ``settings`` and ``data``."""
        return {
            "estimators": [r.to_dict() for r in self.results.values()],
            "settings": dict(self.settings),
            "data": dict(self.data),
        }

    def __repr__(self) -> str:
        data, settings = self.data, self.settings
        seeds = settings["seeds"]
        lines = [
            f"MIEstimate: held-out MI in nats on {data['n_test']} of {data['rows']} pairs ({data['x_dim']} x "
            f"{data['y_dim']} features; {settings['critic']} critic {list(settings['hidden_dims'])}, "
            f"{settings['steps']} steps of {settings['batch_size']}, {seeds} seed{'s' if seeds > 1 else ''})",
            f"  {'estimator':<14} {'estimate':>9}   {'95% interval':<19} units",
        ]
        for r in self.results.values():
            if r.status != "ok":
                lines.append(f"  {r.key:<14} {'failed':>9}   {'-':<19} {'; '.join(r.notes)}")
                continue
            interval = f"[{r.low:.3f}, {r.high:.3f}]" if r.n > 1 else "none (n = 1)"
            lines.append(f"  {r.key:<14} {r.estimate:9.3f}   {interval:<19} {r.units}")
        notes = [f"  {r.key}: {note}" for r in self.results.values() if r.status == "ok" for note in r.notes]
        return "\n".join(lines + notes)

    # ------------------------------------------------------------------------------------- PMI
    def pmi(self, x: Any, y: Any, estimator: Optional[str] = None) -> np.ndarray:
        """The PMI ``log r_hat(x_i, y_i)`` of new pairs (row ``i`` of ``x`` with row ``i`` of ``y``), in nats.

        ``x`` and ``y`` are standardised with the *training* rows' statistics (as the fit saw its data) and scored
        by the module's :meth:`~pdlightning.modules.MIEstimationModule.member_pmi`: each pair's PMI is a function
        of the pair alone (bounds whose PMI needs a batch statistic, SMILE's log-partition or InfoNCE's row
        normaliser, take it from the first ``pmi_reference_size`` held-out pairs, as ``pdlightning predict``
        does on the test split). With several seeds an estimator's PMI is the mean over its seeds (retired seeds
        left out).

        Returns:
            ``[n]`` for ``estimator`` (or when one estimator was fitted), else ``[n, E]`` with the columns in the
            order of :attr:`estimators`.
        """
        import torch

        module, datamodule = self._module, self._datamodule
        if module is None or datamodule is None:
            raise RuntimeError("pmi: this MIEstimate holds no trained model (only estimate_mi gives one)")
        if estimator is not None and estimator not in self.results:
            raise ValueError(f"estimator: {estimator!r} was not estimated (have {list(self.results)})")
        xs, ys = datamodule.transform(x, "x"), datamodule.transform(y, "y")
        if xs.shape[0] != ys.shape[0]:
            raise ValueError(
                f"x and y: the arrays must be aligned row by row, got {xs.shape[0]} rows of x and {ys.shape[0]} of y"
            )
        keys = [estimator] if estimator is not None else list(self.results)
        table = module.member_table
        retired = set(module.retired)
        columns = {key: [k for k, m in enumerate(table) if m.id.key == key and m.name not in retired] for key in keys}
        module.eval()
        with torch.no_grad(), _quiet():
            module.pmi_reference = self._pmi_reference()
            try:
                parts = [
                    module.member_pmi(
                        xs[i : i + _PMI_CHUNK].to(module.device), ys[i : i + _PMI_CHUNK].to(module.device), None
                    )
                    .float()
                    .cpu()
                    for i in range(0, xs.shape[0], _PMI_CHUNK)
                ]
            finally:
                module.pmi_reference = None
        values = torch.cat(parts, dim=1).double().numpy() if parts else np.zeros((len(table), 0))
        out = np.stack(
            [values[rows].mean(axis=0) if rows else np.full(values.shape[1], np.nan) for rows in columns.values()],
            axis=1,
        )
        return out[:, 0] if len(keys) == 1 else out

    def _pmi_reference(self) -> Any:
        """The fixed reference sample of bounds whose PMI needs a batch statistic (``None`` when none does)."""
        module = self._module
        if self._reference is None and module.pmi_reference_size:
            needs = any(reporting.pmi_normalizer is not None for _, reporting in module.bounds.descriptions)
            if needs:
                from .modules.pmi_reference import reference_from_loaders

                held_out = {k: v for k, v in self._datamodule.held_out().items() if k in ("x", "y")}
                self._reference = reference_from_loaders([[held_out]], module.pmi_reference_size, module.device)
        return self._reference


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No Lightning banners (devices, tips, "max_steps reached") and none of its data-loading advice; the module's
    own warnings (a diverging member) still show."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            from lightning.fabric.utilities.warnings import PossibleUserWarning

            warnings.filterwarnings("ignore", category=PossibleUserWarning)
            for message in (
                r".*isinstance\(treespec, LeafSpec\)",
                r".*IterableDataset.*has `__len__` defined",
                r".*GPU available but not used",
                r".*does not have many workers",
            ):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_estimators(estimators: Union[str, Sequence[str]]) -> tuple[str, ...]:
    from .modules.members import _unknown_key, known_keys

    keys = (estimators,) if isinstance(estimators, str) else estimators
    if not isinstance(keys, (list, tuple)) or not keys:
        raise ValueError(
            f"estimators: expected one or more estimator keys (e.g. {DEFAULT_ESTIMATORS}), got {estimators!r}"
        )
    for index, key in enumerate(keys):
        if not isinstance(key, str):
            raise TypeError(f"estimators[{index}]: expected an estimator key (str), got {type(key).__name__}")
        if key not in known_keys():
            raise _unknown_key(key, f"estimators[{index}]")
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"estimators: {duplicates} listed twice; for several fits of one estimator use seeds=")
    return tuple(keys)


def _accelerator(device: Any) -> str:
    import torch

    if not isinstance(device, str) or device not in _DEVICES:
        raise ValueError(f"device: expected one of {list(_DEVICES)}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for, but torch sees no CUDA device here; use 'cpu' or 'auto'")
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return "gpu" if device == "cuda" else "cpu"


def estimate_mi(
    x: Any,
    y: Any,
    estimators: Union[str, Sequence[str]] = DEFAULT_ESTIMATORS,
    *,
    critic: str = "joint",
    steps: int = 2000,
    batch_size: int = 128,
    seeds: int = 1,
    test_fraction: float = 0.2,
    device: str = "auto",
    progress: bool = True,
    hidden_dims: Sequence[int] = (16, 8),
    embed_dim: int = 8,
    lr: float = 3e-3,
    standardize: bool = True,
    seed: int = 0,
    eval_batch_size: Optional[int] = None,
    output_dir: Optional[str] = None,
) -> MIEstimate:
    """Estimate the mutual information ``I(X; Y)`` (nats) from paired samples, on pairs held out from training.

    Row ``i`` of ``x`` and row ``i`` of ``y`` are one draw of ``(X, Y)``. ``round(test_fraction * n)`` rows are held
    out (never trained on); the other rows train one :class:`~pdlightning.modules.MIEstimationModule` whose members
    are every estimator times every seed; the module's ``test`` then reports each member's MI on the held-out pairs
    with its 95% interval (:mod:`pdlightning.uncertainty`). Per estimator the result is, with ``seeds > 1``, the mean
    over its seeds (each seed draws its own critic and its own order of the training batches: ``data="replicas"``)
    with an interval for both the seeds' spread and the error of the held-out sample they share
    (:func:`~pdlightning.uncertainty.seeds_and_held_out_interval`), else the single fit's own held-out interval (over
    held-out pairs for plug-in estimators, over held-out batches for bounds with in-batch negatives such as SMILE and
    InfoNCE). Neither covers the estimator's bias (a bound below the truth stays below it with any number of seeds).

    Defaults for data of unknown scale (measured in the module docstring of :mod:`pdlightning.api`): both variables
    standardised with the training rows' mean and standard deviation; 20% held out; a joint critic of 16 and 8
    hidden units (the task suite's finite-sample critic: larger ones overfit a few thousand pairs); Adam 3e-3;
    2,000 steps of ``min(128, training rows)`` pairs; one seed.

    Args:
        x, y: ``[n, dx]`` and ``[n, dy]`` arrays (numpy, torch, lists; any numeric dtype, 1-D is one feature) or file
            paths (``.npy``, ``.npz``, ``file.npz:key``, ``.csv``, ``.pt``).
        estimators: fragment keys of ``configs/mi/bounds/`` (``smile_tau5``, ``infonce``, ``nwj``, ``pd_classifier``,
            ...; ``pdlightning.modules.members.known_keys()``).
        critic: ``"joint"`` (an MLP of ``[x; y]``) or ``"separable"`` (``g(x)^T h(y)``, ``embed_dim`` features; cheaper,
            weaker where the log-ratio has terms in ``x`` or ``y`` alone).
        steps: training steps.
        batch_size: training pairs per step (capped by the training rows).
        seeds: fits per estimator (seed replicates, seeds ``seed .. seed + seeds - 1``).
        test_fraction: share of the rows held out, in ``(0, 1)``.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        progress: show Lightning's progress bar.
        hidden_dims, embed_dim, lr: the critic's hidden widths, the separable critic's embedding size, Adam's rate.
        standardize: z-score each column with the training rows' statistics (``False``: the values as they are).
        seed: seed of the split, the training order and the first critic.
        eval_batch_size: held-out pairs per evaluation batch (at least; default ``min(batch_size, held-out pairs)``).
        output_dir: where the module writes ``results.json`` (default: a temporary directory, removed).

    Returns:
        An :class:`MIEstimate` (its ``repr`` is the table; ``to_dict()``; ``pmi(x, y)`` for new pairs).

    Raises:
        ValueError / TypeError naming the argument: misaligned, too few, non-finite or non-numeric rows, arrays of
        more than two dimensions, an unknown estimator (with close matches), a bad critic, device or budget.
    """
    keys = _check_estimators(estimators)
    steps = _check_int(steps, "steps", 1)
    batch_size = _check_int(batch_size, "batch_size", 2)
    seeds = _check_int(seeds, "seeds", 1)
    seed = _check_int(seed, "seed", 0)
    embed_dim = _check_int(embed_dim, "embed_dim", 1)
    if critic not in _CRITICS:
        raise ValueError(f"critic: expected one of {list(_CRITICS)}, got {critic!r}")
    if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence) or not hidden_dims:
        raise ValueError(f"hidden_dims: expected a list of layer widths such as (16, 8), got {hidden_dims!r}")
    hidden = [_check_int(width, f"hidden_dims[{i}]", 1) for i, width in enumerate(hidden_dims)]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: expected a learning rate > 0, got {lr!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected the held-out share of the rows in (0, 1), got {test_fraction!r}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress: expected True or False, got {progress!r}")
    accelerator = _accelerator(device)

    import lightning as L
    import torch

    from .critics import JointCritic, SeparableCritic
    from .data.arrays import ArraysDataModule, as_feature_array
    from .modules import Member, MIEstimationModule

    x_values, _ = as_feature_array(x, "x")
    y_values, _ = as_feature_array(y, "y")
    n_train = x_values.shape[0] - round(float(test_fraction) * x_values.shape[0])
    datamodule = ArraysDataModule(
        x_values,
        y_values,
        test_fraction=test_fraction,
        batch_size=max(2, min(batch_size, n_train)),
        eval_batch_size=eval_batch_size,
        steps=steps,
        standardize=standardize,
        seed=seed,
        replicas=seeds if seeds > 1 else None,
    )
    dims = (datamodule.x_dim, datamodule.y_dim)
    architecture = (
        JointCritic(*dims, hidden_dims=hidden) if critic == "joint" else SeparableCritic(*dims, hidden, embed_dim)
    )
    members = [Member(bound=key, seed=seed + s, replica=s if seeds > 1 else None) for key in keys for s in range(seeds)]
    module = MIEstimationModule(
        critic=architecture,
        members=list(members),
        data="replicas" if seeds > 1 else "shared",
        optimizer=functools.partial(torch.optim.Adam, lr=float(lr)),
        non_finite="skip",
        on_member_divergence="retire",
        summary=False,
    )
    with contextlib.ExitStack() as stack:
        directory = output_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="pdlightning-"))
        with _quiet():
            L.seed_everything(seed, verbose=False)
            trainer = L.Trainer(
                accelerator=accelerator,
                devices=1,
                max_steps=steps,
                max_epochs=1,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                enable_progress_bar=progress,
                num_sanity_val_steps=0,
                limit_val_batches=0,
                log_every_n_steps=min(50, steps),
                default_root_dir=directory,
            )
            trainer.fit(module, datamodule=datamodule)
            trainer.test(module, datamodule=datamodule, verbose=False)
    rows = module.held_out_results.get("test", [])
    results = {key: _pooled(key, rows, seeds) for key in keys}
    settings = {
        "estimators": list(keys),
        "critic": critic,
        "hidden_dims": hidden,
        "embed_dim": embed_dim if critic == "separable" else None,
        "lr": float(lr),
        "steps": steps,
        "batch_size": datamodule.batch_size,
        "eval_batch_size": datamodule.eval_batch_size,
        "seeds": seeds,
        "seed": seed,
        "test_fraction": float(test_fraction),
        "standardize": bool(standardize),
        "device": "cuda" if accelerator == "gpu" else "cpu",
    }
    data = {
        "rows": datamodule.rows,
        "n_train": datamodule.n_train,
        "n_test": datamodule.n_test,
        "x_dim": datamodule.x_dim,
        "y_dim": datamodule.y_dim,
    }
    return MIEstimate(results, settings, data, rows, module, datamodule)


def _pooled(key: str, rows: Sequence[Any], seeds: int) -> EstimatorResult:
    """Estimator ``key``'s result from the module's rows: its across-seed row (several seeds) or its one member's."""
    members = [r for r in rows if r.group is None and r.key == key]
    per_seed = {
        int(r.seed): (r.interval.estimate if r.status == "ok" and r.interval is not None else None) for r in members
    }
    finished = [r for r in members if r.status == "ok" and r.interval is not None]
    retired = [r for r in members if r.status != "ok"]
    notes = [f"seed {r.seed} retired ({r.extra.get('note', 'diverged')})" for r in retired]
    group = next((r for r in rows if r.group == key and r.interval is not None), None)
    label = members[0].label if members else key
    source = group if seeds > 1 and group is not None else finished[0] if len(finished) == 1 else None
    if source is None:
        nan = float("nan")
        notes.append("no seed gave a held-out estimate")
        return EstimatorResult(key, label, nan, nan, nan, nan, 0, "seed", "none", per_seed, "failed", tuple(notes))
    if seeds > 1 and source is not group:
        notes.append(f"one seed of {seeds} finished: its own held-out interval, not one over seeds")
    interval = source.interval
    if source is group and len(finished) >= 2:  # the seeds' spread and the shared held-out sample's error, together
        from .uncertainty import seeds_and_held_out_interval

        interval = seeds_and_held_out_interval([r.interval.estimate for r in finished], [r.interval for r in finished])
    return EstimatorResult(
        key,
        label,
        float(interval.estimate),
        float(interval.stderr),
        float(interval.low),
        float(interval.high),
        int(interval.n),
        str(interval.unit),
        str(interval.method),
        per_seed,
        "ok",
        tuple(notes),
    )
