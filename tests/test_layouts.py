"""Memory layouts: every public entry gives, for an input in any layout NumPy can make, the same
numbers as for its contiguous copy; the direct BLAS calls take an array only where its strides
say how to address it, and otherwise leave the product to NumPy (never reading past it)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="these tests need hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from layouts import LAYOUTS_1D, LAYOUTS_2D, arrange, laid_out  # noqa: E402

import gpubp  # noqa: E402
from gpubp.ops import _blas, numpy_ops  # noqa: E402

pytestmark = pytest.mark.timeout(300)
SETTINGS = settings(max_examples=80, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LIBRARIES = _blas.available()


# ---- the defect as reported ----------------------------------------------------------------------
def test_reversed_column_gives_the_contiguous_result():
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([1, 512, 1], loss="mse", seed=0)
        X = np.linspace(0, 1, 1024, dtype=np.float32)[::-1].reshape(-1, 1)
        A = net.forward(X)
        assert np.isfinite(A).all()
        assert A.tobytes() == net.forward(X.copy()).tobytes()


def test_broadcast_column_reads_no_memory_beyond_its_one_value():
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([1, 64, 1], loss="mse", seed=0)
        X = np.broadcast_to(np.float32(0.5), (20_000, 1))  # one float, 20 000 rows of it
        A = net.forward(X)
        assert A.tobytes() == net.forward(np.full((20_000, 1), 0.5, np.float32)).tobytes()
        assert np.ptp(A) == 0.0


@pytest.mark.parametrize("layout", ["reversed rows", "unaligned", "fortran", "negative-strided", "big-endian",
                                    "read-only memmap"])
def test_large_products_in_any_layout_give_the_contiguous_gradients_bit_for_bit(layout):
    """Products large enough for the direct BLAS call (a layout it declines would otherwise go
    to NumPy's matmul, another library, and round differently)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 300)).astype(np.float32)
    Y = rng.normal(size=(500, 10)).astype(np.float32)
    grads = []
    with gpubp.use_backend("numpy"):
        for Xi in (X, arrange(X, layout)):
            net = gpubp.MLP([300, 200, 10], loss="mse", seed=0)
            net.loss_and_grads(Xi, Y)
            grads.append(net.grads.copy())
    assert grads[0].tobytes() == grads[1].tobytes()


# ---- the direct BLAS call, every layout ----------------------------------------------------------
@pytest.mark.skipif(not LIBRARIES, reason="no BLAS library loads here")
@pytest.mark.parametrize("library", LIBRARIES or ["none"])
@SETTINGS
@given(data=st.data(), m=st.sampled_from([1, 2, 5, 33]), k=st.sampled_from([1, 3, 8]), n=st.sampled_from([1, 4, 9]),
       dtype=st.sampled_from([np.float32, np.float64]), trans_a=st.booleans(), trans_b=st.booleans())
def test_gemm_in_every_layout_computes_the_product_or_declines(library, data, m, k, n, dtype, trans_a, trans_b):
    """C = 0.5 op(A) op(B) - C for A, B and C in any layout: the library computes it (to rounding)
    or returns False with C untouched; it never reads or writes outside the arrays."""
    blas = _blas.load(library)
    A, A0 = data.draw(laid_out((k, m) if trans_a else (m, k), dtype), label="A")
    B, B0 = data.draw(laid_out((n, k) if trans_b else (k, n), dtype), label="B")
    layout = data.draw(st.sampled_from([lay for lay in LAYOUTS_2D if lay not in (
        "read-only", "read-only memmap", "big-endian", "broadcast row", "broadcast scalar", "zero-stride columns",
        "overlapping windows", "odd strides on length-1 axes")]), label="C layout")
    C = arrange(np.linspace(-1, 1, m * n).reshape(m, n).astype(dtype), layout)
    C0 = C.copy()
    expected = 0.5 * (A0.T if trans_a else A0).astype(np.float64) @ (B0.T if trans_b else B0).astype(np.float64) - C0
    done = blas.gemm(0.5, A, B, -1.0, C, trans_a=trans_a, trans_b=trans_b)
    if done:
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)
    else:
        assert C.tobytes() == C0.tobytes()


@pytest.mark.skipif(not LIBRARIES, reason="no BLAS library loads here")
@pytest.mark.parametrize("library", LIBRARIES or ["none"])
def test_rows_describes_only_arrays_it_can_address(library):
    blas = _blas.load(library)
    f4 = np.dtype(np.float32)
    col = np.arange(10, dtype=np.float32).reshape(-1, 1)
    assert blas._rows(col, f4) == (False, 1)
    assert blas._rows(col[::-1], f4) is None  # negative stride
    assert blas._rows(np.broadcast_to(np.float32(1), (10, 1)), f4) is None  # zero stride
    assert blas._rows(np.broadcast_to(np.float32(1), (1, 10)), f4) is None
    assert blas._rows(np.ones((10, 3), np.float32)[::2, :1], f4) == (False, 6)  # one column every other row
    assert blas._rows(np.ones((4, 6), np.float32)[:, ::-2][:1], f4) is None  # one row, negative step
    assert blas._rows(np.ones((4, 6), np.float32)[1:2], f4) == (False, 6)
    assert blas._rows(np.ones((6, 4), np.float32).T, f4) == (True, 4)
    assert blas._rows(np.ones((6, 4), np.float32).T[:1], f4) == (True, 4)  # one row of a transposed view
    assert blas._rows(arrange(np.ones((3, 4), np.float32), "unaligned"), f4) is None
    assert blas._rows(arrange(np.ones((3, 4), np.float32), "embedded"), f4) == (False, 7)


# ---- every public entry --------------------------------------------------------------------------
@pytest.fixture(params=["natural", "every product direct"])
def direct(request, monkeypatch):
    """Run with the size thresholds as shipped, and with every product sent to the direct BLAS call."""
    if request.param != "natural":
        monkeypatch.setattr(numpy_ops, "SMALL_PRODUCT", 0)
        monkeypatch.setattr(numpy_ops, "SMALL_PRODUCT_VECTOR", 0)
    return request.param


def _np(net, a):
    return net.backend.to_numpy(a) if a is not None else None


def _same(net, a, b):
    a, b = _np(net, a), _np(net, b)
    if net.backend.name == "numpy":
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    else:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


ENTRIES = ("forward", "predict", "predict_classes", "loss_and_grads", "train_step", "fit", "evaluate", "gradcheck")


@st.composite
def cases(draw):
    loss = draw(st.sampled_from(["mse", "cross_entropy", "binary_cross_entropy"]))
    n0, m = draw(st.sampled_from([1, 2, 5])), draw(st.sampled_from([1, 3])) if loss != "cross_entropy" else 3
    n = draw(st.sampled_from([1, 2, 3, 7, 40]))
    X = draw(laid_out((n, n0), draw(st.sampled_from([np.float32, np.float64]))), label="X")
    if loss == "cross_entropy":
        Y = draw(laid_out((n,), np.int64, elements=st.integers(0, m - 1)), label="Y")
    elif loss == "binary_cross_entropy":
        Y = draw(laid_out((n, m), elements=st.sampled_from([0.0, 0.25, 1.0])), label="Y")
    else:
        Y = draw(laid_out((n, m)), label="Y")
    return dict(loss=loss, sizes=[n0, 6, m], dtype=draw(st.sampled_from(["float32", "float64"])), X=X, Y=Y,
                entry=draw(st.sampled_from(ENTRIES)))


def _call(entry, net, X, Y, Xv, Yv):
    """What ``entry`` returns, as a tuple of arrays and numbers to compare."""
    if entry in ("forward", "predict", "predict_classes"):
        return (getattr(net, entry)(X),)
    if entry == "loss_and_grads":
        C, grads = net.loss_and_grads(X, Y)
        return (np.float64(C),) + tuple(g for pair in grads for g in pair)
    if entry == "train_step":
        opt = gpubp.Adam(1e-2)
        return net.train_step(X, Y, opt), opt.state["m"], net.params
    if entry == "fit":
        opt = gpubp.SGD(0.05, momentum=0.9)
        h = net.fit(X, Y, epochs=2, batch_size=3, optimizer=opt, validation_data=(Xv, Yv), progress=False)
        return (np.array(h["loss"] + h["val_loss"]), net.params, opt.state["velocity"])
    if entry == "evaluate":
        C, acc = net.evaluate(X, Y, batch_size=2)
        return np.float64(C), np.float64(-1 if acc is None else acc)
    return (np.float64(gpubp.gradcheck(net, X, Y, max_params=20)),)


@SETTINGS
@given(case=cases())
def test_every_entry_gives_the_contiguous_result_for_any_layout(backend, direct, case):
    (X, X0), (Y, Y0) = case["X"], case["Y"]
    results = []
    for Xi, Yi in ((X, Y), (X0, Y0)):
        net = gpubp.MLP(case["sizes"], loss=case["loss"], dtype=case["dtype"], seed=3)
        with np.errstate(all="ignore"):
            results.append((net, _call(case["entry"], net, Xi, Yi, Xi, Yi)))
    (net, got), (_, want) = results
    assert len(got) == len(want)
    for a, b in zip(got, want):
        _same(net, a, b)
    # the inputs themselves are never written to
    assert np.array_equal(np.asarray(X, dtype=np.float64), X0) and np.array_equal(np.asarray(Y), Y0)


def test_layout_lists_cover_the_classes_the_issue_names():
    for layout in ("broadcast scalar", "reversed rows", "overlapping windows", "fortran", "read-only", "memmap",
                   "unaligned", "odd strides on length-1 axes"):
        assert layout in LAYOUTS_2D
    assert "negative-strided" in LAYOUTS_1D and "broadcast scalar" in LAYOUTS_1D
