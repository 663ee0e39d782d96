"""The direct BLAS calls of the NumPy backend (gpubp.ops._blas), for every library that loads here."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from gpubp.ops import _blas

LIBRARIES = _blas.available()
DTYPES = ["float32", "float64"]
pytestmark = pytest.mark.skipif(not LIBRARIES, reason="no BLAS library could be loaded; NumPy's matmul is used")


def _tol(dtype):
    return 1e-5 if dtype == "float32" else 1e-13


@pytest.fixture(params=LIBRARIES or ["none"])
def blas(request):
    return _blas.load(request.param)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("stored_transposed", [False, True])
def test_gemm_every_layout_against_numpy(blas, dtype, trans_a, trans_b, stored_transposed):
    """C = alpha op(A) op(B) + beta C, with A and B passed by rows, by columns (a .T view) or as
    row-strided slices of a wider array, C a row-strided slice too."""
    rng = np.random.default_rng(1)
    m, k, n = 7, 5, 6
    shape_a = (k, m) if trans_a else (m, k)
    shape_b = (n, k) if trans_b else (k, n)
    if stored_transposed:  # the same logical matrices, held as transposed views
        A = np.ascontiguousarray(rng.normal(size=shape_a[::-1]).astype(dtype)).T
        B = np.ascontiguousarray(rng.normal(size=shape_b[::-1]).astype(dtype)).T
    else:  # row-strided slices: every other row of a wider array is skipped by its leading dimension
        A = rng.normal(size=(shape_a[0], shape_a[1] + 3)).astype(dtype)[:, : shape_a[1]]
        B = rng.normal(size=(shape_b[0], shape_b[1] + 2)).astype(dtype)[:, : shape_b[1]]
    wide = rng.normal(size=(m, n + 4)).astype(dtype)
    C = wide[:, 1 : n + 1]
    before = wide.copy()
    expected = 0.5 * (A.T if trans_a else A).astype(np.float64) @ (B.T if trans_b else B).astype(np.float64) \
        - 2.0 * C.astype(np.float64)
    assert blas.gemm(0.5, A, B, -2.0, C, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_allclose(C, expected, rtol=_tol(dtype), atol=_tol(dtype))
    # the columns of the wide array outside the slice are untouched
    np.testing.assert_array_equal(wide[:, 0], before[:, 0])
    np.testing.assert_array_equal(wide[:, n + 1 :], before[:, n + 1 :])


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemv_t_and_axpy_against_numpy(blas, dtype):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(9, 4)).astype(dtype)
    x, y = rng.normal(size=9).astype(dtype), rng.normal(size=4).astype(dtype)
    expected = 0.25 * A.T.astype(np.float64) @ x + 3.0 * y
    assert blas.gemv_t(0.25, A, x, 3.0, y)
    np.testing.assert_allclose(y, expected, rtol=_tol(dtype), atol=_tol(dtype))
    u, v = rng.normal(size=1000).astype(dtype), rng.normal(size=1000).astype(dtype)
    expected = v.astype(np.float64) - 0.1 * u
    assert blas.axpy(-0.1, u, v)
    np.testing.assert_allclose(v, expected, rtol=_tol(dtype), atol=_tol(dtype))
    assert blas.has("axpby", dtype)
    expected = 0.3 * u.astype(np.float64) + 0.9 * v
    assert blas.axpby(0.3, u, 0.9, v)
    np.testing.assert_allclose(v, expected, rtol=_tol(dtype), atol=_tol(dtype))
    assert not blas.axpby(0.3, u[::2], 0.9, v[:500])  # not contiguous


def test_refuses_what_it_cannot_do_and_touches_nothing(blas):
    f32, f64 = np.ones((3, 3), np.float32), np.ones((3, 3), np.float64)
    out = np.zeros((3, 3), np.float32)
    assert not blas.gemm(1.0, f32, f64, 0.0, out)  # mixed dtypes
    assert not blas.gemm(1.0, f32.astype(np.int32), f32, 0.0, out)  # not a float type
    assert not blas.gemm(1.0, np.ones((3, 6), np.float32)[:, ::2], f32, 0.0, out)  # no unit stride
    assert not blas.gemm(1.0, f32, np.ones((4, 3), np.float32), 0.0, out)  # inner sizes differ
    assert not blas.gemm(1.0, f32, f32, 0.0, np.zeros((3, 3), np.float32).T)  # C stored by columns
    assert not blas.axpy(1.0, np.ones(4, np.float32), np.ones(5, np.float32))
    assert not out.any()


def test_refuses_sizes_beyond_its_index_type(blas, monkeypatch):
    """A BLAS with 32-bit indices must not be handed sizes it would wrap around."""
    Delta, A = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)
    out = np.zeros((3, 2), np.float32)
    assert blas.gemm(0.25, Delta, A, 0.0, out, trans_a=True)
    np.testing.assert_array_equal(out, np.ones((3, 2)))
    monkeypatch.setattr(blas, "index_max", 11)  # as if the index type held sizes up to 11
    out[...] = 0
    assert not blas.gemm(0.25, Delta, A, 0.0, out, trans_a=True) and not out.any()
    assert not blas.axpy(1.0, np.ones(12, np.float32), np.ones(12, np.float32))


def test_empty_products(blas):
    C = np.full((2, 3), 4.0, np.float32)
    assert blas.gemm(1.0, np.ones((2, 0), np.float32), np.ones((0, 3), np.float32), 0.5, C)
    np.testing.assert_array_equal(C, np.full((2, 3), 2.0))  # k = 0: C = beta C
    assert blas.gemm(1.0, np.ones((0, 4), np.float32), np.ones((4, 3), np.float32), 0.0, np.ones((0, 3), np.float32))


def test_a_reused_array_address_follows_the_array(blas):
    """The address cache must not hand out the data of an array that has died (ids are reused)."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        A = rng.normal(size=(4, 4)).astype(np.float32)
        C = np.empty((4, 4), np.float32)
        assert blas.gemm(1.0, A, np.eye(4, dtype=np.float32), 0.0, C)
        np.testing.assert_array_equal(C, A)
        del A, C


def test_load_and_select_errors():
    with pytest.raises(ValueError, match="unknown BLAS 'atlas'"):
        _blas.load("atlas")
    with pytest.raises(ValueError, match="GPUBP_BLAS must be one of auto, mkl, openblas, numpy; got 'fast'"):
        _blas.select("fast")
    assert _blas.select("numpy") is None
    assert _blas.select("auto").name == LIBRARIES[0]


def _import_with(env_value):
    env = dict(os.environ, GPUBP_BLAS=env_value)
    code = "from gpubp.ops import _blas; print(_blas.DEFAULT.name if _blas.DEFAULT else 'numpy')"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_gpubp_blas_environment_variable():
    for name in (*LIBRARIES, "numpy"):
        proc = _import_with(name)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == name
    proc = _import_with("fastest")
    assert proc.returncode != 0 and "GPUBP_BLAS must be one of auto, mkl, openblas, numpy; got 'fastest'" in proc.stderr
    if "mkl" not in LIBRARIES:
        proc = _import_with("mkl")
        assert proc.returncode != 0 and "install the 'mkl' extra" in proc.stderr


def _net_on(blas, dtype="float32"):
    """A network big enough that its products go through the direct call (above SMALL_PRODUCT
    at n = 64), its ops bound to ``blas`` (a library name, or None for NumPy alone)."""
    import dataclasses

    import gpubp
    from gpubp.ops.numpy_ops import NumpyOps

    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([300, 200, 100, 5], activation="relu", loss="cross_entropy", dtype=dtype, seed=0)
    net.backend = dataclasses.replace(net.backend, ops=NumpyOps(blas=blas))
    return net


def test_direct_products_give_numpys_gradients():
    """loss_and_grads through each library equals NumPy's own products (float64, to rounding);
    NumPy's path is checked against the tutorial-literal reference in test_gradients."""
    from gpubp.ops.numpy_ops import SMALL_PRODUCT

    rng = np.random.default_rng(5)
    X = rng.normal(size=(64, 300))
    y = rng.integers(0, 5, 64)
    assert 64 * 300 * 200 > SMALL_PRODUCT and 64 * 200 * 100 > SMALL_PRODUCT
    C0, grads0 = _net_on(None, "float64").loss_and_grads(X, y)
    for name in LIBRARIES:
        C, grads = _net_on(name, "float64").loss_and_grads(X, y)
        assert C == pytest.approx(C0, rel=1e-13)
        for (dW, db), (dW0, db0) in zip(grads, grads0):
            np.testing.assert_allclose(dW, dW0, rtol=1e-11, atol=1e-14)
            np.testing.assert_allclose(db, db0, rtol=1e-11, atol=1e-14)


@pytest.mark.skipif(len(LIBRARIES) < 2, reason="only one BLAS library loads here")
def test_libraries_train_alike():
    """Three training steps through each library give the same network (to float32 rounding)."""
    import gpubp

    rng = np.random.default_rng(4)
    X = rng.normal(size=(64, 300)).astype(np.float32)
    y = rng.integers(0, 5, 64)
    start = np.array(_net_on(None).params)
    results = []
    for name in LIBRARIES:
        net = _net_on(name)
        opt = gpubp.SGD(lr=0.1)
        for _ in range(3):
            net.train_step(X, y, opt)
        results.append(np.array(net.params))
    assert not np.allclose(results[0], start, rtol=1e-3, atol=1e-3)  # it trained
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-4, atol=1e-5)


def test_a_call_made_again_gives_the_numbers_of_the_first(blas):
    """The second and later calls on the same arrays and scalars skip the checks (Blas._plan):
    the same numbers as a fresh call, and the scalars stay part of the call."""
    rng = np.random.default_rng(4)
    A, B = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    C = np.empty((6, 4), np.float32)
    want = A.astype(np.float64) @ B.T.astype(np.float64)
    for alpha in (1.0, 1.0, 1.0, 0.5, 0.5):  # noted, remembered, then reused; another alpha is another call
        assert blas.gemm(alpha, A, B, 0.0, C, trans_b=True)
        np.testing.assert_allclose(C, alpha * want, rtol=1e-5, atol=1e-5)
    x, y = rng.normal(size=50).astype(np.float32), rng.normal(size=50).astype(np.float32)
    y0 = y.copy()
    for k in range(1, 4):
        assert blas.axpy(0.25, x, y)
        np.testing.assert_allclose(y, y0 + k * 0.25 * x, rtol=1e-5, atol=1e-5)
        assert blas.dot(x, y) == pytest.approx(float(x.astype(np.float64) @ y), rel=1e-5)


def test_a_remembered_call_follows_its_arrays(blas):
    """A remembered call is made again only on the very arrays it was checked with: not on a new
    array that took a dead one's id, not on an array reshaped in place, not into an array made
    read-only since, and not past a lowered index limit."""
    rng = np.random.default_rng(5)
    B = np.eye(4, dtype=np.float32)
    for _ in range(3):  # the same id may come back for a new array with other numbers
        for _ in range(3):
            A = rng.normal(size=(4, 4)).astype(np.float32)
            C = np.empty((4, 4), np.float32)
            assert blas.gemm(1.0, A, B, 0.0, C)
            np.testing.assert_array_equal(C, A)
            u, v = rng.normal(size=8).astype(np.float32), np.zeros(8, np.float32)
            assert blas.axpy(1.0, u, v) and blas.axpy(1.0, u, v)
            np.testing.assert_allclose(v, 2 * u)
            del A, C, u, v
    A = rng.normal(size=(4, 4)).astype(np.float32)
    C = np.zeros((4, 4), np.float32)
    for _ in range(3):
        assert blas.gemm(1.0, A, B, 0.0, C)
    C.shape = (2, 8)  # reshaped in place: another product, which the library cannot take
    assert not blas.gemm(1.0, A, B, 0.0, C)
    C.shape = (4, 4)
    C.flags.writeable = False
    assert not blas.gemm(1.0, A, B, 0.0, C)
    C.flags.writeable = True
    for _ in range(3):
        assert blas.gemm(1.0, A, B, 0.0, C)


def test_a_remembered_call_respects_a_lowered_index_limit(blas, monkeypatch):
    x, y = np.ones(12, np.float32), np.ones(12, np.float32)
    for _ in range(3):
        assert blas.axpy(1.0, x, y) and blas.dot(x, y) is not None
    monkeypatch.setattr(blas, "index_max", 11)
    before = y.copy()
    assert not blas.axpy(1.0, x, y) and blas.dot(x, y) is None
    np.testing.assert_array_equal(y, before)
