"""``test`` / ``validate`` / ``predict`` with ``--ckpt_path``: rebuild the model that was trained.

Under the CLI a module's checkpoint holds its parsed configuration as ``hyper_parameters``
(``_class_path`` and every init argument: critic, bound, estimator, ... as ``{class_path, init_args}``,
see :mod:`pdlightning.modules.base`). Evaluating a checkpoint with the config file's model instead would
silently re-interpret the trained critic: ``pdlightning test -c configs/mi/gaussian.yaml --ckpt_path
<NWJ run>`` would report with SMILE, the config's default. So the checkpoint's values win, except for
the init arguments the user chose explicitly (:func:`explicit_model_keys`):

- an explicit ``critic`` must be the trained one (class and arguments): anything else is an error;
- an explicit ``estimator`` (or, without one, an explicit ``bound``) becomes the *reporting* bound,
  with a warning that it differs from the trained one; the training bound stays the checkpoint's
  (its state, e.g. MINE's moving average, is in the weights);
- any other explicit argument is used as given.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import yaml

from .checkpoint_io import CheckpointError

__all__ = ["ALL_KEYS", "explicit_model_keys", "evaluation_model_config", "describe_component", "check_state_matches"]

#: returned by :func:`explicit_model_keys` when the whole model was given explicitly.
ALL_KEYS = "*"
#: prefix of a module instance's hyper-parameter built in Python (``pdlightning.modules.base.PYTHON_INSTANCE``).
_PYTHON_INSTANCE = "built in Python: "


def _fragment_keys(path: str) -> set[str]:
    """Model init arguments set by a config *fragment* (a file whose ``model`` has no ``class_path``)."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return set()  # not a readable file here (the parser reports it if it matters)
    model = content.get("model") if isinstance(content, dict) else None
    if not isinstance(model, dict) or "class_path" in model:
        return set()  # no model, a path to one, or a full model definition: a base config
    keys = set(model) - {"init_args", "dict_kwargs"}
    if isinstance(model.get("init_args"), dict):
        keys |= set(model["init_args"])
    return keys


def explicit_model_keys(args: Sequence[str]) -> set[str]:
    """The model init arguments the command line sets explicitly: ``--model.init_args.<key>...`` (or
    ``--model.<key>``) options, and config fragments that set ``model.init_args.<key>`` without a
    ``model.class_path`` (e.g. ``-c configs/mi/bounds/nwj.yaml``). A full model given on the command
    line (``--model X``) returns ``{ALL_KEYS}``. Base configs (``-c configs/mi/gaussian.yaml``) set no
    explicit key."""
    keys: set[str] = set()
    items = list(args)
    for i, arg in enumerate(items):
        if arg in ("-c", "--config") and i + 1 < len(items):
            keys |= _fragment_keys(items[i + 1])
        elif arg.startswith("--config="):
            keys |= _fragment_keys(arg.split("=", 1)[1])
        elif arg == "--model" or arg.startswith("--model=") or arg.startswith("--model."):
            parts = arg[2:].split("=", 1)[0].split(".")[1:]
            if parts and parts[0] == "init_args":
                parts = parts[1:]
            keys.add(parts[0] if parts else ALL_KEYS)
    return keys


def describe_component(value: Any) -> str:
    """``NWJ``, ``SMILE(tau=5.0)``: a component's short class name and its init arguments."""
    if not isinstance(value, Mapping) or "class_path" not in value:
        return str(value)
    name = str(value["class_path"]).rsplit(".", 1)[-1]
    init = value.get("init_args") or {}
    args = ", ".join(f"{k}={describe_component(v)}" for k, v in init.items() if not isinstance(v, Mapping) or v)
    return f"{name}({args})" if args else name


def evaluation_model_config(
    config_model: Mapping[str, Any], hparams: Mapping[str, Any], explicit: Iterable[str], path: str
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The model config to evaluate checkpoint ``path`` with, and the lines to tell the user.

    Args:
        config_model: the parsed ``model`` section (``class_path``, ``init_args``) as plain data.
        hparams: the checkpoint's ``hyper_parameters``.
        explicit: :func:`explicit_model_keys` of the command line.
        path: the checkpoint (for messages).

    Returns:
        ``(model config, info lines, warning lines)``.

    Raises:
        CheckpointError: the checkpoint holds another module class, or an explicit critic differs
            from the trained one.
    """
    explicit = set(explicit)
    model: dict[str, Any] = {
        "class_path": config_model.get("class_path"),
        "init_args": dict(config_model.get("init_args") or {}),
    }
    trained_class = hparams.get("_class_path")
    if trained_class is None or ALL_KEYS in explicit:
        why = (
            "the model is given on the command line"
            if ALL_KEYS in explicit
            else "the checkpoint does not record its configuration (built in Python, not by the CLI)"
        )
        return model, [], [f"{path}: evaluating the config's model as it is: {why}"]
    if trained_class != model["class_path"]:
        raise CheckpointError(
            f"ckpt_path: {path!r} holds a {trained_class} but the config builds a {model['class_path']}; "
            "evaluate it with a config of the same model class"
        )
    trained = {k: v for k, v in hparams.items() if not str(k).startswith("_")}
    given = model["init_args"]
    init = dict(given)
    for key, value in trained.items():
        if key in explicit or (isinstance(value, str) and value.startswith(_PYTHON_INSTANCE)):
            continue
        init[key] = value
    if "critic" in explicit and "critic" in trained and given.get("critic") != trained["critic"]:
        raise CheckpointError(
            f"model.init_args.critic: the checkpoint {path!r} was trained with the critic "
            f"{describe_component(trained['critic'])}, the command line asks for "
            f"{describe_component(given.get('critic'))}; a critic's weights only mean something in the critic "
            "they were trained in (drop the critic option to use the checkpoint's)"
        )
    info, warnings = [], []
    if "bound" in trained:
        bound, estimator = trained.get("bound"), trained.get("estimator")
        trained_reporting = estimator if estimator is not None else bound
        wanted = None
        if "estimator" in explicit and given.get("estimator") is not None:
            wanted = given["estimator"]
        elif "bound" in explicit and given.get("bound") != bound:
            wanted = given.get("bound")
        init["bound"], init["estimator"] = bound, estimator
        trained_text = (
            f"trained with {describe_component(bound)}, reported with {describe_component(trained_reporting)}"
        )
        if wanted is None or wanted == trained_reporting:
            info.append(f"{path}: critic, bound and estimator from the checkpoint ({trained_text})")
        else:
            init["estimator"] = wanted
            warnings.append(
                f"reporting with {describe_component(wanted)} (from the command line), which is not the bound the "
                f"checkpoint's critic was trained and reported with ({trained_text}, from {path})"
            )
    return {"class_path": model["class_path"], "init_args": init}, info, warnings


def check_state_matches(
    model_state: Mapping[str, Any], checkpoint_shapes: Mapping[str, tuple], path: str, subcommand: str
) -> None:
    """Raise a :class:`CheckpointError` naming the parts of the model whose parameters the checkpoint
    does not hold, holds extra, or holds with other shapes (instead of ``load_state_dict``'s error)."""
    shapes = {k: tuple(v.shape) for k, v in model_state.items() if hasattr(v, "shape")}
    missing = sorted(set(shapes) - set(checkpoint_shapes))
    unexpected = sorted(set(checkpoint_shapes) - set(shapes))
    resized = sorted(k for k in set(shapes) & set(checkpoint_shapes) if shapes[k] != tuple(checkpoint_shapes[k]))
    if not (missing or unexpected or resized):
        return
    if missing and all(k.startswith("estimator.") for k in missing) and not (unexpected or resized):
        raise CheckpointError(
            f"model.init_args.estimator: the reporting bound has learned state ({', '.join(missing[:3])}) that the "
            f"checkpoint {path!r} does not hold, so it cannot report for this critic; choose a reporting bound "
            "without learned parameters"
        )

    def parts(keys: list[str]) -> str:
        return ", ".join(sorted({k.split(".")[0] for k in keys}))

    lines = []
    if resized:
        k = resized[0]
        lines.append(
            f"other shapes in {parts(resized)} (e.g. {k}: checkpoint {tuple(checkpoint_shapes[k])}, model {shapes[k]})"
        )
    if missing:
        lines.append(f"parameters the checkpoint lacks in {parts(missing)} (e.g. {missing[0]})")
    if unexpected:
        lines.append(f"parameters only the checkpoint has in {parts(unexpected)} (e.g. {unexpected[0]})")
    raise CheckpointError(
        f"ckpt_path: the model the config builds for {subcommand} does not match the checkpoint {path!r}: "
        + "; ".join(lines)
        + ". Use the config the checkpoint was trained with (its run directory's config.yaml)"
    )
