"""Benchmark tasks with exact MI and exact pointwise MI for every pair (the "Beyond Normal" suite, in torch).

``get_task("multinormal-dense-25-25-0.5").sample(5000, generator=0)`` gives ``x``, ``y``, the exact PMI of each
joint pair and the pre-images from which :meth:`Task.pmi_matrix` gives the PMI of every pair ``(x_i, y_j)``.
"""

from .additive import AdditiveUniformTask, additive_uniform_mi
from .base import Task, TaskSample
from .gaussian import (
    BivariateNormalTask,
    DenseGaussianTask,
    GaussianTask,
    RandomGaussianTask,
    SparseGaussianTask,
    gaussian_mi,
)
from .high_mi import HIGH_MI_LEVELS, CorrelatedGaussianTask, CorrelatedStudentTTask, correlation_for_mi
from .registry import (
    SUITES,
    UnknownTaskError,
    asinh,
    available_tasks,
    bimodal,
    get_task,
    half_cube,
    normal_cdf,
    register_task,
    resolve_task,
    spiral,
    suite_task_ids,
    suite_tasks,
    swissroll_x,
    unregister_task,
    wiggly,
)
from .student import StudentTTask, student_t_mi_correction
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
    Transform,
    Wiggly,
)

__all__ = [
    "Task",
    "TaskSample",
    "GaussianTask",
    "BivariateNormalTask",
    "DenseGaussianTask",
    "SparseGaussianTask",
    "RandomGaussianTask",
    "StudentTTask",
    "CorrelatedGaussianTask",
    "CorrelatedStudentTTask",
    "HIGH_MI_LEVELS",
    "correlation_for_mi",
    "AdditiveUniformTask",
    "TransformedTask",
    "Transform",
    "NormalCDF",
    "HalfCube",
    "Asinh",
    "Wiggly",
    "Spiral",
    "SwissRoll",
    "GaussianMixtureQuantile",
    "WIGGLY_X",
    "WIGGLY_Y",
    "gaussian_mi",
    "student_t_mi_correction",
    "additive_uniform_mi",
    "get_task",
    "register_task",
    "unregister_task",
    "resolve_task",
    "available_tasks",
    "suite_task_ids",
    "suite_tasks",
    "SUITES",
    "UnknownTaskError",
    "normal_cdf",
    "half_cube",
    "asinh",
    "wiggly",
    "spiral",
    "swissroll_x",
    "bimodal",
]
