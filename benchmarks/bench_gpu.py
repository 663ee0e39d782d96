"""On the GPU: dC/db against CuPy's Delta.sum(axis=0) and the layer's dC/dW GEMM, the hot path's
TFLOP/s at 8192 x 2048 x 2048, and the training step beside PyTorch CUDA eager.

Every case needs a CUDA GPU (skipped otherwise); ``python -m gpubp.gpucheck`` times them.
"""
from __future__ import annotations

import pytest

from gpubp import bench
from gpubp.bench import gpu as bench_gpu

pytestmark = pytest.mark.gpu

BIAS_SHAPES = [(256, 512), (4096, 512), (65536, 128), (65536, 2048), (4099, 1031)]
QUICK_MAX_ENTRIES = 256 * 512  # n * width of the largest dC/db quick mode runs


@pytest.mark.parametrize("variant", bench_gpu.BIAS_VARIANTS)
@pytest.mark.parametrize("n,width", [pytest.param(n, w, marks=[pytest.mark.full_run_only] if n * w > QUICK_MAX_ENTRIES else [])
                                     for n, w in BIAS_SHAPES])
def test_bias_grad(measure, n, width, variant):
    measure(bench_gpu.bias_grad_case, variant, n, width, "float32")


@pytest.mark.full_run_only
@pytest.mark.parametrize("backend", ["cupy", "torch-cuda"])
def test_hot_path_8192x2048(measure, backend):
    if backend == "cupy":
        measure(bench.hot_path_case, "cupy", 8192, 2048, "float32")
    else:
        measure(bench_gpu.torch_cuda_hot_path_case, 8192, 2048, "float32")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("n", [256, 4096])
def test_train_step_torch_cuda(measure, n, optimizer):
    """PyTorch CUDA eager beside bench_training.py's cupy rows (same group: same table)."""
    measure(bench_gpu.torch_cuda_train_step_case, n, optimizer, "float32")
