"""The CUDA kernels' own source, run on the CPU, against the NumPy path (no GPU needed).

Every kernel of ``kernels/`` is compiled for the host by ``host_kernels`` (the exact text
NVRTC compiles, with the activation table's bodies spliced in) and compared with the
reference :class:`gpubp.ops.base.Ops` on NumPy, for float32 and float64, over grids that
include zeros, -0, denormals, the smallest normal, large |z| up to the dtype's maximum,
infinities and NaN. Each kernel runs as one block and as several blocks (one thread each),
so the grid-stride indexing is exercised too.
"""
from __future__ import annotations

import numpy as np
import pytest

import host_kernels
from host_kernels import assert_close, run_head
from gpubp.activations import ACTIVATIONS
from gpubp.losses import LOSSES
from gpubp.ops.base import Ops
from gpubp.optim import AdamHyperparameters, SGDHyperparameters

pytestmark = pytest.mark.skipif(host_kernels.compiler_missing() is not None,
                                reason=str(host_kernels.compiler_missing()))

DTYPES = ["float32", "float64"]
GRIDS = [1, 5]
REF = Ops(np)


# ---- activations -----------------------------------------------------------------------


# ---- softmax ---------------------------------------------------------------------------


# ---- loss heads ------------------------------------------------------------------------


# ---- gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 70), (37, 1), (37, 10), (64, 70)])
def test_bias_gradient_column_mean(kernels, dtype, shape):
    """dC/db = (1/n) sum over rows of Delta, written straight into the gradient view."""
    rng = np.random.default_rng(5)
    Delta = rng.normal(size=shape).astype(dtype)
    Delta[0, 0] = np.nan
    rows, cols = shape
    want = np.empty(cols, dtype=dtype)
    REF.grad_bias(Delta, out=want)
    for grid in (1, 3, (2, 2)):
        out = np.full(cols, 9.0, dtype=dtype)
        kernels.run("bias_grad", dtype, Delta, out, rows, cols, 1, 1.0 / rows, grid=grid)
        assert_close(out, want, dtype, scale=np.abs(np.nan_to_num(Delta)).max(), what="dC/db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,chunks", [((37, 10), 3), ((64, 70), 7), ((10, 3), 6), ((5, 1), 5), ((1000, 33), 9)])
@pytest.mark.parametrize("grid", [(1, 1), (2, 3), (3, 2), (40, 20)])
def test_bias_gradient_in_two_passes(kernels, dtype, shape, chunks, grid):
    """The rows split into chunks: partial sums (chunks, cols), then their sum, equal the
    one-pass reduction; grids smaller than the column tiles and the chunks wrap in both
    directions, larger ones leave blocks idle."""
    rng = np.random.default_rng(6)
    Delta = rng.normal(size=shape).astype(dtype)
    rows, cols = shape
    per = -(-rows // chunks)
    partial = np.full((chunks, cols), 9.0, dtype=dtype)
    kernels.run("bias_grad", dtype, Delta, partial, rows, cols, chunks, 1.0, grid=grid)
    want_partial = np.stack([Delta[k * per:(k + 1) * per].sum(axis=0) for k in range(chunks)]).astype(dtype)
    assert_close(partial, want_partial, dtype, scale=np.abs(Delta).max() * per, what="partial sums")
    out = np.full(cols, 9.0, dtype=dtype)
    kernels.run("bias_grad", dtype, partial, out, chunks, cols, 1, 1.0 / rows, grid=grid)
    want = np.empty(cols, dtype=dtype)
    REF.grad_bias(Delta, out=want)
    assert_close(out, want, dtype, scale=np.abs(Delta).max(), what="dC/db in two passes")


# ---- optimizers ------------------------------------------------------------------------
def flat_buffers(dtype: str, size: int = 1000):
    rng = np.random.default_rng(6)
    f = np.finfo(dtype)
    params = rng.normal(size=size)
    grads = rng.normal(size=size) * 1e-2
    params[:6] = [0.0, -0.0, float(f.smallest_subnormal), -float(f.tiny), 1e30, -1e30]
    grads[6:12] = [0.0, -0.0, float(f.smallest_subnormal), 1e-30, 1e3, -1e3]
    return params.astype(dtype), grads.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.0, False, 1e-2), (0.9, False, 0.0),
                                                  (0.9, True, 5e-4), (0.5, False, 1e-2)])
def test_sgd_update(kernels, dtype, momentum, nesterov, wd):
    params, grads = flat_buffers(dtype)
    p_ref, p = params.copy(), params.copy()
    v_ref, v = (np.zeros_like(params), np.zeros_like(params)) if momentum else (None, None)
    for step in range(3):
        g = (grads * (step + 1)).astype(dtype)
        REF.sgd_update(p_ref, g, v_ref, SGDHyperparameters(lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd))
        if momentum:
            kernels.run("sgd_momentum", dtype, p, g, v, p.size, 0.1, momentum, wd, nesterov, grid=3)
        else:
            kernels.run("sgd", dtype, p, g, p.size, 0.1, wd, grid=3)
    assert_close(p, p_ref, dtype, rtol_eps=2, what="params")
    if momentum:
        assert_close(v, v_ref, dtype, rtol_eps=2, what="velocity")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wd", [0.0, 1e-2])
def test_adam_update(kernels, dtype, wd):
    params, grads = flat_buffers(dtype)
    p_ref, p = params.copy(), params.copy()
    m_ref, v_ref, m, v = (np.zeros_like(params) for _ in range(4))
    lr, (b1, b2), eps = 1e-3, (0.9, 0.999), 1e-8
    for t in range(1, 4):
        g = (grads * t).astype(dtype)
        with np.errstate(over="ignore"):  # (1e30 * wd)^2 overflows to inf in float32, on both sides
            REF.adam_update(p_ref, g, m_ref, v_ref, t, AdamHyperparameters(lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd))
        bias1, bias2 = 1.0 - b1**t, 1.0 - b2**t
        kernels.run("adam", dtype, p, g, m, v, p.size, lr / bias1, b1, 1.0 - b1, b2, 1.0 - b2, bias2**0.5, eps, wd,
                    grid=3)
    for got, want, what in ((p, p_ref, "params"), (m, m_ref, "m"), (v, v_ref, "v")):
        assert_close(got, want, dtype, rtol_eps=2, what=what)


# ---- argument checks (the same code checks CuPy arrays before a launch) ----------------
def test_arguments_are_checked_not_misread(kernels):
    Z = np.ones((4, 3), dtype=np.float32)
    A = np.empty_like(Z)
    with pytest.raises(TypeError, match="must have dtype float32; got float64"):
        kernels.run("act_forward", "float32", Z.astype(np.float64), A, 4, 3, act="relu")
    with pytest.raises(ValueError, match="must hold rows=4\\*cols=3 = 12 elements; got shape \\(4, 2\\)"):
        kernels.run("act_forward", "float32", Z, A[:, :2].copy(), 4, 3, act="relu")
    with pytest.raises(ValueError, match="output Delta must be C-contiguous"):
        kernels.run("act_backward", "float32", Z.T, Z.T, Z.T, A.T, 12, act="relu")
    with pytest.raises(TypeError, match="takes 5 arguments"):
        kernels.run("act_backward", "float32", Z, Z, A, 12, act="relu")
    with pytest.raises(TypeError, match="non-negative integer"):
        kernels.run("act_backward", "float32", Z, Z, Z, A, -1, act="relu")


def test_non_contiguous_inputs_are_made_contiguous(kernels):
    rng = np.random.default_rng(7)
    base = rng.normal(size=(6, 8)).astype(np.float64)
    Z = base[:, ::2]  # a strided view: read through a contiguous copy, never misread
    assert not Z.flags.c_contiguous
    A = ACTIVATIONS["tanh"].forward(np, Z)
    dA = rng.normal(size=Z.shape)
    out = np.empty_like(A)
    kernels.run("act_backward", "float64", dA, Z, np.asfortranarray(A), out, Z.size, act="tanh")
    assert_close(out, dA * (1.0 - A * A), "float64")
    labels = np.array([0, 3, 1, 2, 3, 0], dtype=np.int32)  # other integer labels are read as int64
    Zs = np.ascontiguousarray(Z)
    As = ACTIVATIONS["softmax"].forward(np, Zs)
    Delta, _ = run_head(kernels, "cross_entropy", "softmax", Zs, As, labels)
    assert_close(Delta, LOSSES["cross_entropy"].delta(np, Zs, As, labels.astype(np.int64), None), "float64")


# ---- CupyOps' dispatch, with the host build in place of the GPU ------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_name,output", [("sse", "sigmoid"), ("sse", "softmax"), ("mse", "identity"),
                                              ("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid")])
@pytest.mark.parametrize("optimizer", ["sgd", "nesterov", "adam"])
def test_cupy_ops_training_step_matches_numpy(kernels, dtype, loss_name, output, optimizer):
    import dataclasses

    import gpubp

    rng = np.random.default_rng(8)
    X = rng.normal(size=(13, 5))
    if loss_name == "cross_entropy":
        Y = rng.integers(0, 4, 13)
    elif loss_name == "binary_cross_entropy":
        Y = rng.uniform(size=(13, 4))
    else:
        Y = rng.normal(size=(13, 4))
    nets = []
    for ops in (None, host_kernels.host_cupy_ops(kernels)):
        with gpubp.use_backend("numpy"):
            net = gpubp.MLP([5, 6, 7, 4], activation=["gelu_tanh", "elu"], output_activation=output, loss=loss_name,
                            dtype=dtype, seed=4, bias=True)
        if ops is not None:
            net.backend = dataclasses.replace(net.backend, ops=ops)
        opt = {"sgd": gpubp.SGD(0.1, weight_decay=1e-3), "nesterov": gpubp.SGD(0.05, momentum=0.9, nesterov=True),
               "adam": gpubp.Adam(1e-2)}[optimizer]
        p0 = net.params.copy()
        losses = [float(net.train_step(X, Y, opt)) for _ in range(3)]
        assert not np.array_equal(net.params, p0), "the steps changed the parameters"
        nets.append((net, losses))
    (ref, ref_losses), (host, host_losses) = nets
    rtol = {"float32": 1e-5, "float64": 1e-12}[dtype]
    np.testing.assert_allclose(host_losses, ref_losses, rtol=rtol)
    err = np.abs(host.params - ref.params).max() / np.abs(ref.params).max()
    assert err < rtol, f"parameters after 3 steps differ by {err:.2e}"
