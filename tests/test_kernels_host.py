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
from gpubp.activations import ACTIVATIONS, ELEMENTWISE, softmax_backward
from gpubp.losses import LOSSES
from gpubp.ops import cuda_kernels as ck
from gpubp.ops.base import Ops

pytestmark = pytest.mark.skipif(host_kernels.compiler_missing() is not None,
                                reason=str(host_kernels.compiler_missing()))

DTYPES = ["float32", "float64"]
GRIDS = [1, 5]
REF = Ops(np)


@pytest.fixture(scope="module")
def kernels():
    return host_kernels.build()


def z_grid(dtype: str) -> np.ndarray:
    """Zeros, denormals, the smallest normal, moderate and huge |z|, +-inf, NaN, and a fine
    sweep of [-12, 12]."""
    f = np.finfo(dtype)
    tiny_denormal = 1e-40 if dtype == "float32" else 1e-310
    special = [0.0, float(f.smallest_subnormal), tiny_denormal, float(f.tiny), 1e-7, 1e-3, 0.5, 1, 2, 5, 10, 20,
               30, 50, 88, 89, 100, 700, 710, 1e3, 1e4, 1e30, float(f.max), np.inf]
    values = special + [-v for v in special] + [np.nan]
    return np.concatenate([np.array(values, dtype=dtype), np.linspace(-12, 12, 481, dtype=dtype)])


def as_matrix(v: np.ndarray, cols: int = 7) -> np.ndarray:
    """``v`` padded with zeros to a (rows, cols) matrix."""
    rows = -(-v.size // cols)
    out = np.zeros(rows * cols, dtype=v.dtype)
    out[: v.size] = v
    return out.reshape(rows, cols)


def assert_close(got, want, dtype: str, scale=None, rtol_eps: float = 16, atol_eps: float = 4, what: str = ""):
    """NaN exactly where the reference has NaN, equal infinities, and elsewhere
    |got - want| <= rtol |want| + atol, with atol = atol_eps eps * scale (per element).

    ``scale`` is the magnitude of the terms the result is made of (default: none, so results
    of denormal size are compared at denormal precision); it absorbs the rounding that
    cancellation near a function's zeros leaves in both implementations alike.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    eps = float(np.finfo(dtype).eps)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), f"{what}: NaN at {np.argwhere(nan_g != nan_w)[:5].tolist()} (got {got[nan_g != nan_w][:5]}, want {want[nan_g != nan_w][:5]})"
    inf = np.isinf(got) | np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), f"{what}: infinities differ: {got[inf]} vs {want[inf]}"
    fin = ~(nan_w | inf)
    scale = np.zeros_like(want) if scale is None else np.broadcast_to(np.asarray(scale, dtype=float), want.shape)
    tol = rtol_eps * eps * np.abs(want[fin].astype(float)) + atol_eps * eps * scale[fin]
    err = np.abs(got[fin].astype(float) - want[fin].astype(float))
    bad = err > tol
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} values differ beyond tolerance, e.g. got {got[fin][bad][:4]} want {want[fin][bad][:4]}"
    )


def z_scale(Z: np.ndarray) -> np.ndarray:
    """The size of the terms of g(z) and g'(z) where they can cancel: min(|z|, 1) for
    |z| <= 16 (the zeros of gelu', silu', ... lie there), and 0 beyond, where every table
    entry is dominated by one term and is compared to full relative precision (so a
    sigmoid that underflows to 0 instead of a denormal is caught)."""
    a = np.abs(np.nan_to_num(Z.astype(float), nan=0.0, posinf=np.inf, neginf=np.inf))
    return np.where(a <= 16.0, np.minimum(a, 1.0), 0.0)


# ---- activations -----------------------------------------------------------------------
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_forward_and_derivative(kernels, name, dtype, grid):
    act = ACTIVATIONS[name]
    Z = as_matrix(z_grid(dtype))
    rows, cols = Z.shape
    with np.errstate(all="ignore"):
        A_ref = act.forward(np, Z)
        g_ref = act.grad(np, Z, A_ref)
    Zk, A = Z.copy(), np.full_like(Z, 123.0)
    kernels.run("act_forward", dtype, Zk, A, rows, cols, act=name, grid=grid)
    assert np.array_equal(Zk, Z, equal_nan=True), "act_forward must not change Z"
    assert_close(A, A_ref, dtype, z_scale(Z), what=f"{name} forward")
    # dA = 1 gives g'(Z) itself
    D = np.full_like(Z, 123.0)
    kernels.run("act_backward", dtype, np.ones_like(Z), Z, A_ref, D, Z.size, act=name, grid=grid)
    assert_close(D, g_ref, dtype, z_scale(Z), what=f"{name} derivative")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_bias_activation_forward(kernels, name, dtype):
    """Z += b broadcast over rows, then A = g(Z), in one pass; Z keeps the biased values."""
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    Z = as_matrix(z_grid(dtype), cols=9)
    b = rng.normal(0.0, 2.0, Z.shape[1]).astype(dtype)
    b[3] = np.nan
    b[5] = -0.0
    Z_ref, A_ref = Z.copy(), np.empty_like(Z)
    with np.errstate(all="ignore"):
        REF.bias_activation(Z_ref, b, act, A_ref)
    for grid in (1, 4):  # a grid stride that is not a multiple of the row length
        Zk, A = Z.copy(), np.empty_like(Z)
        kernels.run("bias_act_forward", dtype, Zk, b, A, Z.shape[0], Z.shape[1], act=name, grid=grid)
        assert np.array_equal(Zk, Z_ref, equal_nan=True), "Z + b"
        assert_close(A, A_ref, dtype, z_scale(Z_ref), what=f"{name} bias + forward, grid {grid}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_backward_chain_rule_and_in_place(kernels, name, dtype):
    """Delta = dA * g'(Z), into a separate array and in place over dA."""
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(2)
    Z = as_matrix(z_grid(dtype))
    dA = rng.normal(size=Z.shape).astype(dtype)
    dA.flat[::11] = np.array([0.0, -0.0, np.nan, 1e-30], dtype=dtype)[np.arange(dA.flat[::11].size) % 4]
    with np.errstate(all="ignore"):
        A = act.forward(np, Z)
        want = np.empty_like(Z)
        REF.activation_backward(dA, Z, A, act, out=want)
    scale = z_scale(Z) * np.abs(np.nan_to_num(dA))
    out = np.empty_like(Z)
    kernels.run("act_backward", dtype, dA, Z, A, out, Z.size, act=name, grid=3)
    assert_close(out, want, dtype, scale, what=f"{name} Delta")
    inplace = dA.copy()
    kernels.run("act_backward", dtype, inplace, Z, A, inplace, Z.size, act=name)
    assert np.array_equal(inplace, out, equal_nan=True), "in place gives the same Delta"


# ---- softmax ---------------------------------------------------------------------------
def logits(dtype: str, regime: str, rows: int = 6, cols: int = 5) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(regime)) % 2**32)
    big = {"float32": 1e30, "float64": 1e300}[dtype]
    Z = rng.normal(0.0, 3.0, (rows, cols))
    if regime == "large":
        Z = Z * 300.0
        Z[1] = [big, -big, 0.0, 1.0, big][:cols]
    elif regime == "tiny":
        Z = Z * float(np.finfo(dtype).smallest_subnormal) * 4
    elif regime == "nan":
        Z[2, 1] = np.nan
    return Z.astype(dtype)


REGIMES = ["normal", "large", "tiny", "nan"]


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_forward_and_backward(kernels, dtype, regime):
    act = ACTIVATIONS["softmax"]
    Z = logits(dtype, regime)
    rows, cols = Z.shape
    b = np.linspace(-1, 1, cols).astype(dtype)
    for bias in (None, b):
        Z_ref, A_ref = Z.copy(), np.empty_like(Z)
        with np.errstate(all="ignore"):
            REF.bias_activation(Z_ref, bias, act, A_ref)
        for grid in (1, 4):
            Zk, A = Z.copy(), np.empty_like(Z)
            if bias is None:
                kernels.run("softmax_forward", dtype, Zk, A, rows, cols, grid=grid)
            else:
                kernels.run("bias_softmax_forward", dtype, Zk, bias, A, rows, cols, grid=grid)
            assert np.array_equal(Zk, Z_ref, equal_nan=True)
            assert_close(A, A_ref, dtype, what=f"softmax, bias={bias is not None}")
    dA = np.random.default_rng(3).normal(size=Z.shape).astype(dtype)
    with np.errstate(all="ignore"):
        want = softmax_backward(np, dA, A_ref)
    D = np.empty_like(Z)
    kernels.run("softmax_backward", dtype, dA, A_ref, D, rows, cols, grid=2)
    assert_close(D, want, dtype, scale=np.abs(dA).max(), what="softmax Jacobian-vector product")


# ---- loss heads ------------------------------------------------------------------------
HEADS = ([("sse", a) for a in ELEMENTWISE + ("softmax",)] + [("mse", a) for a in ELEMENTWISE + ("softmax",)]
         + [("cross_entropy", "softmax"), ("cross_entropy:labels", "softmax"), ("binary_cross_entropy", "sigmoid")])


def targets(loss: str, dtype: str, rows: int, cols: int) -> np.ndarray:
    rng = np.random.default_rng(4)
    if loss == "cross_entropy:labels":
        return rng.integers(0, cols, rows).astype(np.int64)
    if loss == "cross_entropy":
        Y = np.eye(cols)[rng.integers(0, cols, rows)]
        Y[0] = rng.uniform(size=cols)  # soft targets whose sum is not 1
        return Y.astype(dtype)
    if loss == "binary_cross_entropy":
        return rng.uniform(size=(rows, cols)).astype(dtype)
    return rng.normal(size=(rows, cols)).astype(dtype)


def run_head(kernels, loss_name: str, act_name: str, Z, A, Y, grid: int = 1):
    """Delta and C_0 per row from the head kernel gpubp's CuPy ops launch for this pair."""
    dtype = Z.dtype.name
    rows, cols = Z.shape
    Delta, C0 = np.full_like(Z, 7.0), np.full(rows, 7.0, dtype=Z.dtype)
    if loss_name in ("sse", "mse"):
        scale, div = (2.0, 1.0) if loss_name == "sse" else (2.0 / cols, float(cols))
        if act_name == "softmax":
            kernels.run("head_squared_softmax", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div, grid=grid)
        else:
            kernels.run("head_squared", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div, act=act_name, grid=grid)
    elif loss_name == "cross_entropy":
        if Y.ndim == 1:
            kernels.run("head_xent_labels", dtype, Z, A, Y, Delta, C0, rows, cols, grid=grid)
        else:
            kernels.run("head_xent_dense", dtype, Z, A, Y, Delta, C0, rows, cols, grid=grid)
    else:
        kernels.run("head_bce", dtype, Z, A, Y, Delta, C0, rows, cols, grid=grid)
    return Delta, C0


@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_key,act_name", HEADS)
def test_loss_head(kernels, loss_key, act_name, dtype, regime):
    """Delta^(L) = dC_0/dA * g'(Z) and C_0 per row, fused, against losses.py on NumPy."""
    loss = LOSSES[loss_key.split(":")[0]]
    act = ACTIVATIONS[act_name]
    Z = logits(dtype, regime)
    rows, cols = Z.shape
    Y = targets(loss_key, dtype, rows, cols)
    with np.errstate(all="ignore"):
        A = act.forward(np, Z)
        want_delta = loss.delta(np, Z, A, Y, act)
        want_c0 = loss.value(np, Z, A, Y)
    Yf = Y.astype(float)
    scale = max(1.0, float(np.nanmax(np.abs(np.nan_to_num(Z.astype(float), posinf=0, neginf=0)))))
    for grid in (1, 4):
        Delta, C0 = run_head(kernels, loss.name, act_name, Z, A, Y, grid=grid)
        assert_close(Delta, want_delta, dtype, scale=1.0 if regime != "tiny" else None, what=f"{loss_key}/{act_name} Delta")
        c0_scale = scale * cols * max(1.0, float(np.abs(Yf).max()))
        assert_close(C0, want_c0, dtype, scale=c0_scale if regime != "tiny" else None, what=f"{loss_key}/{act_name} C_0")


@pytest.mark.parametrize("dtype", DTYPES)
def test_labels_head_rejects_out_of_range_labels_with_nan(kernels, dtype):
    """A label outside [0, m) is never read out of bounds: its row becomes NaN."""
    Z = logits(dtype, "normal")
    A = ACTIVATIONS["softmax"].forward(np, Z)
    labels = np.array([0, 4, -1, 5, 2, 1], dtype=np.int64)
    Delta, C0 = run_head(kernels, "cross_entropy", "softmax", Z, A, labels)
    assert np.isnan(C0[[2, 3]]).all() and np.isnan(Delta[[2, 3]]).all()
    ok = [0, 1, 4, 5]
    want = LOSSES["cross_entropy"].delta(np, Z[ok], A[ok], labels[ok], ACTIVATIONS["softmax"])
    assert_close(Delta[ok], want, dtype, scale=1.0)


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
        REF.sgd_update(p_ref, g, v_ref, 0.1, momentum, nesterov, wd)
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
            REF.adam_update(p_ref, g, m_ref, v_ref, t, lr, (b1, b2), eps, wd)
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


def test_every_table_activation_has_its_kernels():
    """Adding an activation to the table is one entry: its functor and every per-activation
    kernel instantiation come from the table."""
    functors = ck.activation_functors()
    names = {e for s in ck.SOURCES for e in ck.instantiations(s)}
    for name in ELEMENTWISE:
        assert f"struct gpubp_act_{name} {{" in functors
        for kernel in ("bias_act_forward", "act_forward", "act_backward", "head_squared"):
            for T in ("float", "double"):
                assert f"{kernel}<{T}, gpubp_act_{name}>" in names
    assert "gpubp_act_softmax" not in functors


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
