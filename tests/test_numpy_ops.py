"""The NumPy backend's in-place hot paths against the reference ops and NumPy formulas."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp.activations import ACTIVATIONS, ELEMENTWISE
from gpubp.ops.base import Ops
from gpubp.ops import _blas
from gpubp.ops.numpy_ops import BLOCK, NumpyOps

DTYPES = ["float32", "float64"]
# NumPy alone, and every BLAS that loads here (MKL where the extra is installed, NumPy's OpenBLAS)
BLAS_CHOICES = [None, *_blas.available()]


SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 80.0, -80.0, 1e-30, -1e-30, 1e-40, -1e-300]


def _special(rng, shape, dtype, at_end=False):
    """Normal values with NaN, +-inf, +-0, tiny and large |z| mixed in (first or last in flat order)."""
    Z = rng.normal(scale=3.0, size=shape)
    flat = Z.reshape(-1)
    if at_end:
        flat[-len(SPECIALS):] = SPECIALS
    else:
        flat[: len(SPECIALS)] = SPECIALS
    return Z.astype(dtype)


def _assert_same(x, y):
    """Equal values, NaN at the same places and the same sign of every zero."""
    np.testing.assert_array_equal(x, y)
    assert np.array_equal(np.isnan(x), np.isnan(y))
    numbers = ~np.isnan(x)
    assert np.array_equal(np.signbit(x[numbers]), np.signbit(y[numbers])), "a zero of another sign"


@pytest.mark.parametrize("blas", BLAS_CHOICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,n_l,n_prev", [(3, 5, 7), (40, 5, 7), (9, 40, 7), (9, 5, 40)])
def test_grad_weights_and_bias_average_over_n(dtype, n, n_l, n_prev, blas):
    # the three shapes put the 1/n on dC/dW, on Delta and on A in turn
    rng = np.random.default_rng(n * n_l * n_prev)
    Delta = rng.normal(size=(n, n_l)).astype(dtype)
    A_prev = rng.normal(size=(n, n_prev)).astype(dtype)
    ops = NumpyOps(blas=blas)
    dW = ops.grad_weights(Delta, A_prev, out=np.empty((n_l, n_prev), dtype))
    db = ops.grad_bias(Delta, out=np.empty(n_l, dtype))
    D64, A64 = Delta.astype(np.float64), A_prev.astype(np.float64)
    expected_dW = sum(np.outer(D64[i], A64[i]) for i in range(n)) / n
    tol = 1e-6 if dtype == "float32" else 1e-13
    assert dW.dtype == db.dtype == np.dtype(dtype)
    np.testing.assert_allclose(dW, expected_dW, rtol=tol, atol=tol * np.abs(expected_dW).max())
    np.testing.assert_allclose(db, D64.sum(axis=0) / n, rtol=tol, atol=tol * np.abs(D64).max())
    # inputs untouched (the scaling goes to a scratch buffer, not into Delta or A)
    np.testing.assert_array_equal(Delta, D64.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(6, 11), (700, 300)])  # one block; several row blocks and a ragged last one
def test_activation_forward_and_backward_equal_reference_ops(dtype, name, shape):
    rng = np.random.default_rng(len(name))
    act = ACTIVATIONS[name]
    fast, ref = NumpyOps(), Ops(np)
    Z = _special(rng, shape, dtype)
    b = rng.normal(size=shape[1]).astype(dtype)
    b[: len(SPECIALS)] = 0.0  # the special values of Z reach g and g' unchanged
    Z1, Z2 = Z.copy(), Z.copy()
    A1, A2 = np.empty_like(Z), np.empty_like(Z)
    with np.errstate(all="ignore"):
        fast.bias_activation(Z1, b, act, A1)
        ref.bias_activation(Z2, b, act, A2)
        _assert_same(Z1, Z2)
        _assert_same(A1, A2)  # NaN where the reference has NaN
        # dA's own special values sit at other places than Z's: g'(z) at every special z is
        # multiplied by an ordinary number and shows in Delta
        dA = _special(rng, shape, dtype, at_end=True)
        assert np.isfinite(dA.reshape(-1)[: len(SPECIALS)]).all()
        D1 = fast.activation_backward(dA.copy(), Z1, A1, act, out=np.empty_like(Z))
        D2 = ref.activation_backward(dA.copy(), Z2, A2, act, out=np.empty_like(Z))
        D3 = dA.copy()
        fast.activation_backward(D3, Z1, A1, act, out=D3)  # in place over dA
    assert A1.dtype == D1.dtype == np.dtype(dtype)
    _assert_same(D1, D2)
    _assert_same(D3, D2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_in_place_forms_without_scratch_and_on_a_vector_equal_reference(dtype, name):
    # called as the table documents them, with no scratch getter (fresh arrays are made), on
    # a 1-d array; and a 1-d array through the blocked NumpyOps path (several blocks of rows)
    rng = np.random.default_rng(7)
    act = ACTIVATIONS[name]
    Z = _special(rng, (200_001,), dtype)
    with np.errstate(all="ignore"):
        A_ref, G_ref = act.forward(np, Z), act.grad(np, Z, act.forward(np, Z))
        A, G = np.empty_like(Z), np.empty_like(Z)
        act.forward_into(np, Z, A)
        act.grad_into(np, Z, A, G)
        A_ops = NumpyOps().bias_activation(Z.copy(), None, act, np.empty_like(Z))
        ones = np.ones_like(Z)
        G_ops = NumpyOps().activation_backward(ones, Z, A_ops, act, out=np.empty_like(Z))
    _assert_same(A, A_ref)
    _assert_same(G, G_ref.astype(dtype))
    _assert_same(A_ops, A_ref)
    _assert_same(G_ops, G_ref.astype(dtype))


def test_softmax_backward_in_place_equals_reference():
    rng = np.random.default_rng(0)
    act = ACTIVATIONS["softmax"]
    Z = rng.normal(size=(4, 5))
    A = act.forward(np, Z)
    dA = rng.normal(size=(4, 5))
    out = NumpyOps().activation_backward(dA.copy(), Z, A, act, out=np.empty_like(Z))
    np.testing.assert_array_equal(out, Ops(np).activation_backward(dA.copy(), Z, A, act, out=np.empty_like(Z)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.0, False, 1e-3), (0.9, False, 0.0),
                                                            (0.9, True, 1e-2)])
def test_blocked_sgd_update_is_the_reference_update(dtype, momentum, nesterov, weight_decay):
    rng = np.random.default_rng(1)
    size = 2 * BLOCK + 37  # several blocks and a ragged last one
    params = rng.normal(size=size).astype(dtype)
    grads = rng.normal(size=size).astype(dtype)
    velocity = rng.normal(size=size).astype(dtype) if momentum else None
    p1, p2 = params.copy(), params.copy()
    v1 = None if velocity is None else velocity.copy()
    v2 = None if velocity is None else velocity.copy()
    for _ in range(2):
        NumpyOps(blas=None).sgd_update(p1, grads, v1, 0.05, momentum, nesterov, weight_decay)
        Ops(np).sgd_update(p2, grads, v2, 0.05, momentum, nesterov, weight_decay)
    np.testing.assert_array_equal(p1, p2)
    if velocity is not None:
        np.testing.assert_array_equal(v1, v2)
    assert p1.dtype == np.dtype(dtype)
    assert not np.array_equal(p1, params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_update_through_blas_axpy_rounds_once(dtype):
    rng = np.random.default_rng(4)
    params = rng.normal(size=BLOCK + 3).astype(dtype)
    grads = rng.normal(size=BLOCK + 3).astype(dtype)
    p = params.copy()
    NumpyOps().sgd_update(p, grads, None, 0.05, 0.0, False, 0.0)
    two_roundings = params - 0.05 * grads
    # AXPY's fused multiply-add rounds once, NumPy twice: a unit in the last place of the terms apart
    assert np.all(np.abs(p - two_roundings) <= np.spacing(np.abs(params) + np.abs(0.05 * grads)))
    assert not np.array_equal(p, params)
    assert p.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_blocked_adam_update_is_the_reference_update(dtype, weight_decay):
    rng = np.random.default_rng(2)
    size = BLOCK + 5
    params = rng.normal(size=size).astype(dtype)
    state = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    state_ref = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    for t in range(1, 4):
        grads = rng.normal(size=size).astype(dtype)
        NumpyOps().adam_update(state[0], grads, state[1], state[2], t, 1e-3, (0.9, 0.999), 1e-8, weight_decay)
        Ops(np).adam_update(state_ref[0], grads, state_ref[1], state_ref[2], t, 1e-3, (0.9, 0.999), 1e-8, weight_decay)
    for a, b in zip(state, state_ref):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.dtype(dtype)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("loss,output", [("cross_entropy", "softmax"), ("sse", "sigmoid"), ("mse", "identity")])
def test_float32_step_stays_float32(opt, loss, output):
    rng = np.random.default_rng(3)
    optimizer = gpubp.SGD(0.1, momentum=0.9) if opt == "sgd" else gpubp.Adam()
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([6, 8, 7, 3], activation=["relu", "tanh"], output_activation=output, loss=loss, seed=0)
    X = rng.normal(size=(5, 6)).astype(np.float32)
    Y = rng.integers(0, 3, 5) if loss == "cross_entropy" else rng.uniform(size=(5, 3)).astype(np.float32)
    C = net.train_step(X, Y, optimizer)
    ws = net._workspace(5)
    arrays = [C, net.params, net.grads, *optimizer.state.values(), *ws.Z[1:], *ws.A[1:], *ws.Delta[1:],
              *net.backend.ops._scratch_buffers.values()]
    assert [a.dtype for a in arrays] == [np.dtype(np.float32)] * len(arrays)


@pytest.mark.parametrize("blas", BLAS_CHOICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_layer_forward_and_backprop_linear_against_numpy(blas, dtype, bias):
    """Z = A W^T + b (the bias as GEMM's beta on a broadcast copy of b), A = g(Z), and Delta W."""
    rng = np.random.default_rng(7)
    n, n_prev, n_l = 33, 20, 12
    A_prev = rng.normal(size=(n, n_prev)).astype(dtype)
    W = rng.normal(size=(n_l, n_prev)).astype(dtype)
    b = rng.normal(size=n_l).astype(dtype) if bias else None
    Z, A = np.empty((n, n_l), dtype), np.empty((n, n_l), dtype)
    ops = NumpyOps(blas=blas)
    ops.layer_forward(A_prev, W, b, ACTIVATIONS["tanh"], Z, A)
    Z64 = A_prev.astype(np.float64) @ W.astype(np.float64).T + (0.0 if b is None else b.astype(np.float64))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(Z, Z64, rtol=tol, atol=tol)
    np.testing.assert_allclose(A, np.tanh(Z64), rtol=tol, atol=tol)
    Delta = rng.normal(size=(n, n_l)).astype(dtype)
    out = ops.backprop_linear(Delta, W, out=np.empty((n, n_prev), dtype))
    np.testing.assert_allclose(out, Delta.astype(np.float64) @ W.astype(np.float64), rtol=tol, atol=tol)
    assert Z.dtype == A.dtype == out.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,act,labels", [("sse", "sigmoid", False), ("sse", "softmax", False), ("mse", "identity", False),
                                             ("mse", "tanh", False), ("cross_entropy", "softmax", True),
                                             ("cross_entropy", "softmax", False), ("binary_cross_entropy", "sigmoid", False)])
def test_loss_head_equals_reference_ops(dtype, loss, act, labels):
    from gpubp.losses import LOSSES

    rng = np.random.default_rng(7)
    Z = (rng.normal(scale=4.0, size=(9, 5))).astype(dtype)
    g = ACTIVATIONS[act]
    A = g.forward(np, Z)
    if labels:
        Y = rng.integers(0, 5, 9)
    elif loss == "cross_entropy":
        Y = np.eye(5, dtype=dtype)[rng.integers(0, 5, 9)]
    else:
        Y = rng.uniform(size=(9, 5)).astype(dtype)
    D1, D2 = np.empty_like(Z), np.empty_like(Z)
    C1 = NumpyOps().loss_head(LOSSES[loss], g, Z, A, Y, D1)
    C2 = Ops(np).loss_head(LOSSES[loss], g, Z, A, Y, D2)
    tol = 1e-6 if dtype == "float32" else 1e-14
    assert C1.shape == () and C1.dtype == np.dtype(dtype) and D1.dtype == np.dtype(dtype)
    np.testing.assert_allclose(C1, C2, rtol=tol)
    np.testing.assert_allclose(D1, D2, rtol=tol, atol=tol * np.abs(D2).max())
