"""``pdlightning fit|validate|test|predict``: a LightningCLI where model and data take any class_path."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import ArgsType, LightningCLI

# Imported so that short class names (``class_path: NWJ``) resolve to our classes.
import pdlightning.bounds  # noqa: F401
import pdlightning.callbacks  # noqa: F401
import pdlightning.critics  # noqa: F401
import pdlightning.data  # noqa: F401
import pdlightning.modules  # noqa: F401

__all__ = ["PDLightningCLI", "build_cli", "main"]


class PDLightningCLI(LightningCLI):
    """LightningCLI with subclass mode for model and data; optimisers come from the module's
    ``optimizer``/``scheduler`` arguments (YAML ``class_path``)."""


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
