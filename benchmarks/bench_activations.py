"""Each activation-derivative kernel Delta = dA * g'(Z), in GB/s against the memory bandwidth."""
from __future__ import annotations

import pytest

from gpubp import bench
from gpubp.activations import ELEMENTWISE


@pytest.mark.parametrize("backend", ["numpy", "cupy"])
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("n,width", [(256, 512), pytest.param(4096, 2048, marks=pytest.mark.full_run_only)])
def test_activation_grad(measure, n, width, name, backend):
    measure(bench.activation_grad_case, backend, name, n, width, "float32")
