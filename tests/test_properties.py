"""Property-based: random shapes, dtypes, values and settings either train or raise one of the
allowed errors (ValueError, TypeError, a gpubp error), never anything else, never hang, and a
rejected call never changes the weights or the optimizer."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the property tests need hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import gpubp  # noqa: E402
from gpubp.losses import LOSSES  # noqa: E402
from helpers import snapshot  # noqa: E402
from layouts import FREE, FREE_1D, arrange  # noqa: E402

pytestmark = pytest.mark.timeout(300)

ALLOWED = (ValueError, TypeError, gpubp.GpubpError)
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_, np.complex64]
FINITE = st.floats(-3, 3, width=32)
FLOATS = st.one_of(FINITE, FINITE, FINITE, st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e300, 0.0]))
DTYPES_WEIGHTED = [np.float32, np.float64, np.float32, np.float64, np.int64] + DTYPES


@st.composite
def arrays(draw, rows, cols):
    """An array near the right shape (sometimes off by a row, a column or a dimension)."""
    kind = draw(st.sampled_from(["array"] * 8 + ["list", "object", "none", "generator", "dict", "set", "class"]))
    if kind == "none":
        return None
    if kind == "class":
        return draw(st.sampled_from([np.ndarray, list, gpubp.MLP]))
    shape = draw(st.sampled_from([(rows, cols)] * 6 + [(rows,), (rows + 1, cols), (rows, cols + 1),
                                                        (0, cols), (rows, cols, 1)]))
    dtype = draw(st.sampled_from(DTYPES_WEIGHTED))
    clean = draw(st.booleans())
    with np.errstate(all="ignore"):
        a = draw(hnp.arrays(np.float64, shape, elements=FINITE if clean else FLOATS)).astype(dtype)
    if kind == "list":
        return a.tolist()
    if kind == "object":
        return a.astype(object)
    if kind == "generator":
        return (row for row in a.tolist())
    if kind == "dict":
        return {"X": a}
    if kind == "set":
        return set(a.ravel().tolist())
    if a.ndim in (1, 2) and a.size:  # in any memory layout (tests/layouts.py)
        return arrange(a, draw(st.sampled_from(FREE if a.ndim == 2 else FREE_1D)))
    return a


@st.composite
def labels(draw, rows, m):
    shape = draw(st.sampled_from([(rows,)] * 4 + [(rows - 1,), (rows, 1)]))
    lo, hi = (0, m - 1) if draw(st.booleans()) else (-2, m + 2)
    values = draw(hnp.arrays(np.int64, shape, elements=st.integers(lo, hi)))
    if draw(st.booleans()):
        values = values.astype(np.float64) + draw(st.sampled_from([0.0, 0.0, 0.0, 0.5]))
    if values.ndim == 1 and values.size:  # in any memory layout (tests/layouts.py)
        return arrange(values, draw(st.sampled_from(FREE_1D)))
    return values


@st.composite
def setups(draw):
    n0 = draw(st.integers(1, 4))
    hidden = draw(st.lists(st.integers(1, 5), max_size=2))
    m = draw(st.integers(1, 3))
    loss = draw(st.sampled_from(sorted(LOSSES)))
    dtype = draw(st.sampled_from(["float32", "float64"]))
    rows = draw(st.integers(1, 7))
    X = draw(arrays(rows, n0))
    Y = draw(st.one_of(arrays(rows, m), labels(rows, m)) if loss == "cross_entropy" else arrays(rows, m))
    return dict(sizes=[n0, *hidden, m], loss=loss, dtype=dtype, X=X, Y=Y,
                batch_size=draw(st.sampled_from([1, 2, 3, 5, 64, 0, -1, 2.0])),
                epochs=draw(st.sampled_from([1, 1, 2, 0, -1])),
                lr=draw(st.sampled_from([1e-3, 0.1, 1e-2, 10.0, 1e30, 1e-3, 0.0, -1.0, float("nan"), float("inf"),
                                         10**400, -10**400, 3e38])),
                optimizer=draw(st.sampled_from(["sgd", "adam"])),
                entry=draw(st.sampled_from(["fit", "train_step", "loss_and_grads", "forward", "evaluate"])))


@SETTINGS
@given(case=setups())
def test_random_inputs_train_or_raise_an_allowed_error(backend, case):
    net = gpubp.MLP(case["sizes"], loss=case["loss"], dtype=case["dtype"], seed=0)
    try:
        opt = (gpubp.SGD if case["optimizer"] == "sgd" else gpubp.Adam)(lr=case["lr"])
    except ALLOWED:
        return
    before = snapshot(net, opt)
    X, Y = case["X"], case["Y"]
    calls = {
        "fit": lambda: net.fit(X, Y, epochs=case["epochs"], batch_size=case["batch_size"], optimizer=opt, progress=False),
        "train_step": lambda: net.train_step(X, Y, opt),
        "loss_and_grads": lambda: net.loss_and_grads(X, Y),
        "forward": lambda: net.forward(X),
        "evaluate": lambda: net.evaluate(X, Y),
    }
    try:
        with np.errstate(all="ignore"):
            calls[case["entry"]]()
    except gpubp.NonFiniteError as exc:  # a legal run that diverged: the weights are finite again
        assert case["entry"] == "fit" and exc.epoch >= 1 and exc.batch >= 1
        assert np.isfinite(net.backend.to_numpy(net.params)).all()
    except ALLOWED as exc:
        assert str(exc), "an error must say what was wrong"
        assert snapshot(net, opt) == before, f"rejected ({type(exc).__name__}: {exc}) but changed the network"
    else:
        if case["entry"] == "fit":  # fit never returns with non-finite weights
            assert np.isfinite(net.backend.to_numpy(net.params)).all()


@SETTINGS
@given(sizes=st.lists(st.one_of(st.integers(-2, 6), st.floats(-1, 6), st.none(), st.text(max_size=2)), max_size=4),
       activation=st.sampled_from(["relu", "tanh", "softmax", "nope", None, 3, ["relu"], ["relu", "tanh"]]),
       loss=st.sampled_from(sorted(LOSSES) + ["hinge", None]),
       dtype=st.sampled_from(["float32", "float64", "float16", "int32", "nonsense", None]),
       seed=st.sampled_from([None, 0, -1, 2.5, "1"]))
def test_random_constructions_build_or_raise_an_allowed_error(backend, sizes, activation, loss, dtype, seed):
    try:
        net = gpubp.MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=seed)
    except ALLOWED as exc:
        assert str(exc)
        return
    assert net.n_params == sum(a * b + a for a, b in zip(net.sizes[1:], net.sizes[:-1]))
