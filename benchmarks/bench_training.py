"""One training step of a 784-512-256-10 MLP (Dense layers only, with Dropout, with BatchNorm; with
AdamW and clipping), and an epoch of ``gpubp train``'s default workload.

The step's ``gemm`` row runs only its matrix products: the BLAS bound the NumPy step is held to.
"""
from __future__ import annotations

import pytest

from gpubp import bench


@pytest.mark.parametrize("backend", ["numpy", "gemm", "cupy", "torch"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("n", [32, 256, 4096])
def test_train_step(measure, n, optimizer, backend):
    measure(bench.train_step_case, backend, n, optimizer, "float32")


@pytest.mark.parametrize("backend", ["numpy", "cupy", "torch"])
@pytest.mark.parametrize("clip_norm", [None, 1.0])
@pytest.mark.parametrize("n", [32, 256])
def test_train_step_adamw(measure, n, clip_norm, backend):
    """The step with AdamW (decoupled decay 0.01), and with the gradients' global norm clipped to 1
    (torch.nn.utils.clip_grad_norm_ in PyTorch's column) before the update."""
    measure(bench.train_step_case, backend, n, "adamw", "float32", clip_norm=clip_norm)


@pytest.mark.parametrize("backend", ["numpy", "gemm", "cupy", "torch"])
@pytest.mark.parametrize("layers", ["dropout", "batch_norm"])
@pytest.mark.parametrize("n", [32, 256, pytest.param(4096, marks=pytest.mark.full_run_only)])
def test_train_step_with_layers(measure, n, layers, backend):
    """The same step with a Dropout after each hidden activation, or a BatchNorm after each hidden
    linear part (PyTorch with torch.nn.Dropout / torch.nn.BatchNorm1d in the same places)."""
    measure(bench.train_step_case, backend, n, "sgd", "float32", layers=layers)


@pytest.mark.parametrize("backend", ["numpy", "cupy"])
def test_train_epoch(measure, backend):
    measure(bench.epoch_case, backend)
