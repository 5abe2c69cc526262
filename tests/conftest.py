"""Shared fixtures: correlated Gaussian samples with their closed-form log-ratio matrix; Ctrl-C stops the
run even inside a Lightning fit (:mod:`tests.interrupts`)."""

from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass

import pytest
import torch

from pdlightning.data import gaussian_log_ratio, sample_correlated_gaussian
from tests.interrupts import install as let_ctrl_c_through_fits

let_ctrl_c_through_fits()


@dataclass
class GaussianBatch:
    mi: float
    log_ratio: torch.Tensor  # [n, n], log r(x_i, y_j)

    @property
    def n(self) -> int:
        return self.log_ratio.shape[0]

    def tolerance(self, z: float = 5.0) -> float:
        """``z`` standard errors of a plug-in mean over the joint pairs plus a partition mean over
        the marginal pairs: ``std_p(log r)/sqrt(n) + sqrt(Var_q(r))/sqrt(n)``, with
        ``Var_q(r) = E_q[r^2] - 1 = e^{2I} - 1`` for the Gaussian task (the marginal U-statistic is
        degenerate, so ``n`` effective samples is conservative)."""
        joint_std = self.log_ratio.diagonal().std().item()
        return z * (joint_std + math.sqrt(math.expm1(2 * self.mi))) / math.sqrt(self.n)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (for a process group's or a Ray node's address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_gaussian_batch(n: int, mi: float, dim: int = 20, seed: int = 0, cubic: bool = False) -> GaussianBatch:
    generator = torch.Generator().manual_seed(seed)
    x, y = sample_correlated_gaussian(n, dim, mi, generator, cubic=cubic)
    return GaussianBatch(mi, gaussian_log_ratio(x.double(), y.double(), mi, cubic=cubic).float())


@pytest.fixture(scope="session")
def gaussian_batch() -> GaussianBatch:
    """n = 4,000 pairs at I = 1 nat, d = 20."""
    return make_gaussian_batch(4000, 1.0)


#: a test that takes longer (setup, call and teardown, wall time) is named as it finishes, so a long run
#: that shows only dots says where its time goes; ``--durations`` (setup.cfg) lists the slowest at the end.
SLOW_TEST_SECONDS = 5.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if elapsed >= SLOW_TEST_SECONDS and reporter is not None:
        if getattr(reporter._tw, "width_of_current_line", 0):  # after -q's dots
            reporter.write("\n")
        reporter.write_line(f"{elapsed:6.1f} s  {item.nodeid}")
