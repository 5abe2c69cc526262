"""Task registry: the 40 tasks of the "Beyond Normal" v1 suite by their published ids, the high-MI suite, user tasks.

``get_task("1v1-normal-0.75")`` builds a task by id; ``register_task`` adds one (a :class:`Task` or a factory);
``suite_task_ids("bmi-v1")`` lists a suite in its published order (Czyż et al., "Beyond Normal: On the
Evaluation of Mutual Information Estimators", NeurIPS 2023; the definitions follow the authors' package).
``suite_task_ids("high-mi")``: the TRE protocol's correlated Gaussians at 10 to 80 nats and their non-Gaussian
versions at the same MI (:mod:`.high_mi`).
"""

from __future__ import annotations

import difflib
from typing import Callable, Union

from .additive import AdditiveUniformTask
from .base import Task
from .gaussian import BivariateNormalTask, DenseGaussianTask, SparseGaussianTask
from .high_mi import HIGH_MI_LEVELS, CorrelatedGaussianTask, CorrelatedStudentTTask
from .student import StudentTTask
from .transformed import TransformedTask
from .transforms import (
    WIGGLY_X,
    WIGGLY_Y,
    Asinh,
    GaussianMixtureQuantile,
    HalfCube,
    NormalCDF,
    Spiral,
    SwissRoll,
    Wiggly,
)

__all__ = [
    "UnknownTaskError",
    "register_task",
    "unregister_task",
    "get_task",
    "resolve_task",
    "available_tasks",
    "suite_task_ids",
    "suite_tasks",
    "SUITES",
    "normal_cdf",
    "half_cube",
    "asinh",
    "wiggly",
    "spiral",
    "swissroll_x",
    "bimodal",
]

TaskFactory = Callable[[], Task]


class UnknownTaskError(ValueError):
    """A task id that is not registered (the message lists the closest registered ids)."""


def normal_cdf(base: Task) -> Task:
    """``normal_cdf-{base}``: ``Φ`` on every coordinate of X and of Y."""
    return TransformedTask(base, NormalCDF(), NormalCDF())


def half_cube(base: Task) -> Task:
    """``half_cube-{base}``: ``z |z|^{1/2}`` on every coordinate of X and of Y."""
    return TransformedTask(base, HalfCube(), HalfCube())


def asinh(base: Task) -> Task:
    """``asinh-{base}``: ``asinh`` on every coordinate of X and of Y."""
    return TransformedTask(base, Asinh(), Asinh())


def wiggly(base: Task) -> Task:
    """``wiggly-{base}``: the suite's two wiggly maps, :data:`WIGGLY_X` on X and :data:`WIGGLY_Y` on Y."""
    return TransformedTask(base, Wiggly(**WIGGLY_X), Wiggly(**WIGGLY_Y))


def spiral(base: Task, speed: float = 1.0) -> Task:
    """``spiral-{base}``: spirals in the planes (0, 1) of X and (1, 2) of Y at rate ``speed / dim``."""
    return TransformedTask(base, Spiral((0, 1), speed), Spiral((1, 2), speed))


def swissroll_x(base: Task) -> Task:
    """``swissroll_x-{base}``: the Swiss-roll embedding of a 1-d X in ``[0, 1]``; Y unchanged."""
    return TransformedTask(base, SwissRoll(), None)


def bimodal(correlation: float = 0.75) -> Task:
    """``1v1-bimodal-{correlation}``: the bivariate normal with marginals turned into
    ``0.3 N(0, 1) + 0.7 N(5, 1)`` (X) and ``0.5 N(-1, 1) + 0.5 N(3, 1)`` (Y) by quantile matching."""
    base = BivariateNormalTask(correlation)
    return TransformedTask(
        base,
        GaussianMixtureQuantile([0.3, 0.7], [0.0, 5.0]),
        GaussianMixtureQuantile([0.5, 0.5], [-1.0, 3.0]),
        name=base.name.replace("1v1-normal-", "1v1-bimodal-"),
    )


def _bmi_v1() -> list[TaskFactory]:
    """The v1 suite in its published order (one-dimensional, embedding, multinormal, Student, transformed)."""
    binormal = lambda: BivariateNormalTask(0.75)  # noqa: E731
    uniform = lambda: normal_cdf(binormal())  # noqa: E731
    sparse = lambda d: SparseGaussianTask(d, d, n_interacting=2, strength=2.0)  # noqa: E731
    student = lambda d, dof: StudentTTask(d, d, dof)  # noqa: E731
    return [
        binormal,
        uniform,
        lambda: AdditiveUniformTask(0.1),
        lambda: AdditiveUniformTask(0.75),
        lambda: bimodal(0.75),
        lambda: wiggly(binormal()),
        lambda: half_cube(binormal()),
        lambda: student(1, 1),
        lambda: asinh(student(1, 1)),
        lambda: swissroll_x(uniform()),
        *[(lambda d=d: DenseGaussianTask(d, d, 0.5)) for d in (2, 3, 5, 25, 50)],
        *[(lambda d=d: sparse(d)) for d in (2, 3, 5, 25)],
        *[(lambda d=d, dof=dof: student(d, dof)) for d, dof in ((2, 1), (2, 2), (3, 2), (3, 3), (5, 2), (5, 3))],
        *[(lambda d=d: normal_cdf(sparse(d))) for d in (3, 5, 25)],
        *[(lambda d=d: half_cube(sparse(d))) for d in (3, 5, 25)],
        *[(lambda d=d: spiral(sparse(d))) for d in (3, 5, 25)],
        *[(lambda d=d: spiral(normal_cdf(sparse(d)))) for d in (3, 5, 25)],
        *[(lambda d=d, dof=dof: asinh(student(d, dof))) for d, dof in ((2, 1), (3, 2), (5, 2))],
    ]


#: Degrees of freedom of the high-MI suite's Student-t tasks (finite variance, heavier tails than the Gaussian).
HIGH_MI_STUDENT_DOF = 5.0


def _high_mi() -> list[TaskFactory]:
    """The high-MI suite: the TRE protocol's four Gaussian levels (Rhodes, Xu & Gutmann, NeurIPS 2020), then the same
    levels through half-cube and asinh maps (same MI and PMI) and as Student-t tasks at matched MI."""
    levels = HIGH_MI_LEVELS
    gaussian = CorrelatedGaussianTask
    return [
        *[(lambda d=d, mi=mi: gaussian(d, mi)) for d, mi in levels],
        *[(lambda d=d, mi=mi: half_cube(gaussian(d, mi))) for d, mi in levels],
        *[(lambda d=d, mi=mi: asinh(gaussian(d, mi))) for d, mi in levels],
        *[(lambda d=d, mi=mi: CorrelatedStudentTTask(d, mi, HIGH_MI_STUDENT_DOF)) for d, mi in levels],
    ]


_REGISTRY: dict[str, TaskFactory] = {}
SUITES: dict[str, tuple[str, ...]] = {}


def register_task(task: Union[Task, TaskFactory], name: str | None = None, overwrite: bool = False) -> str:
    """Register a task (or a zero-argument factory of one) under ``name`` (default: the task's own id).

    Returns the id. Registering an existing id raises a ValueError unless ``overwrite``.
    """
    if isinstance(task, Task):
        instance = task
        factory: TaskFactory = lambda: instance  # noqa: E731  (tasks are immutable; sharing is safe)
    elif callable(task):
        factory = task
    else:
        raise TypeError(f"task must be a Task or a zero-argument callable returning one, got {type(task).__name__}")
    if name is None:
        built = factory()
        if not isinstance(built, Task):
            raise TypeError(f"the task factory returned {type(built).__name__}, not a Task")
        name = built.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"a task named {name!r} is already registered (pass overwrite=True to replace it)")
    _REGISTRY[name] = factory
    return name


def unregister_task(name: str) -> None:
    """Remove a registered id (a suite's own ids cannot be removed)."""
    if any(name in ids for ids in SUITES.values()):
        raise ValueError(f"{name!r} belongs to a registered suite and cannot be unregistered")
    if name not in _REGISTRY:
        raise UnknownTaskError(f"unknown task id {name!r}")
    del _REGISTRY[name]


def available_tasks() -> list[str]:
    """Every registered id, sorted."""
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    """Build the registered task ``name``; an :class:`UnknownTaskError` lists the closest ids."""
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownTaskError(
            f"unknown task id {name!r}{hint} ({len(_REGISTRY)} registered; see pdlightning.tasks.available_tasks())"
        ) from None
    return factory()


def resolve_task(task: Union[Task, str]) -> Task:
    """A task given as an instance or a registered id."""
    return task if isinstance(task, Task) else get_task(task)


def suite_task_ids(suite: str = "bmi-v1") -> tuple[str, ...]:
    """The ids of a suite in its published order."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {suite!r}")
    return SUITES[suite]


def suite_tasks(suite: str = "bmi-v1") -> list[Task]:
    """The tasks of a suite in its published order."""
    return [get_task(name) for name in suite_task_ids(suite)]


def _register_suite(suite: str, factories: list[TaskFactory]) -> None:
    SUITES[suite] = tuple(register_task(factory) for factory in factories)


_register_suite("bmi-v1", _bmi_v1())
_register_suite("high-mi", _high_mi())
