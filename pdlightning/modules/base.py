"""The plumbing every pdlightning LightningModule shares: optimisers from YAML factories, and one
hyper-parameter policy.

Hyper-parameters: a module's init arguments are recorded in its checkpoint (``hyper_parameters``) so
that a later stage can rebuild what it needs (linear evaluation rebuilds the SSL encoder; ``test`` and
``predict`` use the trained bound and critic). Under the ``pdlightning`` CLI they are the parsed config:
``{class_path, init_args}`` of every critic, bound, encoder and optimiser, enough to rebuild them.
Built in Python, a module instance is recorded as the string ``"built in Python: <class path>"`` (its
settings are unknown; its weights are in the state dict) and a factory (``functools.partial``, a
class) by its dotted name, so every checkpoint holds plain data and loads with
``torch.load(weights_only=True)``. A consumer tells the two apart by ``isinstance(value, dict)``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Iterable, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

__all__ = ["ConfiguredModule", "plain_hyperparameters", "PYTHON_INSTANCE"]

#: prefix of the hyper-parameter recorded for a module instance built in Python (no config to rebuild it).
PYTHON_INSTANCE = "built in Python: "


def _dotted_name(value: Any) -> str:
    target = getattr(value, "func", value)  # functools.partial
    module = getattr(target, "__module__", "") or type(target).__module__
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    keywords = getattr(value, "keywords", None)
    arguments = f"({', '.join(f'{k}={v!r}' for k, v in keywords.items())})" if keywords else ""
    return f"{module}.{name}{arguments}"


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, nn.Module):
        return f"{PYTHON_INSTANCE}{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    return _dotted_name(value)


def plain_hyperparameters(hparams: Any) -> None:
    """Apply the policy in place, recursively (lists, dicts, dataclasses): module instances ->
    ``"built in Python: <class path>"``, other non-data values (classes, callables, partials) ->
    their dotted name. Config dicts and plain values stay."""
    for key in list(hparams.keys()):
        hparams[key] = _plain(hparams[key])


class ConfiguredModule(L.LightningModule):
    """Base of the package's LightningModules: one ``configure_optimizers`` and the hyper-parameter
    policy of this module's docstring.

    A subclass calls ``super().__init__(optimizer, scheduler)`` first thing in its ``__init__``; it
    overrides :meth:`optimized_parameters` when some parameters have their own optimiser (the SSL
    module's online probe) or are frozen (linear evaluation's encoder).

    Args:
        optimizer: optimiser factory (``class_path`` in YAML).
        scheduler: optional learning-rate scheduler factory, stepped every optimiser step.
    """

    def __init__(
        self, optimizer: OptimizerCallable = torch.optim.Adam, scheduler: Optional[LRSchedulerCallable] = None
    ) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Lightning collects the init arguments of every subclass's __init__ up the call stack (or,
        # under the CLI, takes the parsed config); instances are made plain right after.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        plain_hyperparameters(self.hparams)
        plain_hyperparameters(self._hparams_initial)  # what the loggers write (hparams.yaml)

    def optimized_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters the optimiser updates (default: all)."""
        return self.parameters()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.optimized_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
