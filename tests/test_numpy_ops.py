"""The NumPy backend's in-place hot paths against the reference ops and NumPy formulas."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp.activations import ACTIVATIONS
from gpubp.ops.base import Ops
from gpubp.optim import AdamHyperparameters, SGDHyperparameters
from gpubp.ops import _blas
from gpubp.ops.numpy_ops import BLOCK, SMALL_PRODUCT, NumpyOps

DTYPES = ["float32", "float64"]
# NumPy alone, and every BLAS that loads here (MKL where the extra is installed, NumPy's OpenBLAS)
BLAS_CHOICES = [None, *_blas.available()]


@pytest.mark.parametrize("blas", BLAS_CHOICES)
@pytest.mark.parametrize("dtype", DTYPES)
# the first four are small products (NumPy's matmul); the last is above SMALL_PRODUCT and
# SMALL_PRODUCT_VECTOR (the direct BLAS calls)
@pytest.mark.parametrize("n,n_l,n_prev", [(3, 5, 7), (40, 5, 7), (9, 40, 7), (9, 5, 40), (700, 400, 3)])
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
    hyper = SGDHyperparameters(lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for _ in range(2):
        NumpyOps(blas=None).sgd_update(p1, grads, v1, hyper)
        Ops(np).sgd_update(p2, grads, v2, hyper)
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
    NumpyOps().sgd_update(p, grads, None, SGDHyperparameters(lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0))
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
    hyper = AdamHyperparameters(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    for t in range(1, 4):
        grads = rng.normal(size=size).astype(dtype)
        NumpyOps(blas=None).adam_update(state[0], grads, state[1], state[2], t, hyper)
        Ops(np).adam_update(state_ref[0], grads, state_ref[1], state_ref[2], t, hyper)
    for a, b in zip(state, state_ref):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.dtype(dtype)


@pytest.mark.parametrize("blas", BLAS_CHOICES[1:] or [pytest.param(None, marks=pytest.mark.skip("no BLAS loads"))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_through_blas_is_the_reference_to_rounding(blas, dtype):
    """The BLAS form (AXPBY moments, an AXPY step, eps and the bias correction moved out of the
    square root's quotient) against the reference formulas, over several blocks."""
    from gpubp.ops.numpy_ops import ADAM_BLAS_BLOCK_BYTES, ADAM_BLAS_MIN_SIZE

    rng = np.random.default_rng(3)
    size = 2 * ADAM_BLAS_BLOCK_BYTES // np.dtype(dtype).itemsize + 7  # two blocks and a ragged end
    assert size >= ADAM_BLAS_MIN_SIZE
    params = rng.normal(size=size).astype(dtype)
    state = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    state_ref = [params.copy(), np.zeros(size, dtype), np.zeros(size, dtype)]
    lr = 1e-3
    m_scale = np.zeros(size)  # the moment recurrence on |g|: the size of the terms m is summed from
    for t in range(1, 4):
        grads = (rng.normal(size=size) * 0.01).astype(dtype)
        hyper = AdamHyperparameters(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        NumpyOps(blas=blas).adam_update(state[0], grads, state[1], state[2], t, hyper)
        Ops(np).adam_update(state_ref[0], grads, state_ref[1], state_ref[2], t, hyper)
        m_scale = 0.9 * m_scale + 0.1 * np.abs(grads)
    eps = np.finfo(dtype).eps
    # the moments: one fused rounding against two, a few units in the last place of their terms
    # (m's terms can cancel, so its error is measured against the terms, not against m)
    assert np.all(np.abs(state[1] - state_ref[1]) <= 8 * eps * m_scale)
    np.testing.assert_allclose(state[2], state_ref[2], rtol=8 * eps, atol=0)
    # the weights: a few units in the last place of the larger of |w| and the step's scale lr
    p, p_ref = state[0], state_ref[0]
    assert np.all(np.abs(p - p_ref) <= 8 * np.spacing(np.maximum(np.abs(p_ref), lr).astype(dtype)))
    assert not np.array_equal(p, params)
    assert not np.array_equal(p, p_ref)  # the BLAS form ran: it rounds differently somewhere
    assert all(a.dtype == np.dtype(dtype) for a in state)


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
    ws = net.workspace(5)
    arrays = [C, net.params, net.grads, *optimizer.state.values(), *ws.Z[1:], *ws.A[1:], *ws.Delta[1:],
              *net.backend.ops._scratch_buffers.values()]
    assert [a.dtype for a in arrays] == [np.dtype(np.float32)] * len(arrays)


@pytest.mark.parametrize("blas", BLAS_CHOICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n,n_prev,n_l", [(33, 20, 12), (70, 64, 72)])  # a small product; one for the direct call
def test_layer_forward_and_backprop_linear_against_numpy(blas, dtype, bias, n, n_prev, n_l):
    """Z = A W^T + b (the bias as GEMM's beta on a broadcast copy of b), A = g(Z), and Delta W."""
    rng = np.random.default_rng(7)
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
    assert (n * n_prev * n_l > SMALL_PRODUCT) == (n > 50)  # the cases cover both paths
    np.testing.assert_allclose(out, Delta.astype(np.float64) @ W.astype(np.float64), rtol=tol, atol=tol)
    assert Z.dtype == A.dtype == out.dtype == np.dtype(dtype)


# ---- the softmax output layer ------------------------------------------------------------




@pytest.mark.parametrize("blas", BLAS_CHOICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(30, 40), (520, 520)])  # NumPy's dot; the direct BLAS's (beyond SMALL_PRODUCT_VECTOR)
def test_l2_penalty_is_its_closed_form(blas, dtype, shape):
    """dC/dW += (lambda/n) W and (lambda/2n) ||W||^2, for a layer below and one above the size
    from which the sum of squares goes to the direct BLAS."""
    from gpubp.ops.numpy_ops import SMALL_PRODUCT_VECTOR

    assert (shape[0] * shape[1] > SMALL_PRODUCT_VECTOR) == (shape[0] > 100)
    rng = np.random.default_rng(8)
    W = rng.normal(size=shape).astype(dtype)
    dW = rng.normal(size=shape).astype(dtype)
    dW0 = dW.astype(np.float64)
    penalty = NumpyOps(blas=blas).l2_penalty(W, dW, 0.01)
    W64 = W.astype(np.float64)
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert penalty.shape == () and penalty.dtype == np.dtype(dtype)
    assert float(penalty) == pytest.approx(0.005 * float((W64 * W64).sum()), rel=tol)
    np.testing.assert_allclose(dW, dW0 + 0.01 * W64, rtol=tol, atol=tol)

