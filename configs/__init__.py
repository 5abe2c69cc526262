"""The shipped YAML configs; installed as ``pdlightning.configs`` (see ``pdlightning.cli.configs``)."""
