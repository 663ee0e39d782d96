"""A SciPy sparse X (gpubp.sparse): fit, train_step, loss_and_grads, evaluate and predict give
the numbers of its dense copy, on either backend, in every format; bad values are refused; a
mini-batch never densifies the whole X."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

import gpubp  # noqa: E402
from gpubp import evaluation, sparse  # noqa: E402
from gpubp.dataset import Dataset  # noqa: E402

FORMATS = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix, "csr_array": sp.csr_array}


def _tolerance(dtype):
    return {"rtol": 0, "atol": 1e-12} if np.dtype(dtype) == np.float64 else {"rtol": 1e-6, "atol": 1e-6}


def _data(n=90, d=40, classes=3, seed=0):
    """A very sparse X (about 1 value in 8 stored) with an all-zero row, and labels."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[rng.random((n, d)) < 0.875] = 0.0
    X[5] = 0.0
    return X, rng.integers(0, classes, n)


def _net(dtype, **kw):
    return gpubp.MLP([40, 12, 3], activation="tanh", loss="cross_entropy", dtype=dtype, seed=3, **kw)


def _np(net, a):
    return net.backend.to_numpy(a)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fit_on_sparse_x_is_fit_on_its_dense_copy(backend, fmt, dtype):
    X, y = _data()
    runs = []
    for data, val in ((X, X[:30]), (FORMATS[fmt](X), FORMATS[fmt](X[:30]))):
        net = _net(dtype)
        h = net.fit(data, y, epochs=3, batch_size=16, optimizer=gpubp.Adam(1e-2), verbose=0,
                    validation_data=(val, y[:30]))
        runs.append((h, _np(net, net.params)))
    (h_dense, p_dense), (h_sparse, p_sparse) = runs
    tol = _tolerance(dtype)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(h_sparse[key], h_dense[key], **tol)
    np.testing.assert_allclose(p_sparse, p_dense, **tol)
    assert not np.array_equal(p_dense, _np(_net(dtype), _net(dtype).params))  # training moved the weights


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_train_step_loss_and_grads_evaluate_predict_match_the_dense_copy(backend, fmt, dtype):
    X, y = _data()
    Xs = FORMATS[fmt](X)
    tol = _tolerance(dtype)
    dense, sparse_net = _net(dtype), _net(dtype)
    for _ in range(2):
        C_d = dense.train_step(X, y, gpubp.SGD(0.5))
        C_s = sparse_net.train_step(Xs, y, gpubp.SGD(0.5))
        np.testing.assert_allclose(float(C_s), float(C_d), **tol)
    np.testing.assert_allclose(_np(sparse_net, sparse_net.params), _np(dense, dense.params), **tol)
    C_d, g_d = dense.loss_and_grads(X, y)
    C_s, g_s = sparse_net.loss_and_grads(Xs, y)
    np.testing.assert_allclose(C_s, C_d, **tol)
    for (dW_s, db_s), (dW_d, db_d) in zip(g_s, g_d):
        np.testing.assert_allclose(_np(dense, dW_s), _np(dense, dW_d), **tol)
        np.testing.assert_allclose(_np(dense, db_s), _np(dense, db_d), **tol)
    np.testing.assert_allclose(sparse_net.evaluate(Xs, y), dense.evaluate(X, y), **tol)
    np.testing.assert_allclose(sparse_net.evaluate(Xs, y, batch_size=7), dense.evaluate(X, y, batch_size=7), **tol)
    A = _np(dense, dense.predict(X))
    np.testing.assert_allclose(_np(dense, sparse_net.predict(Xs)), A, **tol)
    # inference in chunks (several, the last one short) is the pass over all rows at once
    chunked = evaluation.infer_sparse(sparse_net, sparse.to_csr(Xs, sparse_net.dtype, "X"), batch_size=16)
    np.testing.assert_allclose(_np(dense, chunked), A, **tol)
    np.testing.assert_array_equal(_np(dense, sparse_net.predict_classes(Xs)), A.argmax(axis=1))


def test_a_training_pass_over_sparse_x_is_the_dense_one(backend):
    X, y = _data()
    dense, sparse_net = _net("float64", dropout=0.3), _net("float64", dropout=0.3)
    A_d = _np(dense, dense.predict(X, training=True))  # the same dropout masks from the same seed
    A_s = _np(dense, sparse_net.predict(sp.csr_matrix(X), training=True))
    np.testing.assert_allclose(A_s, A_d, rtol=0, atol=1e-12)
    assert not np.allclose(A_d, _np(dense, dense.predict(X)))  # dropout was on


def test_validation_split_slices_a_sparse_x_of_any_format(backend):
    X, y = _data()
    h_d = _net("float64").fit(X, y, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
    h_s = _net("float64").fit(sp.coo_matrix(X), y, epochs=2, batch_size=32, validation_split=0.25, verbose=0)
    np.testing.assert_allclose(h_s["val_loss"], h_d["val_loss"], rtol=0, atol=1e-12)


def test_dataset_of_sparse_x_streams_its_rows_densified():
    X, y = _data()
    net = _net("float32")
    data = Dataset(net, sp.csc_matrix(X), y)
    assert data.stream and data.sparse and sp.isspmatrix_csr(data.X) and data.X.dtype == np.float32
    idx = np.array([5, 0, 89, 17])
    Xb, Yb, _ = data.gather(idx)
    np.testing.assert_array_equal(Xb, X[idx].astype(np.float32))
    np.testing.assert_array_equal(Yb, y[idx])
    Xb2, _, _ = data.gather(idx[::-1].copy())
    assert Xb2 is Xb  # one reused buffer per batch size
    np.testing.assert_array_equal(data.rows(3, 9)[0], X[3:9].astype(np.float32))


def test_a_csr_x_already_in_the_network_dtype_is_not_copied_nor_changed():
    X, y = _data()
    Xs = sp.csr_matrix(X.astype(np.float32))
    before = Xs.copy()
    net = _net("float32")
    assert Dataset(net, Xs, y).X is Xs
    net.fit(Xs, y, epochs=1, batch_size=16, verbose=0)
    assert (Xs != before).nnz == 0 and Xs.has_canonical_format == before.has_canonical_format


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_sparse_x_with_nan_or_inf_stored_is_refused_and_nothing_changes(value):
    X, y = _data()
    Xs = sp.csr_matrix(X)
    Xs.data[3] = value
    net = _net("float64")
    params = net.params.copy()
    for call in (lambda: net.fit(Xs, y, epochs=1, verbose=0), lambda: net.train_step(Xs, y, gpubp.SGD(0.1)),
                 lambda: net.loss_and_grads(Xs, y), lambda: net.evaluate(Xs, y), lambda: net.predict(Xs)):
        with pytest.raises(ValueError, match="X must be finite; its stored values hold NaN or inf"):
            call()
    np.testing.assert_array_equal(net.params, params)
    Xs.data[3] = np.nan
    row = int(np.searchsorted(Xs.indptr, 3, side="right")) - 1  # the row that stores value 3
    with gpubp.validation.check_finite(False):  # the scan can be switched off as for dense X
        A = net.predict(Xs)
    assert np.isnan(A[row]).all() and np.isfinite(np.delete(A, row, axis=0)).all()


def test_float64_values_beyond_float32_are_refused_as_overflow():
    X, y = _data()
    X[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"values beyond \+-3.4e\+38 overflow"):
        _net("float32").predict(sp.csr_matrix(X))


def test_bad_sparse_inputs_are_refused_with_what_was_expected():
    X, y = _data()
    net = _net("float64")
    with pytest.raises(ValueError, match=r"X must have shape \(n, 40\) .* got shape \(90, 39\)"):
        net.fit(sp.csr_matrix(X[:, :39]), y, epochs=1)
    with pytest.raises(ValueError, match="at least one row"):
        net.predict(sp.csr_matrix((0, 40)))
    with pytest.raises(TypeError, match="X must hold real numbers .* sparse csr_matrix .* complex128"):
        net.predict(sp.csr_matrix(X.astype(complex)))
    with pytest.raises(ValueError, match="X must be 2-D"):
        net.predict(sp.coo_array(X[0]))
    with pytest.raises(TypeError, match=r"Y must be a dense numeric array; got a sparse csr_matrix .* Y.toarray\(\)"):
        net.fit(X, sp.csr_matrix(np.eye(3)[y]), epochs=1)
    with pytest.raises(TypeError, match=r"validation_data\[1\] must be a dense numeric array"):
        net.fit(X, y, epochs=1, validation_data=(X, sp.csr_matrix(np.eye(3)[y])))


def test_a_mini_batch_never_densifies_the_whole_x():
    """20,000 rows of 4,000 inputs, 1 in 1,000 stored: 640 MB dense, under 1 MB sparse."""
    n, d = 20000, 4000
    Xs = sp.random(n, d, density=1e-3, format="csr", dtype=np.float64, random_state=np.random.default_rng(0))
    y = (np.asarray(Xs.sum(axis=1)).ravel() > 0).astype(np.int64)
    net = gpubp.MLP([d, 4, 2], loss="cross_entropy", dtype="float64", seed=0)
    dense_bytes = n * d * 8
    tracemalloc.start()
    try:
        net.fit(Xs, y, epochs=1, batch_size=64, verbose=0)
        _, fit_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        A = net.predict(Xs)
        loss, acc = net.evaluate(Xs, y)
        _, infer_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fit_peak < dense_bytes / 100, fit_peak  # a batch is 64 x 4000 values: 2 MB
    assert infer_peak < dense_bytes / 10, infer_peak  # a chunk is at most sparse.CHUNK_BYTES
    assert A.shape == (n, 2) and np.isfinite(loss) and 0 <= acc <= 1
    # the chunked inference is the dense pass, checked on a few rows
    rows = Xs[:50].toarray()
    np.testing.assert_allclose(A[:50], net.predict(rows), rtol=0, atol=1e-12)


def test_sparse_input_is_detected_without_importing_scipy(monkeypatch):
    import sys

    X, _ = _data()
    monkeypatch.delitem(sys.modules, "scipy.sparse")
    assert not sparse.is_sparse(X) and not sparse.is_sparse(sp.csr_matrix(X))  # no SciPy: no sparse object
    monkeypatch.undo()
    assert sparse.is_sparse(sp.csr_matrix(X)) and sparse.is_sparse(sp.dok_array(X)) and not sparse.is_sparse(X)
