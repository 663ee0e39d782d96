"""The NumPy backend's in-place hot paths against the reference ops and NumPy formulas."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp.activations import ACTIVATIONS, ELEMENTWISE, SOFTMAX_TRANSPOSED_MAX_COLS
from gpubp.ops.base import Ops
from gpubp.ops import _blas
from gpubp.ops.numpy_ops import BLOCK, SMALL_PRODUCT, NumpyOps

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
        NumpyOps(blas=None).adam_update(state[0], grads, state[1], state[2], t, 1e-3, (0.9, 0.999), 1e-8,
                                        weight_decay)
        Ops(np).adam_update(state_ref[0], grads, state_ref[1], state_ref[2], t, 1e-3, (0.9, 0.999), 1e-8, weight_decay)
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
        NumpyOps(blas=blas).adam_update(state[0], grads, state[1], state[2], t, lr, (0.9, 0.999), 1e-8, 0.0)
        Ops(np).adam_update(state_ref[0], grads, state_ref[1], state_ref[2], t, lr, (0.9, 0.999), 1e-8, 0.0)
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


# ---- the softmax output layer ------------------------------------------------------------
def _softmax_logits(rng, n, m, dtype):
    """Ordinary rows (scale 3) with, at both ends, rows that take every branch of softmax:
    entries flushed to 0 (exp(z - max) below the smallest normal number), a probability that
    turns denormal only in the division, NaN, +inf, -inf entries and an all -inf row."""
    f = np.finfo(dtype)
    far = 100.0 if dtype == "float32" else 800.0  # exp(-far) underflows below the smallest normal
    near = float(np.log(2.0 * float(f.tiny)))  # exp(near) ~ 2 tiny, normal; divided by 4, denormal
    special = np.zeros((7, m))
    special[0, 1::2] = -far
    special[1, :4] = 0.0
    special[1, 4:] = -far
    special[1, 4 % m] = near
    special[2, 0] = np.nan
    special[3, m // 2] = np.inf
    special[4, ::3] = -np.inf
    special[5] = -np.inf
    special[6] = [0.0, -0.0] * (m // 2) + [1.0] * (m % 2)
    Z = rng.normal(scale=3.0, size=(n, m))
    k = min(len(special), n // 2)
    Z[:k] = special[:k]
    Z[n - k:] = special[:k]
    return Z.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", [(14, 5), (300, 10), (20_000, 10), (700, SOFTMAX_TRANSPOSED_MAX_COLS + 1)])
def test_softmax_forward_in_place_is_the_reference_bit_for_bit(dtype, n, m):
    # (20_000, 10) and (700, 65) span several row blocks of NumpyOps (float32 and float64);
    # 65 columns take the row-wise maximum, the others the transposed copy
    rng = np.random.default_rng(n + m)
    act = ACTIVATIONS["softmax"]
    Z = _softmax_logits(rng, n, m, dtype)
    b = rng.normal(size=m).astype(dtype)
    with np.errstate(all="ignore"):
        A_ref = act.forward(np, Z)
        A_direct = np.empty_like(Z)
        act.forward_into(np, Z, A_direct)  # no scratch getter
        wide = np.full((n, m + 3), 7.0, dtype)
        act.forward_into(np, Z, wide[:, 1:m + 1])  # into a non-contiguous A
        A_ops = NumpyOps().bias_activation(Z.copy(), None, act, np.empty_like(Z))
        Zb_ref, Zb = Z.copy(), Z.copy()
        Ab_ref = Ops(np).bias_activation(Zb_ref, b, act, np.empty_like(Z))
        Ab = NumpyOps().bias_activation(Zb, b, act, np.empty_like(Z))
    for A in (A_direct, wide[:, 1:m + 1], A_ops):
        _assert_same(A, A_ref)
    np.testing.assert_array_equal(wide[:, [0, m + 1, m + 2]], 7.0)  # nothing written beside A
    _assert_same(Zb, Zb_ref)
    _assert_same(Ab, Ab_ref)
    assert Ab.dtype == A_ops.dtype == np.dtype(dtype)
    # the data took every branch: flushed entries, a denormal made by the division, NaN rows
    # (NaN, +inf, all -inf) and ordinary rows summing to 1
    tiny = float(np.finfo(dtype).tiny)
    assert A_ref[0, 1] == 0.0 and A_ref[-7, 1] == 0.0
    assert 0.0 < A_ref[1, 4 % m] < tiny
    assert np.isnan(A_ref[[2, 3, 5]]).all() and not np.isnan(A_ref[[0, 1, 4, 6]]).any()
    np.testing.assert_array_equal(A_ref[4, ::3], 0.0)
    np.testing.assert_allclose(A_ref[7:-7].sum(axis=1), 1.0, rtol=10 * np.finfo(dtype).eps)


def _exact_cross_entropy(Z, Y):
    """C = (1/n) sum_i logsumexp(z_i) - z_{i, y_i} by reference.py's per-sample formula (float64)."""
    from gpubp import reference

    m = Z.shape[1]
    losses = [reference._sample_loss_and_output_signal("cross_entropy", "softmax", [float(v) for v in z], [0.0] * m,
                                                      [1.0 if j == y else 0.0 for j in range(m)])[0]
              for z, y in zip(Z, Y)]
    return float(np.mean(losses))


def _xent_heads(Z, Y):
    """(C, Delta) of the NumPy ops and of the reference ops for softmax cross-entropy with labels."""
    from gpubp.losses import LOSSES

    act, loss = ACTIVATIONS["softmax"], LOSSES["cross_entropy"]
    with np.errstate(all="ignore"):
        A = NumpyOps().bias_activation(Z.copy(), None, act, np.empty_like(Z))
        D1, D2 = np.empty_like(Z), np.empty_like(Z)
        C1 = NumpyOps().loss_head(loss, act, Z, A, Y, D1)
        C2 = Ops(np).loss_head(loss, act, Z, A, Y, D2)
    assert C1.shape == () and C1.dtype == D1.dtype == np.dtype(Z.dtype)
    _assert_same(D1, D2)  # A - onehot(Y), the same numbers
    return C1, C2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,scale", [(9, 4.0), (2_000, 4.0), (20_000, 1.0), (2_000, 30.0)])
def test_cross_entropy_head_from_probabilities_matches_the_exact_loss(dtype, n, scale):
    # C_0 = -log a_y against reference.py's logsumexp(z) - z_y; scale 30 flushes ~10% of all
    # float32 probabilities (some labels among them: that batch takes the logits formula)
    rng = np.random.default_rng(n)
    Z = rng.normal(scale=scale, size=(n, 10)).astype(dtype)
    Y = rng.integers(0, 10, n)
    C1, C2 = _xent_heads(Z, Y)
    exact = _exact_cross_entropy(Z, Y)
    eps = float(np.finfo(dtype).eps)
    # per sample both forms are within ~2 eps (1 + max|z|) of the exact loss; the mean adds the
    # rounding of a sum of n terms
    tol = dict(rtol=eps * np.log2(n), atol=4 * eps * (1.0 + np.abs(Z).max()))
    np.testing.assert_allclose(C1, exact, **tol)
    np.testing.assert_allclose(C1, C2, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_head_falls_back_to_the_logits_where_a_label_probability_is_flushed(dtype, monkeypatch):
    rng = np.random.default_rng(5)
    Z = _softmax_logits(rng, 40, 5, dtype)
    far = 100.0 if dtype == "float32" else 800.0
    calls = []
    from_logits = NumpyOps._cross_entropy_from_logits
    monkeypatch.setattr(NumpyOps, "_cross_entropy_from_logits",
                        lambda self, *a: calls.append(1) or from_logits(self, *a))
    ordinary = Z[7:-7]
    Y = rng.integers(0, 5, len(ordinary))
    C1, _ = _xent_heads(ordinary, Y)
    assert not calls  # every a_y a normal number: -log a_y, no second pass over Z
    np.testing.assert_allclose(C1, _exact_cross_entropy(ordinary, Y), rtol=10 * float(np.finfo(dtype).eps))

    # a_y flushed to 0 (label on a -far entry) and a_y denormal after the division: the loss is
    # the exact large finite number, not -log 0 = inf
    for rows, labels, want in [(Z[[0, 7]], [1, 0], None), (Z[[1, 8]], [4, 2], None),
                               (np.array([[0.0, far]], dtype), [0], far)]:
        calls.clear()
        C1, C2 = _xent_heads(rows, np.array(labels))
        exact = _exact_cross_entropy(rows, labels)
        assert calls and np.isfinite(C1) and _exact_cross_entropy(rows[:1], labels[:1]) > 80.0
        np.testing.assert_allclose(C1, exact, rtol=4 * float(np.finfo(dtype).eps))
        np.testing.assert_array_equal(C1, C2)
        if want is not None:
            assert C1 == np.asarray(want, dtype)

    # a label at z = -inf: the loss is +inf; a NaN row (NaN, +inf or all -inf logits): NaN, as
    # the reference gives
    C1, C2 = _xent_heads(Z[[4, 9]], np.array([0, 1]))
    assert C1 == C2 == np.inf
    for bad in (2, 3, 5):
        C1, C2 = _xent_heads(Z[[bad, 9, 0]], np.array([0, 1, 0]))
        assert np.isnan(C1) and np.isnan(C2)


def test_cross_entropy_head_for_another_output_activation_keeps_the_logits_formula():
    # C comes from Z alone there (the reference ops), never from A
    from gpubp.losses import LOSSES

    rng = np.random.default_rng(6)
    Z = rng.normal(size=(6, 4))
    A = rng.uniform(size=(6, 4))  # not softmax(Z)
    Y = rng.integers(0, 4, 6)
    act = ACTIVATIONS["identity"]
    D1, D2 = np.empty_like(Z), np.empty_like(Z)
    C1 = NumpyOps().loss_head(LOSSES["cross_entropy"], act, Z, A, Y, D1)
    C2 = Ops(np).loss_head(LOSSES["cross_entropy"], act, Z, A, Y, D2)
    np.testing.assert_array_equal(C1, C2)
    np.testing.assert_array_equal(D1, D2)
    np.testing.assert_allclose(C1, _exact_cross_entropy(Z, Y), rtol=1e-14)
