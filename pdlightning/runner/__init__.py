"""One runner layer for every sweep (the benchmark report, the self-consistency tests, the SLB / CLB
tables): a sweep is a plan of :class:`Run` s (each a ``pdlightning fit`` command), an executor that
turns one run into a :class:`RunRecord` (``run.json`` in the run's directory), and a resumable
scheduler (:func:`run_all`) that skips what finished under the same budget and runs the rest in this
process or, with :class:`RaySettings` (the ``sweep`` extra), as Ray tasks on this machine or a cluster
(:mod:`pdlightning.runner.ray_executor`). The tables are always rendered from the records on disk."""

from .cli import config_path, function_cli
from .execute import execute_in_process, in_process
from .plan import Run, run_id
from .progress import Progress
from .provenance import ProtocolMismatch
from .ray_executor import RaySettings, ray_available
from .record import DamagedRunFile, RunRecord, package_versions, read_record, read_records, write_record
from .schedule import BudgetMismatch, Executor, SweepBusy, run_all
from .writers import markdown_table, write_csv

__all__ = [
    "Run",
    "run_id",
    "RunRecord",
    "DamagedRunFile",
    "ProtocolMismatch",
    "read_record",
    "read_records",
    "write_record",
    "package_versions",
    "Executor",
    "BudgetMismatch",
    "SweepBusy",
    "run_all",
    "RaySettings",
    "ray_available",
    "Progress",
    "execute_in_process",
    "in_process",
    "markdown_table",
    "write_csv",
    "function_cli",
    "config_path",
]
