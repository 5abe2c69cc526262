"""The shipped configs compose (a task base plus fragments stacked with ``-c``), every config and every
command of the README's and the docs/ pages' bash blocks parses (``--print_config``, or the runners' own parsers)
from a directory outside the clone, and configs that moved still resolve, with a warning."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from pdlightning.applications.mi_benchmark import run_mi_benchmark
from pdlightning.applications.self_consistency import run_self_consistency
from pdlightning.cli.configs import MOVED, fragment_key, packaged_configs_dir
from pdlightning.cli.main import build_cli
from pdlightning.modules import ContrastiveSSLModule
from pdlightning.runner.cli import function_arguments

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SSL_DATASETS = ("mnist", "fashion_mnist", "cifar10", "mnist_shallow", "demo")
OBJECTIVES = {"cpc": "InfoNCE", "pcc": "ProbabilisticClassifier", "drfc": "DensityRatioFitting"}

#: every fit config: a base alone, or fragments stacked on a base (paths relative to configs/).
COMBINATIONS = (
    [
        ("mi/gaussian.yaml",),
        ("mi/cubic.yaml",),
        ("mi/demo.yaml",),
        ("drift/onehot.yaml",),
        ("kl/gaussians.yaml",),
        ("kl/gaussian_student.yaml",),
        ("kl/gaussians.yaml", "mi/bounds/eta_dv.yaml"),
        ("gan/grid25.yaml",),
        ("gan/grid25.yaml", "mi/bounds/dv.yaml"),
        ("dim/mnist.yaml",),
        ("dim/mnist.yaml", "mi/bounds/dv.yaml"),
        ("retrieval/mfeat.yaml",),
        ("retrieval/paired_features.yaml",),
        ("consistency/mnist.yaml",),
        ("consistency/mnist.yaml", "consistency/cpu.yaml"),
        ("mi/gaussian.yaml", "report/separable_critic.yaml"),
        ("mi/gaussian.yaml", "mi/ensemble/table2.yaml"),
        ("mi/cubic.yaml", "mi/ensemble/protocol.yaml"),
        ("mi/gaussian.yaml", "mi/ensemble/seeds.yaml"),
        ("mi/cubic.yaml", "mi/ensemble/table2.yaml", "mi/ensemble/separable.yaml"),
        ("suite/cpu.yaml",),
        ("suite/gpu.yaml",),
        ("suite/cpu.yaml", "mi/bounds/pd_classifier.yaml"),
        ("mi/arrays.yaml",),
        ("mi/arrays.yaml", "mi/ensemble/seeds.yaml"),
    ]
    + [("mi/gaussian.yaml", f"mi/bounds/{p.name}") for p in sorted((CONFIGS / "mi" / "bounds").glob("*.yaml"))]
    + [(f"ssl/{d}.yaml",) for d in SSL_DATASETS]
    + [("ssl/demo.yaml", f"ssl/objectives/{o}.yaml") for o in OBJECTIVES]
    + [(f"linear_eval/{p.name}",) for p in sorted((CONFIGS / "linear_eval").glob("*.yaml"))]
    + [
        (f"{task}/mnist.yaml",) + ((f"{task}/{overlay}.yaml",) if overlay else ())
        for task in ("slb", "clb")
        for overlay in (None, "fashion_mnist", "cifar10", "cifar100")
    ]
)
#: included by other configs (per-key files) or read by the runners.
INCLUDED = {"mi/protocol/model.yaml", "mi/protocol/trainer.yaml", "drift/trainer.yaml"}
RUNNER_CONFIGS = {
    "slb/table_mnist.yaml": run_mi_benchmark,
    "clb/table_mnist.yaml": run_mi_benchmark,
    "consistency/sweep_mnist.yaml": run_self_consistency,
    "consistency/sweep_mnist_cpu.yaml": run_self_consistency,
}
READ_BY_RUNNERS = {"losses/remine_table2.yaml"}


def print_config(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as exit:
        build_cli([*args, "--print_config"])
    assert exit.value.code in (0, None), capsys.readouterr().err[-2000:]
    return yaml.safe_load(capsys.readouterr().out)


def test_every_config_is_covered_here():
    """A new config is added to one of the lists above, so it is parsed by the tests below."""
    every = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml")}
    covered = {c for combination in COMBINATIONS for c in combination} | INCLUDED | set(RUNNER_CONFIGS)
    assert every - covered - READ_BY_RUNNERS == set()


@pytest.mark.parametrize("combination", COMBINATIONS, ids=lambda c: "+".join(c))
def test_every_config_parses_from_outside_the_clone(combination, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # found among the packaged configs, as after a plain pip install
    config = print_config(["fit"] + [a for c in combination for a in ("-c", f"configs/{c}")], capsys)
    assert config["model"]["class_path"] and config["data"]["class_path"]


@pytest.mark.parametrize("name", sorted(RUNNER_CONFIGS))
def test_every_runner_config_parses(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = function_arguments(RUNNER_CONFIGS[name], ["--config", f"configs/{name}"])
    assert all(os.path.isfile(os.fspath(base)) for base in arguments["base"])  # relative to the runner config
    assert arguments["overrides"] and arguments["output_dir"].startswith("reports/")


def test_every_ssl_dataset_is_one_base_and_the_objectives_are_bound_fragments():
    """The PD paper's protocol (network, lr, optimiser and batch size fixed; only the objective
    changes) holds by construction: an objective is a fragment that holds the bound and nothing else."""
    assert sorted(p.stem for p in (CONFIGS / "ssl").glob("*.yaml")) == sorted(SSL_DATASETS)
    for objective, cls in OBJECTIVES.items():
        path = CONFIGS / "ssl" / "objectives" / f"{objective}.yaml"
        assert fragment_key(str(path)) == objective
        assert yaml.safe_load(path.read_text())["model"]["init_args"]["bound"]["class_path"].endswith(f".{cls}")
    for dataset in SSL_DATASETS:
        config = yaml.safe_load((CONFIGS / "ssl" / f"{dataset}.yaml").read_text())
        assert config["model"]["init_args"]["bound"]["class_path"] == "pdlightning.bounds.InfoNCE"  # CPC default
        assert config["trainer"]["logger"]["init_args"]["name"] == f"ssl/{dataset}"


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_demo_base_plus_objective_instantiates_in_its_own_run_directory(objective, tmp_path):
    objective_file = CONFIGS / "ssl" / "objectives" / f"{objective}.yaml"
    cli = build_cli(
        [
            "-c",
            str(CONFIGS / "ssl" / "demo.yaml"),
            "-c",
            str(objective_file),
            f"--trainer.logger.init_args.save_dir={tmp_path}",
        ],
        run=False,
    )
    assert isinstance(cli.model, ContrastiveSSLModule) and type(cli.model.bound).__name__ == OBJECTIVES[objective]
    assert cli.trainer.logger.name == f"ssl/demo/{objective}"  # as before the configs composed


def test_a_bound_fragment_names_the_run_unless_the_command_line_does(tmp_path):
    gaussian, nwj = str(CONFIGS / "mi" / "gaussian.yaml"), str(CONFIGS / "mi" / "bounds" / "nwj.yaml")
    common = [f"--trainer.logger.init_args.save_dir={tmp_path}"]
    assert build_cli(["-c", gaussian, *common], run=False).trainer.logger.name == "mi"
    assert build_cli(["-c", gaussian, "-c", nwj, *common], run=False).trainer.logger.name == "mi/nwj"
    named = build_cli(["-c", gaussian, "-c", nwj, *common, "--trainer.logger.init_args.name=mine"], run=False)
    assert named.trainer.logger.name == "mine"
    retrieval = build_cli(["-c", str(CONFIGS / "retrieval" / "mfeat.yaml"), "-c", nwj, *common], run=False)
    assert retrieval.trainer.logger.name == "retrieval/nwj"


@pytest.mark.parametrize("key, critic", [("club", "ConditionalGaussianCritic"), ("tre", "TelescopingCritic")])
def test_a_fragment_with_its_own_critic_is_a_bound_fragment_too(key, critic, tmp_path):
    """CLUB, L1Out and TRE need their own critic: their fragment sets it next to the bound, names the run, and the
    critic takes its dims from the data."""
    gaussian, fragment = str(CONFIGS / "mi" / "gaussian.yaml"), str(CONFIGS / "mi" / "bounds" / f"{key}.yaml")
    assert fragment_key(fragment) == key
    cli = build_cli(["-c", gaussian, "-c", fragment, f"--trainer.logger.init_args.save_dir={tmp_path}"], run=False)
    assert cli.trainer.logger.name == f"mi/{key}"
    assert type(cli.model.critic).__name__ == critic and cli.model.critic.x_dim == cli.model.critic.y_dim == 20


@pytest.mark.parametrize(
    "old", ["ssl/mnist/pcc.yaml", "ssl/demo/cpc.yaml", "drift/onehot_mine.yaml", "mi/bounds/smile.yaml"]
)
def test_moved_configs_resolve_to_their_composition_with_a_warning(old, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    new = [a for c in MOVED[old] for a in ("-c", f"configs/{c}")]
    base = ["-c", "configs/mi/gaussian.yaml"] if old.startswith("mi/") else []
    composed = print_config(["fit", *base, *new], capsys)
    with pytest.warns(FutureWarning, match=re.escape(f"config configs/{old} moved: use ")):
        assert print_config(["fit", *base, "-c", f"configs/{old}"], capsys) == composed


def test_configs_are_found_from_any_directory_and_a_missing_one_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit:
        build_cli(["--print-configs-dir"])
    assert exit.value.code == 0 and Path(capsys.readouterr().out.strip()) == packaged_configs_dir()
    assert (packaged_configs_dir() / "mi" / "gaussian.yaml").is_file()
    config = print_config(["fit", "-c", "mi/gaussian.yaml", "-c", "mi/bounds/nwj.yaml"], capsys)
    assert config["model"]["init_args"]["bound"]["class_path"] == "pdlightning.bounds.NWJ"
    with pytest.raises(SystemExit) as exit:
        build_cli(["fit", "-c", "mi/nope.yaml"])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "error: -c/--config: no config file 'mi/nope.yaml'" in err
    assert str(packaged_configs_dir()) in err and "Traceback" not in err


# ----------------------------------------------------------------------------- README commands
_SHELL = {
    "$(which pdlightning)": "pdlightning",
    "$obj": "cpc",
    "$src": "cpc",
    "$S": "0",
    "$extra": "",
    "$ckpt": "lightning_logs/ssl/demo/cpc/seed0/checkpoints/last.ckpt",
}
_TOOLS = ("pdlightning", "pdlightning-report", "pdlightning-mi-benchmark", "pdlightning-self-consistency")


def readme_commands(path: Path = REPO / "README.md") -> list[tuple[str, list[str]]]:
    """``(tool, arguments)`` of every command of the README's (or another markdown file's) bash blocks that runs
    one of our tools (shell variables of the loops replaced by one value each)."""
    return markdown_commands(path.read_text())


def markdown_commands(text: str) -> list[tuple[str, list[str]]]:
    """``(tool, arguments)`` of every command of the bash blocks of markdown ``text`` (see :func:`readme_commands`)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for name, value in _SHELL.items():
                line = line.replace(name, value)
            tokens = shlex.split(line, comments=True)
            tokens = tokens[tokens.index("python") + 2 :] if tokens[:2] == ["python", "-m"] else tokens
            found = [i for i, t in enumerate(tokens) if t in _TOOLS or t.startswith("pdlightning.applications.")]
            if tokens and found:
                tool = tokens[found[0]]
                tool = {
                    "pdlightning.applications.mi_benchmark": "pdlightning-mi-benchmark",
                    "pdlightning.applications.self_consistency": "pdlightning-self-consistency",
                }.get(tool, tool)
                commands.append((tool, tokens[found[0] + 1 :]))
    return commands


#: the markdown files whose bash blocks must hold working commands: the README and the reference pages under docs/
#: (docs/results/ quotes commands exactly as they were run, with the shell variables of those sessions).
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def doc_commands() -> list[tuple[str, str, list[str]]]:
    """``(file, tool, arguments)`` of every command of :data:`DOC_FILES`."""
    return [(str(path.relative_to(REPO)), tool, args) for path in DOC_FILES for tool, args in readme_commands(path)]


def test_the_readme_and_docs_have_the_commands_of_every_tool():
    """Every console script is documented with at least one command, in the README or a docs page; the README
    itself teaches the first commands of the MI tools."""
    assert {tool for _, tool, _ in doc_commands()} == set(_TOOLS)
    readme = readme_commands()
    assert {tool for tool, _ in readme} >= {"pdlightning", "pdlightning-report"}
    shown = [args[:3] for tool, args in readme if tool == "pdlightning"]
    assert ["test", "-c", "configs/mi/demo.yaml"] in shown  # after `make demo`'s fit
    assert ["fit", "-c", "mi/arrays.yaml"] in shown  # your own arrays


@pytest.mark.parametrize("doc, tool, args", doc_commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v)[:90])
def test_every_documented_command_parses_from_outside_the_clone(doc, tool, args, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if tool == "pdlightning":
        if args == ["--print-configs-dir"]:
            return
        config = print_config(args, capsys)
        assert config["model"]["class_path"]
    elif tool == "pdlightning-report":
        from pdlightning.report.main import parser, suite_plan
        from pdlightning.report.sweep import plan

        parsed = parser().parse_args(args)
        if parsed.suite is not None:
            assert parsed.render_only or suite_plan(parsed)[1]
        else:
            assert parsed.render_only or plan(parsed.estimators, parsed.tasks, parsed.critics, parsed.configs)
    else:
        function = run_mi_benchmark if tool == "pdlightning-mi-benchmark" else run_self_consistency
        assert function_arguments(function, args)["base"]


@pytest.mark.parametrize(
    "doc",
    [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_every_relative_link_of_the_docs_resolves(doc):
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if target.startswith(("http://", "https://", "#", "mailto:")):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{doc.relative_to(REPO)} links to missing files: {missing}"
