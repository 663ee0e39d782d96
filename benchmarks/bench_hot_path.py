"""The gradient-averaging hot path dC/dW = (1/n) Delta^T A, dC/db = (1/n) sum_rows Delta.

Per-sample loop, NumPy, one bare GEMM (the bound), CuPy and PyTorch side by side, one group
per shape (layers of width x width). The per-sample loop runs at the sizes it can finish.
"""
from __future__ import annotations

import itertools

import pytest

from gpubp import bench

NS = (32, 256, 4096, 65536)
WIDTHS = (128, 512, 2048)
QUICK_MAX_WORK = 256 * 512 * 512  # n * width^2 of the largest shape quick mode runs


def _cases(shapes):
    """(n, width, backend) for every backend that runs at that shape; the large ones timed only."""
    return [pytest.param(n, width, backend, marks=[pytest.mark.full_run_only] if n * width * width > QUICK_MAX_WORK else [])
            for n, width in shapes for backend in bench.BACKENDS
            if backend != "loop" or (n <= bench.LOOP_MAX_N and width <= bench.LOOP_MAX_WIDTH)]


@pytest.mark.parametrize("n,width,backend", _cases(itertools.product(NS, WIDTHS)))
def test_hot_path_float32(measure, n, width, backend):
    measure(bench.hot_path_case, backend, n, width, "float32")


@pytest.mark.parametrize("n,width,backend", _cases([(256, 512), (4096, 512), (4096, 2048)]))
def test_hot_path_float64(measure, n, width, backend):
    measure(bench.hot_path_case, backend, n, width, "float64")
