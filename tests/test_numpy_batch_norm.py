"""NumpyOps' BatchNorm passes, block by block, against the reference Ops written once against xp:
batches of one block and of many (with a last block of another size), with and without an
activation and a dropout after it."""
from __future__ import annotations

import numpy as np
import pytest

from gpubp import philox
from gpubp.activations import ACTIVATIONS
from gpubp.layers.dropout import Draw
from gpubp.ops import numpy_ops
from gpubp.ops.base import Ops
from gpubp.ops.numpy_ops import NumpyOps

REF = Ops(np)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [7, 1000])  # one block; 1000 x 300: several blocks and a shorter last one
@pytest.mark.parametrize("name,dropped", [(None, False), ("relu", False), ("gelu", True), ("tanh", True)])
@pytest.mark.parametrize("training", [True, False])
def test_blocked_batch_norm_equals_the_reference(dtype, rows, name, dropped, training):
    cols = 300
    assert (rows * cols * np.dtype(dtype).itemsize > numpy_ops.ACTIVATION_BLOCK_BYTES) == (rows == 1000)
    rng = np.random.default_rng(rows)
    act = None if name is None else ACTIVATIONS[name]
    X = (rng.normal(size=(rows, cols)) * 3 + 40).astype(dtype)
    shift = (X.mean(axis=0) + 0.5).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, cols).astype(dtype), rng.normal(size=cols).astype(dtype)
    dout = rng.normal(size=(rows, cols)).astype(dtype)
    results = []
    for ops in (REF, NumpyOps()):
        u = cols
        s = np.empty(2 * u, dtype)
        Xhat, Y, A, work, delta, dX = (np.empty_like(X) for _ in range(6))
        mean, inv_std, coef, dgamma, dbeta = (np.empty(u, dtype) for _ in range(5))
        rm, rv = np.zeros(u, dtype), np.ones(u, dtype)
        d = None
        if dropped:
            d = Draw(0.3, 99, 4, 2, 0, np.empty_like(X), np.empty_like(X), philox.Stream(99, 4))
        ops.batch_norm_sums(X, shift, s[:u], s[u:], work, Y)
        ops.batch_norm_stats(s[:u], s[u:], shift, rm, rv, mean, inv_std, float(rows), 0.1, 1e-5, training, True)
        out = ops.batch_norm_forward(X, mean, inv_std, gamma, beta, Xhat, Y, act, A, dropout=d)
        outputs = [mean.copy(), inv_std.copy(), rm.copy(), rv.copy(), Xhat.copy(), out.copy()]
        if d is not None:
            outputs.append(d.out.copy())
        delta[...] = dout
        ops.batch_norm_backward_sums(delta, Y, out, act, Xhat, s[:u], s[u:], dropout=d, work=work)
        ops.batch_norm_backward(delta, Xhat, s[:u], s[u:], gamma, inv_std, float(rows), training, dgamma, dbeta, dX,
                                work, coef)
        results.append(outputs + [delta.copy(), dgamma.copy(), dbeta.copy(), dX.copy()])
    rtol = {"float32": 2e-4, "float64": 1e-10}[dtype]
    for k, (got, want) in enumerate(zip(results[1], results[0])):
        scale = max(float(np.abs(want).max()), 1e-30)
        assert np.abs(got.astype(float) - want.astype(float)).max() <= rtol * scale, f"output {k}"
