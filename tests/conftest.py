"""Shared fixtures: every test that touches arrays runs on every available backend."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import gpubp
from gpubp.backend import cupy_problem

_CUPY_PROBLEM = cupy_problem()
BACKENDS = [
    "numpy",
    pytest.param("cupy", marks=pytest.mark.skipif(
        _CUPY_PROBLEM is not None, reason="CuPy backend unavailable (no CUDA GPU visible or CuPy missing)")),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The backend under test, active for the duration of the test."""
    with gpubp.use_backend(request.param) as be:
        yield be


# The real MNIST test set (t10k IDX files), shipped with the tests (tests/data/mnist), or
# GPUBP_MNIST_DIR.
MNIST_DIR = Path(os.environ.get("GPUBP_MNIST_DIR") or Path(__file__).resolve().parent / "data" / "mnist")


@pytest.fixture
def mnist_dir() -> Path:
    """The folder with the real MNIST t10k IDX files."""
    return MNIST_DIR


@pytest.fixture(scope="session")
def kernels():
    """gpubp's CUDA kernel sources built for the CPU by g++ (tests/host_kernels.py), once."""
    import host_kernels

    problem = host_kernels.compiler_missing()
    if problem is not None:
        pytest.skip(problem)
    return host_kernels.build()
