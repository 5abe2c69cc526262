"""``pdlightning fit|validate|test|predict``: a LightningCLI where model and data take any class_path.

What it adds to Lightning's CLI, each for a way a run could otherwise lose or mislabel a result:

- checkpoints written atomically (:mod:`pdlightning.cli.checkpoint_io`), every
  ``DEFAULT_CHECKPOINT_EVERY`` steps and at the end, in the logger's ``version_N/checkpoints/``;
- ``fit --ckpt_path last`` resumes the newest *loadable* checkpoint of *this* experiment (its run
  identity, :mod:`pdlightning.cli.identity`), logs into that run's directory and records the
  resumed invocation's config beside the original one instead of over it;
- ``test`` / ``validate`` / ``predict --ckpt_path`` evaluate the model that was trained (critic,
  bound and estimator from the checkpoint, :mod:`pdlightning.cli.trained_model`), write into
  ``<run>/version_N/<subcommand>/`` and refuse to evaluate an untrained model;
- ``--threads`` (torch intra-op threads) set before anything runs;
- ``--test_after_fit true`` (e.g. in a config: ``configs/mi/arrays.yaml``): the fit ends with the module's own
  ``test`` on the datamodule's test split, so it prints (and writes to ``results.json``) the held-out estimates;
- errors about the user's input print one message, not a traceback (``PDLIGHTNING_DEBUG=1`` shows it).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import warnings
from typing import Any, Optional

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import (  # the instantiator the CLI extends
    ArgsType,
    LightningArgumentParser,
    LightningCLI,
    _get_module_type,
    _InstantiatorFn,
)
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

# Imported so that short class names (``class_path: NWJ``) resolve to our classes.
import pdlightning.applications  # noqa: F401
import pdlightning.bounds  # noqa: F401
import pdlightning.callbacks  # noqa: F401
import pdlightning.critics  # noqa: F401
import pdlightning.data  # noqa: F401
import pdlightning.encoders  # noqa: F401
import pdlightning.modules  # noqa: F401
from pdlightning.distributed import release_process_group
from pdlightning.modules.finite import NonFiniteBoundError

from .checkpoint_io import AtomicCheckpointIO, CheckpointError, CheckpointInfo, CheckpointWriteError, read_checkpoint
from .configs import PackagedConfigs, resolve_config_args
from .entry import DESCRIPTION
from .errors import DEBUG_ENV, failure, run_console
from .identity import CHECKPOINT_KEY, RUN_FILE, defining_config, differences, identity_of, run_record
from .links import applicable_links, link_critic_dims
from .progress import LineProgress, wants_line_progress
from .run_lock import DirectoryBusy, acquire, release
from .trained_model import check_state_matches, evaluation_model_config, explicit_model_keys

__all__ = [
    "PDLightningCLI",
    "ResumeCheckpoint",
    "RunIdentity",
    "ContinueAfterMaxSteps",
    "RunMismatchError",
    "UntrainedModelError",
    "ResumeError",
    "build_cli",
    "main",
    "find_last_checkpoint",
    "DEFAULT_THREADS",
    "DEBUG_ENV",
    "QUIET_WARNINGS",
]

#: every ``fit`` saves ``<logger dir>/version_N/checkpoints/last.ckpt`` this often (``--checkpoint.*``).
DEFAULT_CHECKPOINT_EVERY = 1000
#: torch intra-op threads when neither ``--threads`` nor ``PDLIGHTNING_THREADS`` is given (README, "Threads").
DEFAULT_THREADS = 1
THREADS_ENV = "PDLIGHTNING_THREADS"
_SPECIAL_CKPT = ("last", "best", "hpc", "registry")
_EVAL_SUBCOMMANDS = ("validate", "test", "predict")

#: warnings that Lightning would print on every run, none of them about the user's run (ignored by the CLI).
QUIET_WARNINGS = (
    # torch 2.14 deprecated ``LeafSpec``, which Lightning's CombinedLoader still builds on every run; the
    # warning is about Lightning's code, not ours or the user's, and is fixed upstream by a Lightning update.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # worker processes that our loaders do not use: the synthetic streams (pdlightning.data.stream) are
    # IterableDatasets with a length, read in the main process on purpose (batch t is a pure function of
    # (seed, t)); the evaluation sets are small tensors in memory.
    r"Your `IterableDataset` has `__len__` defined",
    r".*does not have many workers",
    # under DDP, one per held-out metric: those values are computed from every process's units gathered on the
    # host (pdlightning.modules.reporting.gather_intervals), so they are the same on every rank already
    r"It is recommended to use `self\.log\('(test|val)/mi_",
)
for _pattern in QUIET_WARNINGS:
    warnings.filterwarnings("ignore", message=_pattern, category=Warning)


class _DropTip(logging.Filter):
    """Lightning advertises its cloud logger on every run ("💡 Tip: ... litlogger")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTip())


class RunMismatchError(ValueError):
    """``--ckpt_path`` points at (or ``last`` found) a run of another experiment."""


class UntrainedModelError(ValueError):
    """``test`` / ``validate`` / ``predict`` without a checkpoint would evaluate random weights."""


class ResumeError(ValueError):
    """A resumed fit that cannot train further."""


class ResumeCheckpoint(ModelCheckpoint):
    """The CLI's default checkpoint: ``last.ckpt`` every ``every_n_train_steps`` and at the end of
    training, in the logger's ``version_N/checkpoints/``; resume with ``--ckpt_path last``.

    It also flushes the loggers whenever a checkpoint is written (and once more after that step's
    metrics are handed over), so a run killed after a checkpoint has its logs on disk up to it:
    TensorBoard's writer otherwise buffers up to two minutes, the CSV logger 100 steps.
    """

    # No __init__ of its own: the CLI then reads ModelCheckpoint's signature directly. A forwarding
    # ``__init__(*args, **kwargs)`` makes jsonargparse resolve the parameters from this file's source,
    # which fails in a long-lived process once the file on disk has changed.
    _flush_pending: bool = False

    @staticmethod
    def _flush(trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._flush(trainer)
        self._flush_pending = True

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._flush_pending:  # the checkpointed step's own metrics were logged after the save
            self._flush(trainer)
            self._flush_pending = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning compares the restored ``dirpath`` with this one as strings and warns "The dirpath has
        changed" when a relative and an absolute path name the same directory."""
        saved = state_dict.get("dirpath")
        if saved and self.dirpath and os.path.realpath(saved) == os.path.realpath(self.dirpath):
            state_dict = {**state_dict, "dirpath": self.dirpath}
        super().load_state_dict(state_dict)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``last.ckpt`` holds the final step even when ``max_steps`` is not a multiple of
        ``every_n_train_steps``."""
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._flush(trainer)


class RunIdentity(Callback):
    """Stores the run record (:func:`pdlightning.cli.identity.run_record`) in every checkpoint
    (``checkpoint["pdlightning_run"]``) and in ``<log dir>/run_identity.yaml`` when a fit starts."""

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        log_dir = trainer.log_dir  # a broadcast under DDP: every rank takes part, or rank 0 waits forever
        if trainer.is_global_zero and trainer.logger is not None and log_dir:
            os.makedirs(log_dir, exist_ok=True)
            with open(os.path.join(log_dir, RUN_FILE), "w", encoding="utf-8") as handle:
                yaml.safe_dump(self.record, handle, sort_keys=False)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.record


class ContinueAfterMaxSteps(Callback):
    """Lets a fit stopped by ``max_steps`` in the middle of its data continue with a larger ``max_steps``.

    Lightning closes the epoch when ``max_steps`` ends it, so the final checkpoint of a 5,000-step run
    of the 20,000-step protocol (``max_epochs: 1``) says "epoch 1 done" and a resume with
    ``--trainer.max_steps 10000`` trains 0 steps. When the checkpoint's epoch was closed before its
    last batch, this reopens it on load (the state a checkpoint written mid-epoch has), so the fit
    continues with the next batch of the same stream."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        fit = (checkpoint.get("loops") or {}).get("fit_loop")
        if trainer.state.fn != TrainerFn.FITTING or not isinstance(fit, dict):
            return
        batches, epochs = fit.get("epoch_loop.batch_progress") or {}, fit.get("epoch_progress") or {}
        current = epochs.get("current") or {}
        closed = current.get("completed", 0) > 0 and current.get("completed") == current.get("started")
        if batches.get("is_last_batch", True) or not closed or not (batches.get("current") or {}).get("completed"):
            return
        for scope in ("total", "current"):
            epochs[scope]["processed"] = epochs[scope]["completed"] = epochs[scope]["started"] - 1
        checkpoint["epoch"] = current["completed"]


class _ApplyOptimizerConfig(Callback):
    """After a *forced* resume, the configured optimiser settings replace the restored ones (the
    restored state would otherwise keep the old learning rate while config.yaml shows the new one)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        changed = []
        for index, optimizer in enumerate(trainer.optimizers):
            for group in optimizer.param_groups:
                for key, value in optimizer.defaults.items():
                    if key in group and group[key] != value:
                        if key == "lr" and trainer.lr_scheduler_configs:
                            raise ResumeError(
                                "--force_resume: the learning rate differs from the checkpoint's and a scheduler "
                                "manages it; a new lr cannot be applied to the resumed schedule (start a new run)"
                            )
                        changed.append(f"optimizer {index} {key}: {group[key]} -> {value}")
                        group[key] = value
        for line in dict.fromkeys(changed):
            rank_zero_warn(f"forced resume: {line} from step {trainer.global_step} on")


class _RunStarted(Callback):
    """Marks the end of set-up: errors raised after the first batch are not input errors."""

    def _mark(self, *args: Any, **kwargs: Any) -> None:
        _PHASE["running"] = True

    on_train_batch_end = on_validation_batch_end = on_test_batch_end = on_predict_batch_end = _mark


_PHASE = {"running": False}


def find_last_checkpoint(log_root: str) -> Optional[tuple[int, str]]:
    """``(N, path)`` of the newest ``last*.ckpt`` in the highest ``<log_root>/version_N/checkpoints``
    that has one; ``None`` if there is none (no check that it loads: see :meth:`PDLightningCLI`)."""
    found = []
    for number, directory in _versions(log_root):
        ckpts = glob.glob(os.path.join(glob.escape(directory), "checkpoints", "last*.ckpt"))
        if ckpts:
            found.append((number, max(ckpts, key=os.path.getmtime)))
    return max(found) if found else None


def _versions(log_root: str) -> list[tuple[int, str]]:
    """``(N, path)`` of every ``<log_root>/version_N``, newest (highest N) first."""
    found = []
    for directory in glob.glob(os.path.join(glob.escape(log_root), "version_*")):
        match = re.fullmatch(r"version_(\d+)", os.path.basename(directory))
        if match and os.path.isdir(directory):
            found.append((int(match.group(1)), directory))
    return sorted(found, reverse=True)


def _loadable_checkpoints(directory: str) -> tuple[list[CheckpointInfo], list[tuple[str, str]]]:
    """The checkpoints in ``directory`` that load, newest step first (then newest file), and
    ``(path, reason)`` of those that do not."""
    good, bad = [], []
    for path in glob.glob(os.path.join(glob.escape(directory), "*.ckpt")):
        try:
            good.append((read_checkpoint(path), os.path.getmtime(path)))
        except (CheckpointError, OSError) as error:
            bad.append((path, str(error)))
    good.sort(key=lambda item: (item[0].global_step, item[1]), reverse=True)
    return [info for info, _ in good], bad


def resolve_threads(threads: Optional[int], default: Optional[int] = DEFAULT_THREADS) -> Optional[int]:
    """``--threads``, else ``$PDLIGHTNING_THREADS``, else ``default``; ``0`` or ``None``: the CLI leaves torch's
    setting alone (``OMP_NUM_THREADS``, else one thread per core)."""
    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env and not env.isdigit():
            raise ValueError(f"{THREADS_ENV}: expected a whole number of threads >= 0, got {env!r}")
        threads = int(env) if env else default
    if threads is not None and threads < 0:
        raise ValueError(f"threads: expected a whole number of threads >= 0 (0: torch's default), got {threads}")
    return threads


class _LinkFilteringInstantiator(_InstantiatorFn):
    """Lightning's model instantiator, given only the link values that name parameters of the chosen model."""

    def __call__(self, class_type: Any, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        self.cli._dump_config()
        dumped = self.cli.config_dump.get(self.key, {})
        hparams = dumped.get("init_args", dumped) if isinstance(dumped, dict) else {}
        links = applicable_links(applied_instantiation_links, hparams, self.key)
        return super().__call__(class_type, *args, applied_instantiation_links=links, **kwargs)


class PDLightningCLI(PackagedConfigs, LightningCLI):
    """LightningCLI with subclass mode for model and data; optimisers come from the module's
    ``optimizer``/``scheduler`` arguments (YAML ``class_path``). See the module docstring for what it
    adds; the arguments it adds to every subcommand:

    - ``--threads N``: torch intra-op threads (default ``$PDLIGHTNING_THREADS``, else 1 in the console
      script; 0: torch's own default);
    - ``--force_resume true``: ``fit --ckpt_path`` continues a run whose identity differs from this
      config's (its new settings, optimiser ones included, apply from the resumed step on);
    - ``--allow_untrained true``: ``test`` / ``validate`` / ``predict`` without ``--ckpt_path``.

    Resumable by default: a ``checkpoint`` section (:class:`ResumeCheckpoint`, ``save_last``, every
    ``DEFAULT_CHECKPOINT_EVERY`` steps) is added to every fit unless ``trainer.enable_checkpointing``
    is false or the config brings its own ``ModelCheckpoint``.
    """

    def __init__(
        self, *args: Any, default_threads: Optional[int] = None, settings: Optional[dict] = None, **kwargs: Any
    ) -> None:
        """``default_threads``: torch threads when neither ``--threads`` nor ``$PDLIGHTNING_THREADS`` is
        given; ``None`` leaves them alone (``build_cli`` from Python, e.g. the report, which sets its own).
        ``settings``: a nested dict of config values applied over the parsed arguments by the parser itself
        (what the runner and the report build in Python, never serialised to text and parsed again)."""
        self.default_threads = default_threads
        self._settings = settings
        super().__init__(*args, **kwargs)

    def _add_instantiators(self) -> None:
        """Lightning's instantiators, with the model's link values filtered by :func:`.links.applicable_links`
        (the critic-dim link names no parameter of a model without a critic)."""
        super()._add_instantiators()
        self.parser.add_instantiator(
            _LinkFilteringInstantiator(cli=self, key="model"),
            _get_module_type(self._model_class),
            subclasses=self.subclass_mode_model,
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """``test`` prints the module's own held-out table: Lightning's raw metrics table (``verbose``) is off
        unless ``--verbose true`` asks for it. (``validate`` keeps it: the modules print no table there.)"""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "test":
            parser.set_defaults(verbose=False)
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ResumeCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 0,
                "checkpoint.every_n_train_steps": DEFAULT_CHECKPOINT_EVERY,
            }
        )
        parser.add_argument(
            "--threads",
            type=Optional[int],
            default=None,
            help=f"torch intra-op threads (default: ${THREADS_ENV}, else {DEFAULT_THREADS} in the "
            "pdlightning command; 0: torch's own, OMP_NUM_THREADS or one per core)",
        )
        parser.add_argument(
            "--force_resume",
            type=bool,
            default=False,
            help="fit --ckpt_path: continue a run whose identity differs from this config's",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="fit: at the end, evaluate the trained model on the datamodule's test split (the held-out table and "
            "results.json of `test`, in the run's directory) without a separate `test`",
        )
        parser.add_argument(
            "--allow_untrained",
            type=bool,
            default=False,
            help="test/validate/predict without --ckpt_path: evaluate the untrained model on purpose",
        )
        link_critic_dims(parser, self)  # critic x_dim / y_dim from the datamodule when the config leaves them out

    # ------------------------------------------------------------------------------ parsing
    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        raw = (
            [str(a) for a in (sys.argv[1:] if args is None else args)]
            if not isinstance(args, dict) and not hasattr(args, "as_dict")
            else []
        )
        # with packaged config names resolved to files, so that a packaged bound fragment given to `test`
        # is seen as the explicit reporting bound it is
        self._raw_args = resolve_config_args(raw, parser.error)[0] if raw else []
        super().parse_arguments(parser, args)
        if self._settings:
            subcommand = self.config.get("subcommand")
            values = {"subcommand": subcommand, subcommand: self._settings} if subcommand else self._settings
            self.config = parser.parse_object(values, cfg_base=self.config)
        config = self._subconfig()
        self._random_seed = config.get("seed_everything") is True  # drawn per invocation by _set_seed

    def _parse_ckpt_path(self) -> None:
        """Lightning's version merges the checkpoint's hyper-parameters into the model config in a way
        that leaves the config's bound in place; :meth:`_prepare_evaluation` does it instead."""

    def _subconfig(self) -> Any:
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    # ------------------------------------------------------------------------ before building
    def before_instantiate_classes(self) -> None:
        _PHASE["running"] = False
        config = self._subconfig()
        threads = resolve_threads(config.get("threads"), self.default_threads)
        if threads:  # 0 or None: torch's own setting (OMP_NUM_THREADS, else one thread per core)
            torch.set_num_threads(threads)
        self._resumed: Optional[CheckpointInfo] = None
        self._forced = False
        self._checkpoint: Optional[CheckpointInfo] = None
        self._logger_defaults(config)
        if self.subcommand == "fit":
            self._prepare_fit(config)
        elif self.subcommand in _EVAL_SUBCOMMANDS:
            self._prepare_evaluation(config)

    @staticmethod
    def _logger(config: Any) -> tuple[Any, Any]:
        """``(logger namespace, its init_args)`` of the first configured logger with a ``save_dir``."""
        logger = config.trainer.get("logger") if config.get("trainer") is not None else None
        if isinstance(logger, list):
            logger = logger[0] if logger else None
        init_args = getattr(logger, "init_args", None)
        if init_args is None or init_args.get("save_dir") is None:
            return None, None
        return logger, init_args

    def _logger_defaults(self, config: Any) -> None:
        """No ``hp_metric`` placeholder (-1) in TensorBoard: the module logs its real metrics."""
        logger, init_args = self._logger(config)
        if logger is not None and str(logger.class_path).endswith("TensorBoardLogger"):
            init_args.default_hp_metric = False

    def _config_name(self, name: str) -> None:
        self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": name, "overwrite": True}

    # -------------------------------------------------------------------------------- fit
    def _prepare_fit(self, config: Any) -> None:
        defining = defining_config(config, random_seed=self._random_seed)
        identity = identity_of(defining)
        self._force = bool(config.get("force_resume"))
        ckpt_path = config.get("ckpt_path")
        found: Optional[CheckpointInfo] = None
        if ckpt_path == "last":
            found = self._resolve_last(config, identity)
        elif isinstance(ckpt_path, str) and ckpt_path not in _SPECIAL_CKPT and "://" not in ckpt_path:
            found = read_checkpoint(ckpt_path)
            self._check_identity(found, identity, defining, f"ckpt_path {ckpt_path!r}")
        elif ckpt_path is None:
            self._refuse_occupied_version(config)
        segments = None
        if found is not None:
            self._resumed = found
            previous = found.run or {}
            segments = list(previous.get("segments") or [])
            if previous.get("identity") != identity:
                self._forced = previous.get("identity") is not None
                segments.append({"identity": identity, "from_step": found.global_step})
            self._config_name(f"config.resumed_at_step_{found.global_step}.yaml")
        self._record = run_record(defining, segments)

    def _refuse_occupied_version(self, config: Any) -> None:
        """A new fit never writes into a directory that already holds another run (a fixed ``version``)."""
        logger, init_args = self._logger(config)
        if logger is None or init_args.get("version") is None:
            return
        version = init_args.version
        version_dir = os.path.join(
            str(init_args.save_dir),
            str(init_args.get("name") or ""),
            version if isinstance(version, str) else f"version_{version}",
        )
        if os.path.isdir(version_dir) and os.listdir(version_dir):
            raise RunMismatchError(
                f"trainer.logger.init_args.version: {version_dir} already holds a run's files; a new fit would mix "
                "its logs and overwrite its checkpoints and config. Resume that run with --ckpt_path last, or "
                "choose another version (or none: Lightning then opens the next version_N)"
            )

    def _check_identity(self, found: CheckpointInfo, identity: str, defining: dict[str, Any], where: str) -> None:
        run = found.run
        if run is None:
            rank_zero_warn(
                f"{where}: {found.path} records no run identity (written by an older pdlightning or "
                "outside the CLI); resuming it without checking that it is this experiment"
            )
            return
        if run.get("identity") == identity or self._force:
            return
        raise RunMismatchError(self._mismatch_message(found, identity, defining, where))

    @staticmethod
    def _mismatch_message(found: CheckpointInfo, identity: str, defining: dict[str, Any], where: str) -> str:
        run = found.run or {}
        lines = differences(run.get("config") or {}, defining)
        return (
            f"{where}: found {found.path} (step {found.global_step}) of run {run.get('identity')}, but this "
            f"config defines run {identity}; it is another experiment (checkpoint -> this config):\n  "
            + "\n  ".join(lines)
            + "\nStart a new run (drop --ckpt_path), use the config that run was started with (config.yaml in "
            "its directory), or pass --force_resume true to continue it with these settings from step "
            f"{found.global_step} on."
        )

    def _resolve_last(self, config: Any, identity: str) -> Optional[CheckpointInfo]:
        """The newest loadable checkpoint of this run identity: ``config.ckpt_path`` is set to it and the
        logger continues in its version. ``None`` (start fresh) when there is nothing to resume."""
        defining = defining_config(config, random_seed=self._random_seed)
        logger, init_args = self._logger(config)
        dirpath = config.checkpoint.get("dirpath") if config.get("checkpoint") is not None else None
        candidates: list[tuple[Optional[int | str], str]]  # (logger version, checkpoint directory)
        if dirpath:
            candidates = [(None, str(dirpath))]
            where = str(dirpath)
        elif init_args is not None:
            root = os.path.join(str(init_args.save_dir), str(init_args.get("name") or ""))
            version = init_args.get("version")
            if version is not None:
                name = version if isinstance(version, str) else f"version_{version}"
                candidates = [(version, os.path.join(root, name, "checkpoints"))]
            else:
                candidates = [(number, os.path.join(path, "checkpoints")) for number, path in _versions(root)]
            where = root
        else:
            return None  # Lightning's default logger: its own "last" lookup (a new version: nothing to resume)
        mismatch: Optional[CheckpointInfo] = None
        corrupt: list[tuple[str, str]] = []
        chosen, chosen_version = None, None
        for version, directory in candidates:
            infos, bad = _loadable_checkpoints(directory)
            corrupt += bad
            if not infos:
                continue
            newest = infos[0]
            run_identity = (newest.run or {}).get("identity")
            if run_identity in (identity, None):
                chosen, chosen_version = newest, version
                break
            mismatch = mismatch or newest
        for path, reason in corrupt:
            rank_zero_warn(f"ckpt_path last: skipping {path}: {reason}")
        if chosen is None and mismatch is not None:
            if not self._force:
                raise RunMismatchError(self._mismatch_message(mismatch, identity, defining, "ckpt_path last"))
            chosen = mismatch
            chosen_version = next(v for v, d in candidates if os.path.dirname(mismatch.path) == d)
        if chosen is None:
            if corrupt:
                raise CheckpointError(
                    f"ckpt_path last: every checkpoint found under {where} is damaged "
                    f"({', '.join(p for p, _ in corrupt)}); nothing can be resumed: start a new run without "
                    "--ckpt_path"
                )
            rank_zero_warn(f"ckpt_path last: found no last checkpoint of this run under {where}; starting a new run")
            config.ckpt_path = None
            return None
        self._check_identity(chosen, identity, defining, "ckpt_path last")
        config.ckpt_path = chosen.path
        if chosen_version is not None:
            init_args.version = chosen_version
            run_dir = os.path.dirname(os.path.dirname(chosen.path))
            _lock_run_directory(run_dir, "fit --ckpt_path last")  # before touching its files (metrics.csv)
            rank_zero_info(
                f"Resuming from {chosen.path} (step {chosen.global_step}); logging continues in "
                f"{os.path.basename(run_dir)}"
            )
            if str(getattr(logger, "class_path", "")).endswith("CSVLogger"):
                _keep_csv_metrics(run_dir)
        else:
            rank_zero_info(f"Resuming from {chosen.path} (step {chosen.global_step})")
        return chosen

    # ---------------------------------------------------------------- test / validate / predict
    def _prepare_evaluation(self, config: Any) -> None:
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None:
            if not config.get("allow_untrained"):
                raise UntrainedModelError(
                    f"ckpt_path: {self.subcommand} needs the trained weights: without --ckpt_path it would evaluate "
                    "the model's random initial weights. Pass --ckpt_path <run>/checkpoints/last.ckpt (or 'last': "
                    f"the newest run under the logger's directory), or --allow_untrained true to {self.subcommand} "
                    "the untrained model on purpose"
                )
            return
        if ckpt_path == "last":
            info = self._newest_checkpoint(config)
        elif isinstance(ckpt_path, str) and ckpt_path not in _SPECIAL_CKPT and "://" not in ckpt_path:
            info = read_checkpoint(ckpt_path)
        else:
            return  # best / hpc / registry / remote: Lightning resolves and loads them
        config.ckpt_path = info.path
        self._checkpoint = info
        model = config.model.as_dict() if hasattr(config.model, "as_dict") else dict(config.model)
        new_model, info_lines, warning_lines = evaluation_model_config(
            model, info.hyper_parameters, explicit_model_keys(self._raw_args), info.path
        )
        if new_model != model:
            self.config = self.parser.parse_object({self.subcommand: {"model": new_model}}, self.config)
            config = self._subconfig()
        for line in info_lines:
            rank_zero_info(f"{self.subcommand}: {line}")
        for line in warning_lines:
            rank_zero_warn(f"{self.subcommand}: {line}")
        self._log_next_to_run(config, info.path)
        if config.get("checkpoint") is not None and not config.checkpoint.get("dirpath"):
            # the checkpoint callback's restored state names this directory; another one makes Lightning
            # warn "The dirpath has changed" (nothing is saved while evaluating)
            config.checkpoint.dirpath = os.path.dirname(info.path)
        self._config_name("config.yaml")

    def _newest_checkpoint(self, config: Any) -> CheckpointInfo:
        logger, init_args = self._logger(config)
        if init_args is None:
            raise CheckpointError(
                f"ckpt_path last: {self.subcommand} finds runs under the logger's save_dir, and "
                "this config has none; give the checkpoint's path"
            )
        root = os.path.join(str(init_args.save_dir), str(init_args.get("name") or ""))
        for _, path in _versions(root):
            infos, bad = _loadable_checkpoints(os.path.join(path, "checkpoints"))
            for bad_path, reason in bad:
                rank_zero_warn(f"ckpt_path last: skipping {bad_path}: {reason}")
            if infos:
                rank_zero_info(f"{self.subcommand}: ckpt_path last -> {infos[0].path} (step {infos[0].global_step})")
                return infos[0]
        raise CheckpointError(f"ckpt_path last: no loadable checkpoint under {root}; give the checkpoint's path")

    def _log_next_to_run(self, config: Any, ckpt_path: str) -> None:
        """Write test/predict output into ``<run>/<subcommand>/`` of the run whose checkpoint is
        evaluated, not into a new ``version_N`` that no longer matches the run's."""
        checkpoints_dir = os.path.dirname(os.path.abspath(ckpt_path))
        logger, init_args = self._logger(config)
        if init_args is None or os.path.basename(checkpoints_dir) != "checkpoints":
            return
        run_dir = os.path.dirname(checkpoints_dir)
        root = os.path.abspath(os.path.join(str(init_args.save_dir), str(init_args.get("name") or "")))
        if os.path.dirname(run_dir) != root:
            init_args.save_dir, init_args.name = os.path.dirname(run_dir), ""
        init_args.version = f"{os.path.basename(run_dir)}/{self.subcommand}"

    # ------------------------------------------------------------------------- running
    def _run_subcommand(self, subcommand: str) -> None:
        """Run the subcommand holding its run directory (the logger's ``log_dir``): one writer per run."""
        if self.trainer.loggers:
            log_dir = self.trainer.log_dir
            if log_dir and "://" not in str(log_dir):
                _lock_run_directory(str(log_dir), subcommand)
        super()._run_subcommand(subcommand)

    # ------------------------------------------------------------------------- building
    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Like LightningCLI's, plus: atomic checkpoint writes, the run identity and the set-up marker;
        the default ``checkpoint`` is left out when checkpointing is off or the config has its own
        ``ModelCheckpoint``."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        own_checkpoint = any(isinstance(c, ModelCheckpoint) for c in callbacks)
        extra: list[Callback] = [_RunStarted()]
        for key in self._parser(self.subcommand).callback_keys:
            callback = self._get(self.config_init, key)
            off = config.get("enable_checkpointing") is False or own_checkpoint
            if isinstance(callback, ResumeCheckpoint) and off:
                continue
            extra.append(callback)
        if wants_line_progress(config, callbacks):  # piped output: lines, not redrawn bars (cli/progress.py)
            extra.append(LineProgress())
        if self.subcommand == "fit":
            extra += [RunIdentity(self._record), ContinueAfterMaxSteps()]
            if self._forced:
                extra.append(_ApplyOptimizerConfig())
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins) and isinstance(config.get("strategy", "auto"), str):
            config["plugins"] = [*plugins, AtomicCheckpointIO()]
        return self._instantiate_trainer(config, extra)

    def after_instantiate_classes(self) -> None:
        """Fail before running when the checkpoint's weights do not fit the model that was built."""
        info = self._resumed if self.subcommand == "fit" else self._checkpoint
        if info is None:
            return
        # a module whose members differ from the checkpoint's (another order, a subset, another reporting bound)
        # maps and checks them by name itself
        by_name = tuple(getattr(self.model, "member_names", info.member_names)) != info.member_names or (
            hasattr(self.model, "member_layout") and self.model.member_layout() != info.member_layout
        )
        if getattr(self.model, "strict_loading", True) and not by_name:
            check_state_matches(self.model.state_dict(), info.state_shapes, info.path, str(self.subcommand))

    def after_fit(self) -> None:
        """A resumed fit that trained no step says why (the data ended, or the run was complete); with
        ``--test_after_fit`` the trained model is then evaluated on the test split (:meth:`_test_after_fit`)."""
        self._explain_resume()
        self._test_after_fit()

    def _test_after_fit(self) -> None:
        """``--test_after_fit``: the module's ``test`` on the datamodule's test split with the weights just trained
        (its table of held-out estimates, its ``results.json`` in the run directory); not after an interrupted fit."""
        if not self._subconfig().get("test_after_fit") or self.trainer.interrupted:
            return
        if not callable(getattr(self.datamodule, "test_dataloader", None)):
            raise ValueError(
                f"test_after_fit: the datamodule {type(self.datamodule).__name__} has no test split to evaluate on"
            )
        self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)

    def _explain_resume(self) -> None:
        trainer, resumed = self.trainer, self._resumed
        if resumed is None or trainer.interrupted or trainer.global_step != resumed.global_step:
            return
        if 0 < trainer.max_steps <= resumed.global_step:
            rank_zero_info(
                f"fit: {resumed.path} is at step {resumed.global_step}, trainer.max_steps is "
                f"{trainer.max_steps}: the run is complete, nothing to train"
            )
            return
        batches = trainer.num_training_batches
        raise ResumeError(
            f"fit --ckpt_path: resumed {resumed.path} at step {resumed.global_step} and trained 0 steps although "
            f"trainer.max_steps is {trainer.max_steps}: the run's data ends at that step (trainer.max_epochs="
            f"{trainer.max_epochs} epoch(s) of {batches} batches). A longer run needs a longer data schedule "
            "(e.g. data.init_args.steps_per_level or mi_schedule), which is another experiment: start a new run "
            "without --ckpt_path"
        )


def _keep_csv_metrics(log_dir: str) -> None:
    """CSVLogger deletes ``metrics.csv`` of a version it reopens: keep the interrupted run's rows as
    ``metrics.part<i>.csv`` (they overlap the resumed rows from the checkpoint's step on)."""
    metrics = os.path.join(log_dir, "metrics.csv")
    if os.path.isfile(metrics):
        index = len(glob.glob(os.path.join(glob.escape(log_dir), "metrics.part*.csv")))
        os.replace(metrics, os.path.join(log_dir, f"metrics.part{index}.csv"))


#: run directories this process holds (:func:`_lock_run_directory`), by real path: the open lock files.
_HELD: dict[str, Any] = {}


def _lock_run_directory(directory: str, doing: str) -> None:
    """Hold ``directory`` for this invocation (:mod:`.run_lock`): a second process writing into it (a second
    ``fit --ckpt_path last`` of the run, a second ``test`` of it) gets an error naming this one's pid. Only the
    first process of a run holds it (global rank 0; the other ranks of a multi-process run write nothing there)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if getattr(rank_zero_only, "rank", 0) != 0 or os.environ.get("NODE_RANK", "0") not in ("", "0"):
        return
    key = os.path.realpath(directory)
    if key not in _HELD:
        _HELD[key] = acquire(directory, f"pdlightning {doing}")


class _ParsedOnly(PDLightningCLI):
    """The CLI's parsing (``cli.config``, exactly as a fit parses it), building no class: what a sweep compares
    with a finished run's recorded config before reusing it."""

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass


def build_cli(
    args: ArgsType = None,
    run: bool = True,
    default_threads: Optional[int] = None,
    settings: Optional[dict] = None,
    parse_only: bool = False,
) -> PDLightningCLI:
    """Parse ``args`` (default: ``sys.argv``) and, with ``run``, execute the subcommand.

    ``default_threads``: torch threads when neither ``--threads`` nor ``$PDLIGHTNING_THREADS`` is given
    (``None``: the caller's setting stays; the ``pdlightning`` console script passes :data:`DEFAULT_THREADS`).
    ``settings``: nested config values applied over ``args`` by the parser (see :class:`PDLightningCLI`).
    With ``run``, the run directory the subcommand wrote into is held while it runs and given back after.
    ``parse_only`` (with ``run=False``): only ``cli.config``, as the run would parse it; no model, data or trainer.
    """
    if parse_only and run:
        raise ValueError("parse_only: only with run=False (nothing is built to run)")
    _PHASE["running"] = False
    held_before = set(_HELD)
    try:
        return (_ParsedOnly if parse_only else PDLightningCLI)(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": DESCRIPTION},
            args=args,
            run=run,
            default_threads=default_threads,
            settings=settings,
        )
    finally:
        for key in set(_HELD) - held_before:
            release(_HELD.pop(key))


#: errors about the user's input when raised before the first batch (afterwards they are bugs).
_INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, MisconfigurationException)
#: our own errors whose message is the whole story (input errors, a diverged run: the message says where it
#: diverged and what to change, a run directory another process holds, a checkpoint the disk could not take),
#: whenever they are raised.
_OWN_INPUT_ERRORS = (
    CheckpointError,
    RunMismatchError,
    UntrainedModelError,
    ResumeError,
    NonFiniteBoundError,
    DirectoryBusy,
    CheckpointWriteError,
)


def input_error_message(error: BaseException) -> Optional[str]:
    """The message to print for an error that is not a bug (:func:`pdlightning.cli.errors.failure`: an input
    error, one of ours, an unusable path), ``None`` if ``error`` is a bug."""
    found = failure(error, _OWN_INPUT_ERRORS, _INPUT_ERRORS, setting_up=not _PHASE["running"])
    return None if found is None else found[0]


def main(args: ArgsType = None) -> None:
    """Console entry point ``pdlightning``: a failure that is not a bug (the input: config, data, checkpoint; a
    path that cannot be used; a full disk) prints one line naming it and exits with status 2 (1 when the machine
    failed); ``PDLIGHTNING_DEBUG=1`` shows the traceback instead (:mod:`pdlightning.cli.errors`)."""
    run_console(
        "pdlightning",
        lambda: build_cli(args, default_threads=DEFAULT_THREADS),
        _OWN_INPUT_ERRORS,
        _INPUT_ERRORS,
        setting_up=lambda: not _PHASE["running"],
    )
    # A DDP run's group still alive at exit can abort the process after its success. Only after a success: after a
    # failure the other ranks may still be inside a collective, and the process exits non-zero anyway.
    release_process_group()


if __name__ == "__main__":
    main()
