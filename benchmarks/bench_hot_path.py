"""The gradient-averaging hot path dC/dW = (1/n) Delta^T A, dC/db = (1/n) sum_rows Delta.

Per-sample loop, NumPy, one bare GEMM (the bound), CuPy and PyTorch side by side, one group
per shape (layers of width x width).
"""
from __future__ import annotations

import pytest
from conftest import full_run_only

from gpubp import bench

NS = (32, 256, 4096, 65536)
WIDTHS = (128, 512, 2048)
QUICK_MAX_WORK = 256 * 512 * 512  # n * width^2 of the largest shape quick mode runs


@pytest.mark.parametrize("backend", bench.BACKENDS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("n", NS)
def test_hot_path_float32(measure, n, width, backend):
    full_run_only(n * width * width > QUICK_MAX_WORK)
    measure(bench.hot_path_case, backend, n, width, "float32")


@pytest.mark.parametrize("backend", bench.BACKENDS)
@pytest.mark.parametrize("n,width", [(256, 512), (4096, 512), (4096, 2048)])
def test_hot_path_float64(measure, n, width, backend):
    full_run_only(n * width * width > QUICK_MAX_WORK)
    measure(bench.hot_path_case, backend, n, width, "float64")
