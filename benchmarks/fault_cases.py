"""Bad inputs and faults through the real console scripts (``pdlightning``, ``pdlightning-report``): the
attack of issue 14, rebuilt as named cases, each run as shell commands in its own temp folder, checked, and
classified automatically.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/fault_cases.py --out docs/results/fault_cases.md
    python benchmarks/fault_cases.py --only resume_ --list    # names of the cases

Classes (:func:`classify`):

- ``good``: a clear error whose message names the parameter / file the case is about (and no stack), or
  the correct result (exit 0 and the case's check of the files on disk passes);
- ``unclear``: an error without a stack that does not name what the case expects it to name, or a non-zero
  exit where a result was expected;
- ``traceback``: a user-input error shown as a Python stack;
- ``silent wrong``: exit 0 with a wrong or mislabelled result (or exit 0 where an error was due);
- ``data loss``: the only checkpoint, or another run's files, destroyed;
- ``hang``: the command ran past its timeout (killed with SIGKILL after ``--timeout`` seconds).

Every case is a list of shell commands (the last is the one classified; the ones before it prepare state and
must succeed) and an expectation: an error naming given words, a success whose result a check verifies on
disk, or either (a clear refusal, or a success that really did what the command asked). Kill cases start the
fit in the background, poll its checkpoint folder and ``kill -9`` it; the command in the table is the resume.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
GAUSSIAN = CONFIGS / "mi" / "gaussian.yaml"
BOUNDS = CONFIGS / "mi" / "bounds"
PAIRED = CONFIGS / "retrieval" / "paired_features.yaml"
CLASSES = ("good", "unclear", "traceback", "silent wrong", "data loss", "hang")
TRACEBACK = "Traceback (most recent call last)"
TIMEOUT_S = 60.0

# --------------------------------------------------------------------------------------- classifier
Names = tuple[Union[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Expect:
    """``kind``: ``"error"`` (a non-zero exit whose message names every entry of ``names``; an entry that is
    a tuple is satisfied by any of its words), ``"success"`` (exit 0 and the check passes) or ``"either"``."""

    kind: str
    names: Names = ()


def error(*names: Union[str, tuple[str, ...]]) -> Expect:
    return Expect("error", names)


def success() -> Expect:
    return Expect("success")


def either(*names: Union[str, tuple[str, ...]]) -> Expect:
    return Expect("either", names)


@dataclass(frozen=True)
class Check:
    """The case's verdict on the files a command left: ``ok``; ``lost``: a checkpoint or another run's files
    were destroyed; ``detail``: one line for the table."""

    ok: bool
    detail: str = ""
    lost: bool = False


def error_message(output: str) -> str:
    """The error a command printed: the last ``XxxError: ...`` line of a stack, else the text from the
    first line holding ``error:`` (argparse, jsonargparse, ``pdlightning: error:``), else the last line."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    if TRACEBACK in output:
        raised = [line for line in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
        if raised:
            return raised[-1]
    for i, line in enumerate(lines):
        if re.search(r"\berror:", line, flags=re.IGNORECASE):
            rest = [x for x in lines[i:] if "PDLIGHTNING_DEBUG" not in x]
            return "\n".join(rest)
    return lines[-1] if lines else ""


#: lines that echo the whole parsed value (jsonargparse's ``Given value: Namespace(...)``): they hold every
#: parameter's name, so a parameter named only there is not named by the message.
ECHO = re.compile(r"^\s*(Given value|Given value type|Subtypes):")


def names_found(message: str, names: Names) -> list[str]:
    """The entries of ``names`` that ``message`` does not contain (case-insensitive), echo lines left out."""
    message = "\n".join(line for line in message.splitlines() if not ECHO.match(line))
    missing = []
    for entry in names:
        words = (entry,) if isinstance(entry, str) else entry
        if not any(word.lower() in message.lower() for word in words):
            missing.append("/".join(words))
    return missing


def classify(rc: Optional[int], output: str, expect: Expect, check: Optional[Check] = None) -> tuple[str, str]:
    """``(class, reason)`` of one command: ``rc`` ``None`` means it was killed at its timeout."""
    if rc is None:
        return "hang", "killed at the timeout"
    if check is not None and check.lost:
        return "data loss", check.detail
    stack = TRACEBACK in output
    if rc == 0:
        if expect.kind == "error":
            return "silent wrong", "exit 0 where an error was due" + (f" ({check.detail})" if check else "")
        if check is not None and not check.ok:
            return "silent wrong", check.detail
        return "good", check.detail if check else "exit 0"
    if stack:
        return "traceback", "a stack for a user-input error" if expect.kind != "success" else "a stack, no result"
    if expect.kind == "success":
        return "unclear", "non-zero exit where a result was expected"
    missing = names_found(error_message(output), expect.names)
    if missing:
        return "unclear", "the message does not name " + ", ".join(missing)
    return "good", "clear error"


# -------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """``commands``: shell lines run in the case's folder (``{repo}``, ``{shm}`` are filled in); all but the
    last must exit 0. ``files``: writes the case's inputs first; ``check``: verdict on the folder after the
    last command (``rc``, output given); ``driver``: replaces running the commands (kill cases)."""

    name: str
    item: str
    commands: list[str]
    expect: Expect
    files: Optional[Callable[[Path], None]] = None
    check: Optional[Callable[[Path, int, str], Check]] = None
    driver: Optional[Callable[["Case", Path, float], tuple[Optional[int], str, list[str]]]] = None
    note: str = ""
    fixtures: tuple[str, ...] = field(default_factory=tuple)


PD = "pdlightning"
T1 = "--threads 1 --trainer.enable_progress_bar false"


def tiny_yaml(
    save_dir: str = "logs",
    bound: str = "SMILE",
    lr: float = 0.01,
    steps: int = 12,
    per_level: int = 6,
    hidden: str = "[16]",
    name: str = "mi",
    extra_model: str = "",
) -> str:
    """A tiny MI run: d = 3 correlated Gaussian, two levels of ``per_level`` steps, batch 16."""
    return textwrap.dedent(f"""\
        seed_everything: 0
        trainer:
          max_epochs: 1
          max_steps: {steps}
          log_every_n_steps: 1
          enable_progress_bar: false
          enable_model_summary: false
          num_sanity_val_steps: 0
          limit_val_batches: 0
          accelerator: cpu
          logger:
            class_path: lightning.pytorch.loggers.TensorBoardLogger
            init_args: {{save_dir: {save_dir}, name: {name}}}
        model:
          class_path: pdlightning.modules.MIEstimationModule
          init_args:
            critic: {{class_path: pdlightning.critics.JointCritic, init_args: {{x_dim: 3, y_dim: 3, hidden_dims: {hidden}}}}}
            bound: {{class_path: pdlightning.bounds.{bound}}}
            optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: {lr}}}}}{extra_model}
        data:
          class_path: pdlightning.data.CorrelatedGaussianDataModule
          init_args: {{dim: 3, mi_schedule: [0.5, 1.0], steps_per_level: {per_level}, batch_size: 16, seed: 5}}
        """)


def write_tiny(**kwargs) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "tiny.yaml").write_text(tiny_yaml(**kwargs))

    return write


def write_pairs(folder: Path, train: int = 40, test: int = 21, dim: int = 3) -> None:
    """Paired features, row i of x with row i of y (y = x + noise): ``train`` and ``test`` rows."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        x = rng.normal(size=(n, dim)).astype(np.float32)
        np.save(folder / f"{split}_x.npy", x)
        np.save(folder / f"{split}_y.npy", (x + 0.5 * rng.normal(size=(n, dim))).astype(np.float32))


def paired(subcommand: str, *extra: str, train_x: str = "train_x.npy", steps: int = 4) -> str:
    """``pdlightning <subcommand>`` on configs/retrieval/paired_features.yaml with the case's files."""
    args = [
        f"{PD} {subcommand} -c {PAIRED} {T1}",
        f"--data.init_args.train_x {train_x} --data.init_args.train_y train_y.npy",
        "--data.init_args.test_x test_x.npy --data.init_args.test_y test_y.npy",
        "--data.init_args.batch_size 8 --data.init_args.eval_batch_size 4",
        "--model.init_args.critic.init_args.x_dim 3 --model.init_args.critic.init_args.y_dim 3",
        "--model.init_args.critic.init_args.hidden_dims [16]",
        f"--trainer.max_steps {steps} --trainer.logger.init_args.save_dir logs",
        *extra,
    ]
    return " ".join(args)


PAIRED_CKPT = "logs/retrieval/version_0/checkpoints/last.ckpt"
TINY_CKPT = "logs/mi/version_0/checkpoints/last.ckpt"


def gaussian(
    *extra: str, bound: Optional[str] = None, subcommand: str = "fit", steps: int = 3, max_steps: Optional[int] = None
) -> str:
    """The packaged Gaussian protocol (optionally with a bound fragment) at a tiny budget."""
    fragment = f" -c {BOUNDS / (bound + '.yaml')}" if bound else ""
    return " ".join(
        [
            f"{PD} {subcommand} -c {GAUSSIAN}{fragment} {T1}",
            "--model.init_args.critic.init_args.hidden_dims [16] --data.init_args.mi_schedule [1.0]",
            f"--data.init_args.steps_per_level {steps} --trainer.max_steps {max_steps or steps}",
            "--trainer.logger.init_args.save_dir logs",
            *extra,
        ]
    )


def tiny(subcommand: str = "fit", *extra: str) -> str:
    return " ".join([f"{PD} {subcommand} -c tiny.yaml {T1}", *extra])


def report(*extra: str, out: str = "rep") -> str:
    return " ".join(
        [f"pdlightning-report --out {out} --threads 1 --tasks gaussian --critics joint --batch-size 16", *extra]
    )


# ------------------------------------------------------------------------------------------ checks
def load_checkpoint(path: Path) -> Optional[dict]:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 - any failure means: not loadable
        return None


def step_of(path: Path) -> Optional[int]:
    checkpoint = load_checkpoint(path) if path.is_file() else None
    return None if checkpoint is None else int(checkpoint["global_step"])


def final_step(expected: int, ckpt: str = TINY_CKPT) -> Callable[[Path, int, str], Check]:
    """The newest checkpoint matching ``ckpt`` (a glob) is at step ``expected``."""

    def check(folder: Path, rc: int, output: str) -> Check:
        found = sorted(folder.glob(ckpt), key=lambda p: p.stat().st_mtime)
        step = step_of(found[-1]) if found else None
        where = found[-1].relative_to(folder) if found else ckpt
        return Check(step == expected, f"{where} at step {step}, expected {expected}")

    return check


def lr_applied(lr: float) -> Callable[[Path, int, str], Check]:
    """After a resume with a new learning rate: the optimiser state trained with it and config.yaml says so."""

    def check(folder: Path, rc: int, output: str) -> Check:
        if rc != 0:
            return Check(True)
        checkpoint = load_checkpoint(folder / TINY_CKPT) or {}
        groups = checkpoint.get("optimizer_states", [{}])[0].get("param_groups", [{}])
        trained = groups[0].get("lr")
        configs = sorted((folder / "logs/mi/version_0").glob("config*.yaml"))
        recorded = [c.name for c in configs if f"lr: {lr}" in c.read_text()]
        ok = trained is not None and math.isclose(trained, lr) and bool(recorded)
        return Check(ok, f"optimizer lr {trained} in the checkpoint; configs recording lr {lr}: {recorded}")

    return check


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def pmi_rows(expected: int, pattern: str = "logs/**/pmi.csv") -> Callable[[Path, int, str], Check]:
    def check(folder: Path, rc: int, output: str) -> Check:
        files = sorted(folder.glob(pattern))
        if not files:
            return Check(False, "no pmi.csv written")
        rows = len(files[-1].read_text().splitlines()) - 1
        return Check(rows == expected, f"{files[-1].relative_to(folder)}: {rows} rows, expected {expected}")

    return check


def same_pmi(a: str, b: str, tol: float = 1e-4) -> Callable[[Path, int, str], Check]:
    """Two pmi.csv files (eval batch sizes 20 and 2) hold the same PMI for every pair."""

    def check(folder: Path, rc: int, output: str) -> Check:
        import csv

        tables = []
        for name in (a, b):
            if not (folder / name).is_file():
                return Check(False, f"{name} missing")
            with open(folder / name) as f:
                tables.append({int(r.get("index", r["row"])): float(r["pmi"]) for r in csv.DictReader(f)})
        if tables[0].keys() != tables[1].keys():
            return Check(False, f"different pairs: {len(tables[0])} vs {len(tables[1])}")
        gaps = [abs(tables[0][k] - tables[1][k]) for k in tables[0]]
        flips = sum((tables[0][k] > 0) != (tables[1][k] > 0) for k in tables[0])
        return Check(max(gaps) <= tol, f"{len(gaps)} pairs: max |PMI difference| {max(gaps):.2e}, {flips} sign flips")

    return check


def untouched(folder_name: str) -> Callable[[Path, int, str], Check]:
    """Another run's folder is byte-identical to its state before the command (``.before`` snapshot)."""

    def check(folder: Path, rc: int, output: str) -> Check:
        before = eval_snapshot(folder)
        after = snapshot(folder / folder_name) if (folder / folder_name).is_dir() else {}
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        if changed:
            return Check(False, f"{folder_name} changed: {', '.join(changed[:4])}", lost=True)
        return Check(True, f"{folder_name} untouched")

    return check


SNAPSHOTS: dict[str, dict[str, bytes]] = {}


def eval_snapshot(folder: Path) -> dict[str, bytes]:
    return SNAPSHOTS.get(str(folder), {})


def distinct_run_dirs(folder: Path, rc: int, output: str) -> Check:
    runs = sorted(str(p.parent.relative_to(folder)) for p in folder.glob("logs/**/config.yaml"))
    return Check(len(runs) == 2, f"run folders: {runs}")


def report_says(*needles: str, absent: Sequence[str] = ()) -> Callable[[Path, int, str], Check]:
    def check(folder: Path, rc: int, output: str) -> Check:
        path = folder / "rep" / "report.md"
        text = path.read_text() if path.is_file() else ""
        missing = [n for n in needles if n not in text]
        wrong = [n for n in absent if n in text]
        ok = bool(text) and not missing and not wrong
        detail = "report.md " + ("ok" if ok else f"missing {missing}, wrongly holds {wrong}")
        return Check(ok, detail)

    return check


def shared_out_report(folder: Path, rc: int, output: str) -> Check:
    """Two sweeps over one --out: report.md holds the rows of every sweep that finished (its log ends with
    the ``report:`` line); a refused sweep (another sweep holds the folder) is fine if it says so."""
    path = folder / "rep" / "report.md"
    text = path.read_text() if path.is_file() else ""
    finished = {label: "report: " in (folder / log).read_text() for log, label in (("a.log", "NWJ"), ("b.log", "CPC"))}
    missing = [label for label, done in finished.items() if done and f"| {label}" not in text and label not in text]
    ok = any(finished.values()) and not missing
    return Check(ok, f"finished: {[k for k, v in finished.items() if v]}; missing from report.md: {missing}")


def announces_checkpoint_model(folder: Path, rc: int, output: str) -> Check:
    """A test with another run's checkpoint must say that the critic and bound come from that checkpoint."""
    said = [line for line in output.splitlines() if "from the checkpoint" in line]
    return Check(bool(said), said[0][:200] if said else "no line saying the model comes from the checkpoint")


def no_skips_unreported(folder: Path, rc: int, output: str) -> Check:
    """A run that ended with exit 0 under non_finite: skip must have skipped nothing (or say so)."""
    if rc != 0:
        return Check(True)
    skipped = re.findall(r"skip", output, flags=re.IGNORECASE)
    return Check(not skipped, f"{len(skipped)} mentions of skipped steps in a run that ended with exit 0")


# ------------------------------------------------------------------------------------- kill driver
def kill_during_write(save_dir_on_shm: bool, delay_s: float) -> Callable:
    """Start a fit that checkpoints every step, poll its checkpoint folder, SIGKILL it while a checkpoint
    is being written (a temp file present or last.ckpt changing size) after ``delay_s`` seconds of
    checkpointing; then require a loadable checkpoint on disk and run the case's resume command."""

    def drive(case: Case, folder: Path, timeout: float) -> tuple[Optional[int], str, list[str]]:
        save = Path(tempfile.mkdtemp(prefix="fault_cases_", dir="/dev/shm")) if save_dir_on_shm else folder / "logs"
        notes = []
        try:
            fill = {"save": str(save)}
            start = case.commands[0].format(**fill)
            process = subprocess.Popen(
                start, shell=True, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
            directory = save / "mi" / "version_0" / "checkpoints"
            first, landed, begun = None, "not in a write", time.monotonic()
            last_size = -1
            while process.poll() is None and time.monotonic() - begun < timeout:
                files = list(directory.glob("*")) if directory.is_dir() else []
                if files and first is None:
                    first = time.monotonic()
                if first is not None and time.monotonic() - first >= delay_s:
                    temp = [f.name for f in files if f.name != "last.ckpt"]
                    size = (directory / "last.ckpt").stat().st_size if (directory / "last.ckpt").exists() else -1
                    if temp or (last_size >= 0 and size != last_size):
                        landed = f"in a write ({', '.join(temp) or f'last.ckpt {last_size} -> {size} bytes'})"
                    if temp or (last_size >= 0 and size != last_size) or time.monotonic() - first > delay_s + 5:
                        os.killpg(process.pid, signal.SIGKILL)
                        break
                    last_size = size
                time.sleep(0.0005)
            process.wait()
            notes.append(
                f"kill -9 after {0 if first is None else time.monotonic() - first:.2f} s of checkpoints, {landed}"
            )
            loadable = [p.name for p in sorted(directory.glob("*.ckpt")) if load_checkpoint(p) is not None]
            notes.append(f"loadable after the kill: {loadable}")
            if first is not None and not loadable:
                return 0, "", notes + ["LOST"]
            resume = case.commands[1].format(**fill)
            rc, output = run_shell(resume, folder, timeout)
            step = step_of(directory / "last.ckpt")
            notes.append(f"after the resume last.ckpt is at step {step}")
            return rc, output, notes
        finally:
            if save_dir_on_shm:
                shutil.rmtree(save, ignore_errors=True)

    return drive


def kill_check(expected: int) -> Callable[[Path, int, str], Check]:
    def check(folder: Path, rc: int, output: str) -> Check:
        notes = NOTES.get(str(folder), [])
        if "LOST" in notes:
            return Check(False, "; ".join(n for n in notes if n != "LOST") + ": no loadable checkpoint left", lost=True)
        ok = any(n.endswith(f"at step {expected}") for n in notes)
        return Check(ok, "; ".join(notes))

    return check


NOTES: dict[str, list[str]] = {}


# ------------------------------------------------------------------------------------ data writers
def write_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        write_pairs(folder)
        (folder / name).write_bytes(data)

    return write


def write_array(name: str, make: Callable) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        import numpy as np

        write_pairs(folder)
        array = make(np)
        if name.endswith(".npz"):
            np.savez(folder / name, features=array)
        else:
            np.save(folder / name, array)

    return write


def write_npz_train(folder: Path) -> None:
    import numpy as np

    write_pairs(folder)
    np.savez(folder / "train_x.npz", features=np.load(folder / "train_x.npy"))


def write_truncated_npz(folder: Path) -> None:
    write_npz_train(folder)
    data = (folder / "train_x.npz").read_bytes()
    (folder / "train_x.npz").write_bytes(data[: len(data) // 2])


def write_empty_npz(folder: Path) -> None:
    import numpy as np

    write_pairs(folder)
    np.savez(folder / "train_x.npz")


def write_two_array_npz(folder: Path) -> None:
    import numpy as np

    write_pairs(folder)
    x = np.load(folder / "train_x.npy")
    np.savez(folder / "train_x.npz", a=x, b=x)


def with_pairs_and(*writers: Callable[[Path], None]) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        write_pairs(folder)
        for w in writers:
            w(folder)

    return write


def truncate(path: str, keep: float) -> str:
    """A shell line cutting ``path`` to a fraction of its size."""
    return f"truncate -s $(( $(stat -c %s {path}) * {int(keep * 100)} / 100 )) {path}"


# ----------------------------------------------------------------------------------- issue 18 helpers
def suite(*extra: str, out: str = "suite") -> str:
    """The task suite on one task at a tiny budget."""
    return " ".join(
        [
            "pdlightning-report --suite bmi-v1 --seeds 1 --steps 4 --batch-size 32 --threads 1",
            f"--tasks 1v1-normal-0.75 --out {out}",
            *extra,
        ]
    )


def configs_copy(*edits: tuple[str, str, str]) -> str:
    """A shell line copying the packaged configs to ``cfg/`` with ``(file, old, new)`` text replacements."""
    lines = [f"cp -r {CONFIGS} cfg"]
    for file, old, new in edits:
        lines.append(
            f"python -c \"import pathlib; p = pathlib.Path('cfg/{file}'); t = p.read_text(); "
            f'assert {old!r} in t; p.write_text(t.replace({old!r}, {new!r}))"'
        )
    return " && ".join(lines)


SMALL_CRITIC = ("mi/protocol/model.yaml", "hidden_dims: [256, 256]", "hidden_dims: [4]")
SUITE_600 = ("suite/cpu.yaml", "n_samples: 5000", "n_samples: 600")
SUITE_CRITIC_4 = ("suite/cpu.yaml", "hidden_dims: [16, 8]", "hidden_dims: [4]")


def csv_count(path: str, column: str, value: str, expected: int) -> Callable[[Path, int, str], Check]:
    """``path`` (a CSV) holds ``expected`` rows whose ``column`` is ``value``."""

    def check(folder: Path, rc: int, output: str) -> Check:
        import csv

        if not (folder / path).is_file():
            return Check(False, f"no {path}")
        with open(folder / path) as f:
            found = sum(row.get(column) == value for row in csv.DictReader(f))
        return Check(found == expected, f"{path}: {found} rows with {column} = {value}, expected {expected}")

    return check


def says(path: str, *needles: str, absent: Sequence[str] = ()) -> Callable[[Path, int, str], Check]:
    """The file ``path`` holds every needle and none of ``absent``."""

    def check(folder: Path, rc: int, output: str) -> Check:
        text = (folder / path).read_text() if (folder / path).is_file() else ""
        missing = [n for n in needles if n not in text]
        wrong = [n for n in absent if n in text]
        return Check(bool(text) and not missing and not wrong, f"{path}: missing {missing}, wrongly holds {wrong}")

    return check


def pmi_varies(folder: Path, rc: int, output: str) -> Check:
    """predict's pmi.csv holds pairs with different PMIs (features scaled to exactly 0 give one PMI for all)."""
    import csv

    files = sorted(folder.glob("logs/**/pmi.csv"))
    if not files:
        return Check(False, "no pmi.csv written")
    with open(files[-1]) as f:
        values = [float(r["pmi"]) for r in csv.DictReader(f)]
    spread = max(values) - min(values) if values else 0.0
    return Check(spread > 1e-3, f"{len(values)} pairs, PMI spread {spread:.3g} (0: the features carried nothing)")


def write_scaled_pairs(scale: float, edit: Optional[Callable] = None) -> Callable[[Path], None]:
    """Paired features (y = x + noise) in float64 at ``scale``; ``edit(np, arrays)`` may change them first."""

    def write(folder: Path) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        arrays = {}
        for split, n in (("train", 40), ("test", 21)):
            x = rng.normal(size=(n, 3))
            arrays[f"{split}_x"], arrays[f"{split}_y"] = x * scale, (x + 0.5 * rng.normal(size=(n, 3))) * scale
        if edit is not None:
            edit(np, arrays)
        for name, array in arrays.items():
            np.save(folder / f"{name}.npy", array.astype(np.float64))

    return write


def _set(name: str, row: int, column: int, value: float) -> Callable:
    def edit(np, arrays: dict) -> None:
        arrays[name][row, column] = value

    return edit


def mounted(kind: str, command: str) -> str:
    """``command`` with ``logs/`` a small tmpfs (``kind`` ``full``: 512 KiB, less than one checkpoint) or a
    read-only bind mount (``ro``), unmounted after (needs root: the machine's fault, not chmod, which root
    ignores)."""
    mount = (
        "mount -t tmpfs -o size=512k tmpfs logs"
        if kind == "full"
        else "mkdir -p src && mount --bind src logs && mount -o remount,ro,bind logs"
    )
    return f"mkdir -p logs && {mount} && {{ {command}; rc=$?; umount logs; exit $rc; }}"


# ------------------------------------------------------------------------------------------ the list
def cases() -> list[Case]:
    fit_paired = paired("fit")
    predict_ckpt = f"--ckpt_path {PAIRED_CKPT}"
    kill_fit = (
        f"{PD} fit -c tiny.yaml {T1} --trainer.logger.init_args.save_dir {{save}} "
        "--checkpoint.every_n_train_steps 1 --trainer.max_steps 60"
    )
    kill_resume = kill_fit + " --ckpt_path last"
    big = write_tiny(hidden="[256, 256]", per_level=30, steps=60)
    return [
        # 1. checkpoints that survive a kill -------------------------------------------------------
        Case(
            "kill9_shm_in_write_early",
            "1",
            [kill_fit, kill_resume],
            success(),
            big,
            kill_check(60),
            kill_during_write(True, 0.3),
        ),
        Case(
            "kill9_shm_in_write_late",
            "1",
            [kill_fit, kill_resume],
            success(),
            big,
            kill_check(60),
            kill_during_write(True, 1.5),
        ),
        Case(
            "kill9_local_in_write",
            "1",
            [kill_fit, kill_resume],
            success(),
            big,
            kill_check(60),
            kill_during_write(False, 0.8),
        ),
        Case(
            "ckpt_truncated_explicit_test",
            "1",
            [tiny("fit"), truncate(TINY_CKPT, 0.5), tiny("test", f"--ckpt_path {TINY_CKPT}")],
            error("last.ckpt"),
            write_tiny(),
        ),
        Case(
            "ckpt_empty_explicit_predict",
            "1",
            [fit_paired, f": > {PAIRED_CKPT}", paired("predict", predict_ckpt)],
            error("last.ckpt"),
            write_pairs,
        ),
        Case(
            "ckpt_garbage_explicit_fit",
            "1",
            ["echo 'not a checkpoint' > junk.ckpt", tiny("fit", "--ckpt_path junk.ckpt")],
            error("junk.ckpt"),
            write_tiny(),
        ),
        Case(
            "ckpt_last_corrupt_only_one",
            "1",
            [tiny("fit"), truncate(TINY_CKPT, 0.3), tiny("fit", "--ckpt_path last")],
            error("last.ckpt"),
            write_tiny(),
        ),
        Case(
            "ckpt_path_missing_file",
            "1",
            [tiny("test", "--ckpt_path nope/last.ckpt")],
            error("nope/last.ckpt"),
            write_tiny(),
        ),
        Case(
            "ckpt_path_is_a_directory",
            "1",
            ["mkdir -p adir", tiny("test", "--ckpt_path adir")],
            error("adir"),
            write_tiny(),
        ),
        Case(
            "ckpt_last_without_any_run",
            "1",
            [tiny("fit", "--ckpt_path last")],
            success(),
            write_tiny(),
            final_step(12),
            note="no run to resume: starts fresh (Lightning's warning)",
        ),
        # 2. resume only the same run -------------------------------------------------------------
        Case(
            "resume_last_finds_unrelated_smile_run",
            "2",
            [
                tiny("fit", "--trainer.max_steps 4"),
                "SNAP logs/mi/version_0",
                tiny("fit", "--ckpt_path last", "--model.init_args.bound pdlightning.bounds.NWJ"),
            ],
            error("version_0", ("SMILE", "bound")),
            write_tiny(),
            untouched("logs/mi/version_0"),
        ),
        Case(
            "resume_with_another_critic_width",
            "2",
            [
                tiny("fit", "--trainer.max_steps 4"),
                "SNAP logs/mi/version_0",
                tiny("fit", "--ckpt_path last", "--model.init_args.critic.init_args.hidden_dims [32]"),
            ],
            error("hidden_dims"),
            write_tiny(),
            untouched("logs/mi/version_0"),
        ),
        Case(
            "resume_with_another_seed",
            "2",
            [
                tiny("fit", "--trainer.max_steps 4"),
                "SNAP logs/mi/version_0",
                tiny("fit", "--ckpt_path last", "--seed_everything 7"),
            ],
            error("seed_everything"),
            write_tiny(),
            untouched("logs/mi/version_0"),
        ),
        Case(
            "fixed_version_of_another_run",
            "2",
            [
                tiny("fit", "--trainer.max_steps 4 --trainer.logger.init_args.version seed0"),
                "SNAP logs/mi/seed0",
                tiny("fit", "--trainer.logger.init_args.version seed0 --model.init_args.bound pdlightning.bounds.NWJ"),
            ],
            error("seed0"),
            write_tiny(),
            untouched("logs/mi/seed0"),
        ),
        Case(
            "two_bound_fragments_share_no_log_dir",
            "2",
            [gaussian(bound="nwj"), gaussian(bound="smile_tau1")],
            success(),
            None,
            distinct_run_dirs,
        ),
        # 3. overrides on resume ------------------------------------------------------------------
        Case(
            "resume_with_new_lr",
            "3",
            [
                tiny("fit", "--trainer.max_steps 5"),
                tiny("fit", "--ckpt_path last --model.init_args.optimizer.init_args.lr 0.05"),
            ],
            either(("lr", "learning rate")),
            write_tiny(),
            lr_applied(0.05),
        ),
        Case(
            "resume_with_new_lr_forced",
            "3",
            [
                tiny("fit", "--trainer.max_steps 5"),
                tiny("fit", "--ckpt_path last --model.init_args.optimizer.init_args.lr 0.05 --force_resume true"),
            ],
            either(("lr", "learning rate")),
            write_tiny(),
            lr_applied(0.05),
        ),
        Case(
            "resume_longer_max_steps",
            "3",
            [tiny("fit", "--trainer.max_steps 5"), tiny("fit", "--ckpt_path last")],
            success(),
            write_tiny(),
            final_step(12),
        ),
        Case(
            "resume_gaussian_protocol_longer",
            "3",
            [
                gaussian("--data.init_args.mi_schedule [1.0,2.0]", steps=4),
                gaussian("--data.init_args.mi_schedule [1.0,2.0] --ckpt_path last", steps=4, max_steps=8),
            ],
            either("max_steps"),
            None,
            final_step(8, "logs/**/last.ckpt"),
            note="the protocol's max_epochs: 1; the data holds 4 steps per level x 2 levels = 8 steps",
        ),
        Case(
            "resume_finished_past_its_data",
            "3",
            [tiny("fit"), tiny("fit", "--ckpt_path last --trainer.max_steps 30")],
            error("max_steps"),
            write_tiny(),
        ),
        # 4. non_finite: skip on a diverged run ---------------------------------------------------
        Case(
            "nwj_lr10_non_finite_skip",
            "4",
            [
                gaussian(
                    "--model.init_args.optimizer.init_args.lr 10 --model.init_args.non_finite skip",
                    "--model.init_args.critic.init_args.hidden_dims [256,256] --data.init_args.mi_schedule [10.0]",
                    bound="nwj",
                    steps=100,
                )
            ],
            error("diverg"),
            None,
            no_skips_unreported,
        ),
        Case(
            "nwj_lr10_non_finite_raise",
            "4",
            [
                gaussian(
                    "--model.init_args.optimizer.init_args.lr 10",
                    "--model.init_args.critic.init_args.hidden_dims [256,256] --data.init_args.mi_schedule [10.0]",
                    bound="nwj",
                    steps=100,
                )
            ],
            error(("non-finite", "nan", "inf", "diverg")),
            None,
            no_skips_unreported,
        ),
        Case(
            "non_finite_bad_value",
            "4",
            [tiny("fit", "--model.init_args.non_finite ignore")],
            error("non_finite"),
            write_tiny(),
        ),
        Case(
            "max_consecutive_skips_zero",
            "4",
            [tiny("fit", "--model.init_args.max_consecutive_skips 0")],
            error("max_consecutive_skips"),
            write_tiny(),
        ),
        # 5. untrained models ---------------------------------------------------------------------
        Case("predict_without_ckpt", "5", [paired("predict")], error("ckpt_path"), write_pairs),
        Case("test_without_ckpt", "5", [paired("test")], error("ckpt_path"), write_pairs),
        Case("validate_without_ckpt", "5", [tiny("validate")], error("ckpt_path"), write_tiny()),
        Case("test_gaussian_without_ckpt", "5", [gaussian(subcommand="test")], error("ckpt_path"), None),
        # 6. per-pair PMI independent of the eval batch size --------------------------------------
        *[
            Case(
                f"pmi_batch_size_{bound.lower()}",
                "6",
                [
                    paired("fit", f"--model.init_args.bound pdlightning.bounds.{bound}"),
                    paired(
                        "predict",
                        predict_ckpt,
                        "--data.init_args.eval_batch_size 20",
                        f"--model.init_args.bound pdlightning.bounds.{bound}",
                    )
                    + ' && cp "$(ls -t $(find logs -name pmi.csv) | head -1)" b20.csv && '
                    + paired(
                        "predict",
                        predict_ckpt,
                        "--data.init_args.eval_batch_size 2",
                        f"--model.init_args.bound pdlightning.bounds.{bound}",
                    )
                    + ' && cp "$(ls -t $(find logs -name pmi.csv) | head -1)" b2.csv',
                ],
                success(),
                write_pairs,
                same_pmi("b20.csv", "b2.csv"),
            )
            for bound in ("DV", "InfoNCE", "SMILE", "ProbabilisticClassifier")
        ],
        # 7. a last batch of one pair -------------------------------------------------------------
        Case(
            "predict_last_batch_one_pair",
            "7",
            [fit_paired, paired("predict", predict_ckpt)],
            success(),
            write_pairs,
            pmi_rows(21),
        ),
        Case("test_last_batch_one_pair", "7", [fit_paired, paired("test", predict_ckpt)], success(), write_pairs),
        Case(
            "predict_last_batch_one_pair_dv",
            "7",
            [
                paired("fit", "--model.init_args.bound pdlightning.bounds.DV"),
                paired("predict", predict_ckpt, "--model.init_args.bound pdlightning.bounds.DV"),
            ],
            success(),
            write_pairs,
            pmi_rows(21),
        ),
        # 8. report and sweeps --------------------------------------------------------------------
        Case(
            "report_render_only_budget_label",
            "8",
            [report("--estimators nwj --steps-per-level 10 --levels 2 4"), report("--render-only")],
            success(),
            None,
            report_says("levels 2, 4 nats, **10 steps per level**", absent=("(the papers' protocol)", "4000 steps")),
        ),
        Case(
            "report_two_sweeps_share_out",
            "8",
            [
                report("--estimators nwj --steps-per-level 10 --levels 2")
                + " > a.log 2>&1 & a=$!; "
                + report("--estimators infonce --steps-per-level 10 --levels 2")
                + " > b.log 2>&1; b=$?; "
                "wait $a; a=$?; cat a.log b.log; exit $(( a > b ? a : b ))"
            ],
            either("another sweep"),
            None,
            shared_out_report,
        ),
        Case(
            "report_second_budget_same_out",
            "8",
            [
                report("--estimators nwj --steps-per-level 10 --levels 2"),
                report("--estimators nwj --steps-per-level 20 --levels 2"),
            ],
            either(("budget", "steps")),
            None,
            report_says("**10 steps per level**"),
        ),
        Case(
            "report_render_only_empty_dir",
            "8",
            ["mkdir -p rep", report("--render-only")],
            success(),
            None,
            report_says("No finished runs"),
        ),
        Case("report_unknown_estimator", "8", [report("--estimators nwjj --steps-per-level 10")], error("nwjj")),
        Case("report_unknown_task", "8", [report("--estimators nwj --tasks gausian")], error("gausian")),
        Case("report_burn_in_out_of_range", "8", [report("--render-only --burn-in 1.5")], error("burn")),
        Case("report_zero_steps_per_level", "8", [report("--estimators nwj --steps-per-level 0")], error("steps")),
        Case(
            "report_negative_level", "8", [report("--estimators nwj --steps-per-level 10 --levels -2")], error("level")
        ),
        Case("report_zero_seeds", "8", [report("--estimators nwj --steps-per-level 10 --seeds 0")], error("seeds")),
        Case(
            "report_missing_configs_dir", "8", [report("--estimators nwj --configs no_such_dir")], error("no_such_dir")
        ),
        # 9. data errors --------------------------------------------------------------------------
        Case(
            "npy_corrupt_train_x",
            "9",
            [paired("fit")],
            error("train_x", "train_x.npy"),
            write_bytes("train_x.npy", b"\x93NUMPY garbage" * 5),
        ),
        Case(
            "npy_empty_file_train_x",
            "9",
            [paired("fit")],
            error("train_x", "train_x.npy"),
            write_bytes("train_x.npy", b""),
        ),
        Case(
            "npy_text_file",
            "9",
            [paired("fit")],
            error("train_x", "train_x.npy"),
            write_bytes("train_x.npy", b"1,2,3\n4,5,6\n"),
        ),
        Case(
            "npz_truncated_train_x",
            "9",
            [paired("fit", train_x="train_x.npz")],
            error("train_x", "train_x.npz"),
            write_truncated_npz,
        ),
        Case(
            "npz_empty_archive",
            "9",
            [paired("fit", train_x="train_x.npz")],
            error("train_x", "train_x.npz"),
            write_empty_npz,
        ),
        Case(
            "npz_two_arrays_no_key",
            "9",
            [paired("fit", train_x="train_x.npz")],
            error("train_x", "train_x.npz"),
            write_two_array_npz,
        ),
        Case(
            "npz_ok_one_array",
            "9",
            [paired("fit", train_x="train_x.npz")],
            success(),
            write_npz_train,
            final_step(4, PAIRED_CKPT),
        ),
        Case(
            "train_split_zero_rows",
            "9",
            [paired("fit")],
            error("train_x", "train_x.npy"),
            write_array("train_x.npy", lambda np: np.zeros((0, 3), np.float32)),
        ),
        Case(
            "test_split_zero_rows",
            "9",
            [paired("fit")],
            error("test_x", "test_x.npy"),
            with_pairs_and(
                lambda f: __import__("numpy").save(f / "test_x.npy", __import__("numpy").zeros((0, 3))),
                lambda f: __import__("numpy").save(f / "test_y.npy", __import__("numpy").zeros((0, 3))),
            ),
        ),
        Case(
            "train_one_row",
            "9",
            [paired("fit")],
            error("train_x", "train_x.npy"),
            with_pairs_and(
                lambda f: __import__("numpy").save(f / "train_x.npy", __import__("numpy").ones((1, 3))),
                lambda f: __import__("numpy").save(f / "train_y.npy", __import__("numpy").ones((1, 3))),
            ),
        ),
        Case(
            "misaligned_x_y_rows",
            "9",
            [paired("fit")],
            error("train_x", "train_y"),
            write_array("train_y.npy", lambda np: np.ones((39, 3), np.float32)),
        ),
        Case(
            "nan_in_features",
            "9",
            [paired("fit")],
            error("train_x", ("nan", "finite")),
            write_array("train_x.npy", lambda np: np.full((40, 3), np.nan, np.float32)),
        ),
        Case(
            "string_array",
            "9",
            [paired("fit")],
            error("train_x", "train_x.npy"),
            write_array("train_x.npy", lambda np: np.array([["a", "b", "c"]] * 40)),
        ),
        Case(
            "three_d_array",
            "9",
            [paired("fit")],
            error("train_x", "shape"),
            write_array("train_x.npy", lambda np: np.ones((40, 3, 2), np.float32)),
        ),
        Case(
            "missing_data_file",
            "9",
            [paired("fit", train_x="nowhere.npy")],
            error("train_x", "nowhere.npy"),
            write_pairs,
        ),
        Case(
            "wrong_extension_csv",
            "9",
            [paired("fit", train_x="train_x.csv")],
            error("train_x", "train_x.csv"),
            write_pairs,
        ),
        Case(
            "test_x_without_test_y",
            "9",
            [
                f"{PD} fit -c {PAIRED} {T1} --data.init_args.train_x train_x.npy --data.init_args.train_y train_y.npy "
                "--data.init_args.test_x test_x.npy --data.init_args.test_y null "
                "--model.init_args.critic.init_args.x_dim 3 --model.init_args.critic.init_args.y_dim 3 "
                "--trainer.max_steps 2 --trainer.logger.init_args.save_dir logs"
            ],
            error("test_y"),
            write_pairs,
        ),
        Case(
            "critic_x_dim_mismatch_paired",
            "9",
            [paired("fit", "--model.init_args.critic.init_args.x_dim 5")],
            error("x_dim", "3"),
            write_pairs,
        ),
        Case(
            "placeholder_paths_of_the_config",
            "9",
            [f"{PD} fit -c {PAIRED} {T1} --trainer.logger.init_args.save_dir logs"],
            error("train_x", "data/"),
        ),
        # 10. user errors: a message, no stack ----------------------------------------------------
        Case("missing_config_file", "10", [f"{PD} fit -c nope.yaml {T1}"], error("nope.yaml")),
        Case(
            "malformed_yaml",
            "10",
            [f"{PD} fit -c bad.yaml {T1}"],
            error("bad.yaml"),
            lambda f: (f / "bad.yaml").write_text("trainer: [max_steps: 3\nmodel: {"),
        ),
        Case(
            "unknown_bound_class_path",
            "10",
            [tiny("fit", "--model.init_args.bound pdlightning.bounds.Nope")],
            error("pdlightning.bounds.Nope"),
            write_tiny(),
        ),
        Case(
            "unknown_optimizer",
            "10",
            [tiny("fit", "--model.init_args.optimizer torch.optim.Nope")],
            error("torch.optim.Nope"),
            write_tiny(),
        ),
        Case("unknown_key", "10", [tiny("fit", "--model.init_args.colour blue")], error("colour"), write_tiny()),
        Case("unknown_subcommand", "10", [f"{PD} fitt -c tiny.yaml"], error("fitt"), write_tiny()),
        Case(
            "critic_x_dim_mismatch_gaussian",
            "10",
            [tiny("fit", "--model.init_args.critic.init_args.x_dim 5")],
            error("x_dim"),
            write_tiny(),
        ),
        Case(
            "negative_batch_size",
            "10",
            [tiny("fit", "--data.init_args.batch_size -8")],
            error("batch_size"),
            write_tiny(),
        ),
        Case("batch_size_one", "10", [tiny("fit", "--data.init_args.batch_size 1")], error("batch_size"), write_tiny()),
        Case(
            "paired_eval_batch_size_one",
            "10",
            [paired("fit", "--data.init_args.eval_batch_size 1")],
            error("eval_batch_size"),
            write_pairs,
        ),
        Case(
            "mi_schedule_empty",
            "10",
            [tiny("fit", "--data.init_args.mi_schedule []")],
            error("mi_schedule"),
            write_tiny(),
        ),
        Case(
            "mi_schedule_negative",
            "10",
            [tiny("fit", "--data.init_args.mi_schedule [-1.0]")],
            error("mi_schedule"),
            write_tiny(),
        ),
        Case(
            "mi_schedule_not_numbers",
            "10",
            [tiny("fit", "--data.init_args.mi_schedule [a,b]")],
            error("mi_schedule"),
            write_tiny(),
        ),
        Case(
            "steps_per_level_zero",
            "10",
            [tiny("fit", "--data.init_args.steps_per_level 0")],
            error("steps_per_level"),
            write_tiny(),
        ),
        Case(
            "dim_zero",
            "10",
            [tiny("fit", "--data.init_args.dim 0 --model.init_args.critic.init_args.x_dim 0")],
            error("dim"),
            write_tiny(),
        ),
        Case(
            "hidden_dims_negative",
            "10",
            [tiny("fit", "--model.init_args.critic.init_args.hidden_dims [-4]")],
            error("hidden_dims"),
            write_tiny(),
        ),
        Case(
            "smile_tau_negative",
            "10",
            [tiny("fit", "--model.init_args.bound.init_args.tau -1")],
            error("tau"),
            write_tiny(),
        ),
        Case(
            "negative_learning_rate",
            "10",
            [tiny("fit", "--model.init_args.optimizer.init_args.lr -0.1")],
            error(("lr", "learning rate")),
            write_tiny(),
        ),
        Case(
            "pmi_reference_size_one",
            "10",
            [tiny("fit", "--model.init_args.pmi_reference_size 1")],
            error("pmi_reference_size"),
            write_tiny(),
        ),
        Case(
            "max_steps_below_minus_one", "10", [tiny("fit", "--trainer.max_steps -5")], error("max_steps"), write_tiny()
        ),
        Case(
            "accelerator_gpu_without_gpu",
            "10",
            [tiny("fit", "--trainer.accelerator gpu")],
            error(("gpu", "cuda", "accelerator")),
            write_tiny(),
        ),
        Case("threads_not_a_number", "10", [f"{PD} fit -c tiny.yaml --threads many"], error("threads"), write_tiny()),
        Case("threads_negative", "10", [f"{PD} fit -c tiny.yaml --threads -2"], error("threads"), write_tiny()),
        Case(
            "unknown_suite_task",
            "10",
            [
                f"{PD} fit -c {CONFIGS / 'suite' / 'cpu.yaml'} {T1} --data.init_args.task no-such-task "
                "--trainer.max_steps 2 --trainer.logger.init_args.save_dir logs"
            ],
            error("no-such-task"),
        ),
        Case(
            "checkpoint_of_another_module_type",
            "10",
            [fit_paired, tiny("test", f"--ckpt_path {PAIRED_CKPT}")],
            either(("last.ckpt", "critic", "x_dim", "checkpoint")),
            lambda f: (write_pairs(f), write_tiny()(f)),
            announces_checkpoint_model,
            note="the checkpoint's critic (3 -> 3) fits these data: evaluating it is legitimate if the CLI says so",
        ),
        # 18.1 a sweep's result carries the identity of what produced it --------------------------------
        Case(
            "report_other_protocol_same_out",
            "18.1",
            [
                report("--estimators nwj --steps-per-level 3 --levels 2"),
                configs_copy(SMALL_CRITIC),
                report("--estimators nwj --steps-per-level 3 --levels 2 --configs cfg"),
            ],
            error("hidden_dims"),
            note="--configs at a copy with another critic: the finished run of the packaged config was skipped",
        ),
        Case(
            "suite_other_protocol_same_out",
            "18.1",
            [
                configs_copy(SUITE_600, SUITE_CRITIC_4),
                suite("--estimators nwj --configs cfg"),
                suite("--estimators nwj"),
            ],
            error("n_samples", "hidden_dims"),
        ),
        Case(
            "suite_render_only_budget_from_runs",
            "18.1",
            [configs_copy(SUITE_600, SUITE_CRITIC_4), suite("--estimators nwj --configs cfg"), suite("--render-only")],
            success(),
            None,
            says("suite/suite.md", "N = 600 pairs", "JointCritic [4]", absent=("N = 5000",)),
        ),
        Case(
            "report_records_config_hash",
            "18.1",
            [report("--estimators nwj --steps-per-level 3 --levels 2")],
            success(),
            None,
            lambda folder, rc, output: Check(
                all(
                    __import__("json").loads(p.read_text()).get("provenance", {}).get("config_hash")
                    for p in folder.glob("rep/runs/*/run.json")
                ),
                "every run.json records its config hash",
            ),
        ),
        # 18.2 the same fit is one run ----------------------------------------------------------------------
        Case(
            "report_overlapping_estimator_sets",
            "18.2",
            [
                report("--estimators infonce nwj --steps-per-level 3 --levels 2"),
                report("--estimators infonce smile_tau5 --steps-per-level 3 --levels 2"),
            ],
            success(),
            None,
            csv_count("rep/results.csv", "estimator", "infonce", 1),
            note="InfoNCE is in both ensembles: one fit, one level -> one row",
        ),
        Case(
            "suite_overlapping_estimator_sets",
            "18.2",
            [suite("--estimators infonce nwj"), suite("--estimators infonce smile_tau5")],
            success(),
            None,
            csv_count("suite/suite.csv", "column", "infonce", 1),
        ),
        # 18.3 a damaged run file is never silently partial ---------------------------------------------
        *[
            Case(
                f"render_{name}",
                "18.3",
                [report("--estimators infonce nwj --steps-per-level 3 --levels 2"), damage, report("--render-only")],
                error(file),
            )
            for name, file, damage in (
                ("truncated_run_json", "run.json", truncate("rep/runs/*nwj/run.json", 0.5)),
                ("truncated_results_json", "results.json", truncate("rep/runs/*nwj/tb/results.json", 0.5)),
                ("estimates_cut_mid_row", "estimates.csv", truncate("rep/runs/*nwj/estimates.csv", 0.77)),
                (
                    "estimates_cut_at_a_row",
                    "estimates.csv",
                    "f=$(ls rep/runs/*nwj/estimates.csv) && head -n -2 $f > x && mv x $f",
                ),
                (
                    "estimates_member_gone",
                    "estimates.csv",
                    "f=$(ls rep/runs/*nwj/estimates.csv) && head -n -3 $f > x && mv x $f",
                ),
            )
        ],
        Case(
            "suite_render_truncated_run_json",
            "18.3",
            [suite("--estimators nwj"), truncate("suite/runs/*/run.json", 0.4), suite("--render-only")],
            error("run.json"),
        ),
        # 18.4 one writer per run directory -------------------------------------------------------------
        Case(
            "two_resumes_of_one_run_at_once",
            "18.4",
            [
                tiny("fit", "--trainer.max_steps 4"),
                tiny("fit", "--ckpt_path last --trainer.max_steps 3000")
                + " > a.log 2>&1 & a=$!; "
                + tiny("fit", "--ckpt_path last --trainer.max_steps 3000")
                + " > b.log 2>&1; b=$?; wait $a; a=$?; cat a.log b.log; exit $(( a > b ? a : b ))",
            ],
            error("pid", "version_0"),
            write_tiny(steps=3000, per_level=1500),
            note="both exited 0 and logged the same steps into version_0",
        ),
        # 18.6 user data at any scale -------------------------------------------------------------------
        Case(
            "features_1e30_standardized",
            "18.6",
            [paired("fit"), paired("predict", f"--ckpt_path {PAIRED_CKPT}")],
            success(),
            write_scaled_pairs(1e30),
            pmi_varies,
            note="float32 statistics made every feature exactly 0",
        ),
        Case(
            "features_1e-30_standardized",
            "18.6",
            [paired("fit"), paired("predict", f"--ckpt_path {PAIRED_CKPT}")],
            success(),
            write_scaled_pairs(1e-30),
            pmi_varies,
        ),
        Case(
            "features_1e30_unstandardized",
            "18.6",
            [paired("fit", "--data.init_args.standardize false")],
            error("train_x", "standardize", "column"),
            write_scaled_pairs(1e30),
            note="trained a critic at chance level, exit 0",
        ),
        Case(
            "features_float64_beyond_float32",
            "18.6",
            [paired("fit", "--data.init_args.standardize false")],
            error("train_x", "float32", "column"),
            write_scaled_pairs(1.0, _set("train_x", 3, 1, 1e39)),
        ),
        Case(
            "features_test_split_off_scale",
            "18.6",
            [paired("fit")],
            error("test_x", "column"),
            write_scaled_pairs(1e-20, _set("test_x", 4, 2, 1e30)),
        ),
        # 18.7 no raw traceback on a failure path -------------------------------------------------------
        Case(
            "disk_full_during_checkpoint",
            "18.7",
            [mounted("full", tiny("fit", "--trainer.logger.init_args.save_dir logs"))],
            error(("No space left", "space"), "logs"),
            write_tiny(hidden="[256, 256]"),
            note="a 512 KiB tmpfs as the log folder (root): a checkpoint does not fit",
        ),
        Case(
            "read_only_log_dir",
            "18.7",
            [mounted("ro", tiny("fit", "--trainer.logger.init_args.save_dir logs"))],
            error("logs", ("Read-only", "read-only", "permission")),
            write_tiny(),
        ),
        Case("save_dir_is_a_file", "18.7", ["touch logs", tiny("fit")], error("logs"), write_tiny()),
        Case("report_out_is_a_file", "18.7", ["touch rep", report("--render-only")], error("rep")),
        Case(
            "report_md_is_a_directory",
            "18.7",
            [
                report("--estimators nwj --steps-per-level 3 --levels 2"),
                "rm rep/report.md && mkdir rep/report.md",
                report("--render-only"),
            ],
            error("report.md"),
        ),
        Case(
            "pmi_writer_output_is_a_directory",
            "18.7",
            [
                fit_paired,
                "mkdir out.csv",
                paired(
                    "predict",
                    predict_ckpt,
                    "--trainer.callbacks+=pdlightning.callbacks.PMIWriter --trainer.callbacks.output_path out.csv",
                ),
            ],
            error("out.csv"),
            write_pairs,
        ),
    ]


# -------------------------------------------------------------------------------------------- runner
def run_shell(command: str, cwd: Path, timeout: float) -> tuple[Optional[int], str]:
    """Run ``command`` under bash in its own process group; SIGKILL the group after ``timeout`` s."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("PDLIGHTNING_DEBUG", None)
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        return None, out.decode(errors="replace")


@dataclass
class Result:
    case: Case
    command: str
    rc: Optional[int]
    klass: str
    message: str
    seconds: float


def run_case(case: Case, root: Path, timeout: float) -> Result:
    folder = root / case.name
    folder.mkdir(parents=True)
    if case.files:
        case.files(folder)
    begun = time.monotonic()
    if case.driver is not None:
        rc, output, notes = case.driver(case, folder, timeout)
        NOTES[str(folder)] = notes
        command = case.commands[1].format(save="/dev/shm/<tmp>" if "shm" in case.name else "logs")
    else:
        *prepare, command = case.commands
        for line in prepare:
            if line.startswith("SNAP "):
                SNAPSHOTS[str(folder)] = snapshot(folder / line.split(" ", 1)[1])
                continue
            rc, output = run_shell(line, folder, timeout)
            if rc != 0:
                return Result(
                    case,
                    line,
                    rc,
                    "unclear" if rc is not None else "hang",
                    f"preparation failed: {error_message(output)[:200]}",
                    time.monotonic() - begun,
                )
        rc, output = run_shell(command, folder, timeout)
    check = case.check(folder, rc, output) if case.check is not None and rc is not None else None
    klass, reason = classify(rc, output, case.expect, check)
    message = error_message(output).splitlines()[0] if rc not in (0, None) and output.strip() else reason
    if rc not in (0, None) and case.expect.names and names_found(message, case.expect.names):
        naming = [
            x
            for x in error_message(output).splitlines()[1:]
            if not ECHO.match(x) and not names_found(x, case.expect.names)
        ]
        message += f" ... {naming[0].strip()}" if naming else ""
    if rc not in (0, None):
        message = f"{message} [{reason}]" if klass != "good" else message
    if case.name.startswith("kill9") and check is not None:
        message = check.detail
    return Result(case, command, rc, klass, message, time.monotonic() - begun)


def short(command: str, root: Path) -> str:
    """The command as the table shows it: repo paths relative, the workspace folder dropped."""
    return command.replace(str(REPO) + "/", "").replace(str(root) + "/", "")


def markdown(results: list[Result], root: Path, argv: list[str], wall: float) -> str:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    totals = {k: sum(r.klass == k for r in results) for k in CLASSES}
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    lines = [
        "# Fault cases (issues 14 and 18): bad inputs and faults through the console scripts",
        "",
        f"Command: `OMP_NUM_THREADS=1 nice -n 5 python {' '.join(argv)}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, git {sha}, "
        f"{len(results)} cases, wall time {wall / 60:.1f} min on one core; {os.cpu_count()} cores, load average "
        f"(1 / 5 / 15 min) at the end {load}.  ",
        "Each case runs in its own temp folder; the command shown is the one classified (the case's earlier "
        "commands, in benchmarks/fault_cases.py, prepare its state). Classes: see the script's docstring.",
        "",
        "| class | cases |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in totals.items()],
        "",
        "| # | case | item | command | exit | class | message (first line) |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        cell = short(r.command, root).replace("|", "\\|")
        message = r.message.replace("|", "\\|").replace("\n", " ")[:240]
        rc = "timeout" if r.rc is None else str(r.rc)
        lines.append(f"| {i} | {r.case.name} | {r.case.item} | `{cell}` | {rc} | {r.klass} | {message} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "fault_cases.md")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per command (then SIGKILL)")
    parser.add_argument("--only", default="", help="run the cases whose name contains one of these (comma-separated)")
    parser.add_argument("--items", default="", help="run the cases of these items (comma-separated prefixes: 18.)")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    args = parser.parse_args(argv)
    selected = [c for c in cases() if any(part in c.name for part in args.only.split(","))]
    if args.items:
        selected = [c for c in selected if any(c.item.startswith(p) for p in args.items.split(","))]
    if args.list:
        print("\n".join(f"{c.item:>3} {c.name}" for c in selected))
        return 0
    begun = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="fault_cases_") as tmp:
        root = Path(tmp)
        for case in selected:
            result = run_case(case, root, args.timeout)
            results.append(result)
            print(f"{result.seconds:6.1f}s {result.klass:13} {case.name}: {result.message[:150]}", flush=True)
        text = markdown(results, root, ["benchmarks/fault_cases.py", *sys.argv[1:]], time.monotonic() - begun)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    totals = {k: sum(r.klass == k for r in results) for k in CLASSES}
    print(f"{len(results)} cases in {(time.monotonic() - begun) / 60:.1f} min: {totals}; table: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
