"""``pdlightning fit|validate|test|predict``: a LightningCLI where model and data take any class_path."""

from __future__ import annotations

import glob
import os
import re
from typing import Any, Optional

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info

# Imported so that short class names (``class_path: NWJ``) resolve to our classes.
import pdlightning.applications  # noqa: F401
import pdlightning.bounds  # noqa: F401
import pdlightning.callbacks  # noqa: F401
import pdlightning.critics  # noqa: F401
import pdlightning.data  # noqa: F401
import pdlightning.encoders  # noqa: F401
import pdlightning.modules  # noqa: F401

from .links import link_critic_dims

__all__ = ["PDLightningCLI", "ResumeCheckpoint", "build_cli", "main", "find_last_checkpoint"]

#: every ``fit`` saves ``<logger dir>/version_N/checkpoints/last.ckpt`` this often (``--checkpoint.*``).
DEFAULT_CHECKPOINT_EVERY = 1000
_SPECIAL_CKPT = ("last", "best", "hpc", "registry")


class ResumeCheckpoint(ModelCheckpoint):
    """The CLI's default checkpoint: ``last.ckpt`` every ``every_n_train_steps`` and at the end of
    training, in the logger's ``version_N/checkpoints/``; resume with ``--ckpt_path last``.

    It also flushes the loggers whenever a checkpoint is written (and once more after that step's
    metrics are handed over), so a run killed after a checkpoint has its logs on disk up to it:
    TensorBoard's writer otherwise buffers up to two minutes, the CSV logger 100 steps.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flush_pending = False

    @staticmethod
    def _flush(trainer: L.Trainer) -> None:
        for logger in trainer.loggers:
            logger.save()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._flush(trainer)
        self._flush_pending = True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._flush_pending:  # the checkpointed step's own metrics were logged after the save
            self._flush(trainer)
            self._flush_pending = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """``last.ckpt`` holds the final step even when ``max_steps`` is not a multiple of
        ``every_n_train_steps``."""
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._flush(trainer)


def find_last_checkpoint(log_root: str) -> Optional[tuple[int, str]]:
    """``(N, path)`` of the newest ``last*.ckpt`` in the highest ``<log_root>/version_N/checkpoints``
    that has one; ``None`` if there is none."""
    found = []
    for directory in glob.glob(os.path.join(glob.escape(log_root), "version_*")):
        match = re.fullmatch(r"version_(\d+)", os.path.basename(directory))
        ckpts = glob.glob(os.path.join(glob.escape(directory), "checkpoints", "last*.ckpt"))
        if match and ckpts:
            found.append((int(match.group(1)), max(ckpts, key=os.path.getmtime)))
    return max(found) if found else None


class PDLightningCLI(LightningCLI):
    """LightningCLI with subclass mode for model and data; optimisers come from the module's
    ``optimizer``/``scheduler`` arguments (YAML ``class_path``).

    Resumable by default: a ``checkpoint`` section (:class:`ResumeCheckpoint`, ``save_last``, every
    ``DEFAULT_CHECKPOINT_EVERY`` steps) is added to every run unless ``trainer.enable_checkpointing``
    is false or the config brings its own ``ModelCheckpoint``. ``fit --ckpt_path last`` resumes the
    newest ``version_N`` of the configured logger that has a ``last.ckpt`` *and logs into that same
    version* (plain Lightning would open a new version and find no checkpoint there).
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ResumeCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.every_n_train_steps": DEFAULT_CHECKPOINT_EVERY})
        link_critic_dims(parser, self)  # critic x_dim / y_dim from the datamodule when the config leaves them out

    def before_instantiate_classes(self) -> None:
        config = self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            self._resolve_last(config)
        elif isinstance(ckpt_path, str) and ckpt_path not in _SPECIAL_CKPT and "://" not in ckpt_path:
            if not os.path.isfile(ckpt_path):
                raise FileNotFoundError(
                    f"ckpt_path: no checkpoint file at {ckpt_path!r} (expected a .ckpt file, or 'last' to "
                    "resume the newest run under the logger's directory)"
                )

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """Like LightningCLI's, but leaves the default ``checkpoint`` out when checkpointing is off
        or the config has its own ``ModelCheckpoint``."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        own_checkpoint = any(isinstance(c, ModelCheckpoint) for c in callbacks)
        extra = []
        for key in self._parser(self.subcommand).callback_keys:
            callback = self._get(self.config_init, key)
            if isinstance(callback, ResumeCheckpoint) and (
                config.get("enable_checkpointing") is False or own_checkpoint
            ):
                continue
            extra.append(callback)
        return self._instantiate_trainer(config, extra)

    def _resolve_last(self, config: Any) -> None:
        """Point ``ckpt_path`` at the newest ``last.ckpt`` under the logger's directory and, for
        ``fit``, make the logger continue in that version."""
        if config.get("checkpoint") is not None and config.checkpoint.get("dirpath"):
            return  # a fixed checkpoint directory: Lightning's own "last" lookup finds it
        logger = config.trainer.get("logger")
        if isinstance(logger, list):
            logger = logger[0] if logger else None
        init_args = getattr(logger, "init_args", None)
        if init_args is None or init_args.get("save_dir") is None or init_args.get("version") is not None:
            return  # default / disabled logger, or a fixed version: Lightning resolves "last" itself
        found = find_last_checkpoint(os.path.join(str(init_args.save_dir), str(init_args.get("name") or "")))
        if found is None:
            return  # Lightning warns that there is no last checkpoint and starts from scratch
        version, path = found
        config.ckpt_path = path
        if self.subcommand == "fit":
            init_args.version = version
            rank_zero_info(f"Resuming from {path}; logging continues in version_{version}")
            if str(getattr(logger, "class_path", "")).endswith("CSVLogger"):
                _keep_csv_metrics(os.path.dirname(os.path.dirname(path)))


def _keep_csv_metrics(log_dir: str) -> None:
    """CSVLogger deletes ``metrics.csv`` of a version it reopens: keep the interrupted run's rows as
    ``metrics.part<i>.csv`` (they overlap the resumed rows from the checkpoint's step on)."""
    metrics = os.path.join(log_dir, "metrics.csv")
    if os.path.isfile(metrics):
        index = len(glob.glob(os.path.join(glob.escape(log_dir), "metrics.part*.csv")))
        os.replace(metrics, os.path.join(log_dir, f"metrics.part{index}.csv"))


def build_cli(args: ArgsType = None, run: bool = True) -> PDLightningCLI:
    """Parse ``args`` (default: ``sys.argv``) and, with ``run``, execute the subcommand."""
    return PDLightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: ArgsType = None) -> None:
    """Console entry point ``pdlightning``."""
    build_cli(args)


if __name__ == "__main__":
    main()
