"""``python -m gpubp.gpucheck``: its comparisons run here against the host build of the
kernels (the GPU run itself needs a GPU); without a GPU the command refuses."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import host_kernels
from gpubp import gpucheck
from gpubp.backend import Backend, cupy_problem
from gpubp.ops.numpy_ops import NumpyOps

needs_cxx = pytest.mark.skipif(host_kernels.compiler_missing() is not None, reason=str(host_kernels.compiler_missing()))
NUMPY = Backend("numpy", np, NumpyOps(), "cpu")


def test_rel_err_is_normwise_and_strict_about_nan_and_inf():
    assert gpucheck.rel_err([1.0, 2.0, 4.0], [1.0, 2.0, 4.0]) == 0.0
    assert gpucheck.rel_err([1.0, 2.0, 4.0 + 4e-6], [1.0, 2.0, 4.0]) == pytest.approx(1e-6)
    assert gpucheck.rel_err([1e-3 + 1e-9, 4.0], [1e-3, 4.0]) == pytest.approx(2.5e-10)  # scaled by max|want|
    assert gpucheck.rel_err([np.nan, 1.0], [np.nan, 1.0]) == 0.0
    assert gpucheck.rel_err([0.0, 1.0], [np.nan, 1.0]) == np.inf
    assert gpucheck.rel_err([np.inf, 1.0], [-np.inf, 1.0]) == np.inf
    assert gpucheck.rel_err(np.zeros(3), np.zeros((3, 1))) == np.inf


@pytest.fixture(scope="module")
def host():
    return host_kernels.host_backend(host_kernels.build())


@needs_cxx
def test_compare_ops_passes_for_the_kernels_and_catches_a_wrong_one(host):
    checks = gpucheck.compare_ops(host, NUMPY, n=33, width=19)
    names = {c.name for c in checks}
    assert len(checks) == len({(c.name, c.dtype) for c in checks})
    for name in ("forward gelu, bias", "backward softmax", "loss head cross_entropy:labels / softmax",
                 "dC/dW (1/n) Delta^T A", "dC/db (1/n) sum Delta", "SGD Nesterov + decay", "Adam step 3, decay 0.01"):
        assert name in names
    failed = [(c.name, c.dtype, c.rel_err) for c in checks if not c.passed]
    assert not failed
    assert max(c.rel_err for c in checks if c.dtype == "float64") < 1e-13

    class WrongSSE(type(host.ops)):  # the tutorial's trap: sse without its factor 2
        def loss_head(self, loss, act, Z, A, Y, Delta):
            C = super().loss_head(loss, act, Z, A, Y, Delta)
            if loss.name == "sse":
                Delta *= 0.5
            return C

    wrong = Backend("numpy", np, WrongSSE(host.ops.kernels), "cpu")
    bad = {c.name for c in gpucheck.compare_ops(wrong, NUMPY, dtypes=["float64"], n=9, width=5) if not c.passed}
    assert bad == {f"loss head sse / {a}" for a in gpucheck.ELEMENTWISE + ("softmax",)}


@needs_cxx
def test_compare_training_passes_for_the_kernels(host):
    checks = gpucheck.compare_training(host, NUMPY, steps=2)
    assert len(checks) == 2 * len(gpucheck.TRAINING_CASES) * (2 + 3)
    assert all(c.passed for c in checks), [(c.name, c.dtype, c.rel_err) for c in checks if not c.passed]
    assert max(c.rel_err for c in checks if c.dtype == "float64") < 1e-13
    md = gpucheck.render_markdown({"date": "2000-01-01", "device": {"gpu": "test"}, "passed": True,
                                   "tests": {"skipped": "not run"}, "benchmarks": None,
                                   "comparisons": [c.as_dict() for c in checks]})
    assert "| training cross_entropy/softmax, hidden gelu+gelu_tanh+silu, nesterov: parameters | float32 |" in md


@pytest.mark.skipif(cupy_problem() is None, reason="a GPU is visible: gpucheck would run")
def test_gpucheck_refuses_without_a_gpu(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gpubp.gpucheck", "--output", str(tmp_path / "r.md")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "gpucheck needs a CUDA GPU and refuses to run without one" in proc.stderr
    assert not (tmp_path / "r.md").exists()
