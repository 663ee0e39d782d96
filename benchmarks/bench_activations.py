"""Each activation-derivative kernel Delta = dA * g'(Z), in GB/s against the memory bandwidth."""
from __future__ import annotations

import pytest
from conftest import full_run_only

from gpubp import bench
from gpubp.activations import ELEMENTWISE


@pytest.mark.parametrize("backend", ["numpy", "cupy"])
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("n,width", [(256, 512), (4096, 2048)])
def test_activation_grad(measure, n, width, name, backend):
    full_run_only(n * width > 256 * 512)
    measure(bench.activation_grad_case, backend, name, n, width, "float32")
