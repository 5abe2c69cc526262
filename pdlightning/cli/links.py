"""Arguments the CLI derives from other arguments (jsonargparse links), so one config runs on many datasets.

:func:`link_critic_dims`: the critic's ``x_dim`` / ``y_dim`` come from the datamodule's (``x_dim`` / ``y_dim``
attributes, :class:`~pdlightning.data.protocol.HasPairDims`) when the config leaves them out. One estimator config
then runs on every task of the suite (``pdlightning fit -c configs/suite/cpu.yaml --data.init_args.task <id>``),
whatever the task's dimensions. A value the config does give is kept: a critic whose dims differ from the data's is
still reported by name (``MIEstimationModule.setup``), never silently resized.
"""

from __future__ import annotations

from typing import Any, Optional

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

__all__ = ["link_critic_dims", "CriticDimFromData", "applicable_links"]


class CriticDimFromData:
    """The ``compute_fn`` of the link ``data -> model.init_args.critic.init_args.{side}_dim`` (applied when the
    datamodule is instantiated): the configured value if there is one, else the datamodule's ``{side}_dim``."""

    def __init__(self, cli: LightningCLI, side: str) -> None:
        self.cli, self.side = cli, side
        self.__name__ = f"{side}_dim_of_data"  # how jsonargparse names the link in --help

    def configured(self) -> tuple[bool, Optional[Any]]:
        """``(the critic takes {side}_dim, the value the config gives it or None)``, from the parsed config."""
        config = self.cli.config
        subcommand = config.get("subcommand") if isinstance(config, Namespace) else None
        config = config.get(subcommand, config) if subcommand else config
        critic = config.get("model.init_args.critic") if isinstance(config, Namespace) else None
        init_args = critic.get("init_args") if isinstance(critic, Namespace) else None
        if not isinstance(init_args, Namespace) or f"{self.side}_dim" not in init_args:
            return False, None
        return True, init_args.get(f"{self.side}_dim")

    def __call__(self, datamodule: Any) -> Optional[Any]:
        takes_dim, value = self.configured()
        if not takes_dim or value is not None:
            return value  # a model without such a critic (the link is then ignored), or the config's own value
        data_dim = getattr(datamodule, f"{self.side}_dim", None)
        if not isinstance(data_dim, int):
            raise ValueError(
                f"model.init_args.critic.init_args.{self.side}_dim: not set, and the datamodule "
                f"{type(datamodule).__name__} has no {self.side}_dim to take it from; set it in the config"
            )
        return data_dim


def link_critic_dims(parser: LightningArgumentParser, cli: LightningCLI) -> None:
    """Fill ``model.init_args.critic.init_args.{x,y}_dim`` from the datamodule when the config leaves them out
    (call from ``add_arguments_to_parser``; the dims stop being required arguments of the critic)."""
    for side in ("x", "y"):
        parser.link_arguments(
            "data",
            f"model.init_args.critic.init_args.{side}_dim",
            compute_fn=CriticDimFromData(cli, side),
            apply_on="instantiate",
        )


def applicable_links(links: dict[str, Any], hparams: dict[str, Any], key: str) -> dict[str, Any]:
    """The instantiation links' values that apply to the ``key`` component's hyper-parameters ``hparams``.

    jsonargparse applies a link whatever the subclass: for a model without a critic (``LinearEvalModule``,
    the SSL probes) the critic-dim link resolves to ``None`` and names a ``critic`` the model does not take;
    Lightning would then fail writing it into the hyper-parameters. Those values are dropped; every other
    link value is kept as it is.
    """
    critic_prefix = f"{key}.init_args.critic."
    kept = {}
    for target, value in links.items():
        if target.startswith(critic_prefix) and value is None and not isinstance(hparams.get("critic"), dict):
            continue
        kept[target] = value
    return kept
