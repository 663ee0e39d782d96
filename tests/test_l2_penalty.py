"""The L2 penalty on the weights (MATH.md, ``MLP(l2=...)``): closed forms, finite differences,
optimizer steps and epochs computed by hand, and pickling of networks."""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import gpubp
from gpubp.backend import cupy_problem
from gpubp.persistence import network_from_state, network_state


def _net(l2: float, loss: str = "cross_entropy", dtype: str = "float64", bias: bool = True):
    return gpubp.MLP([5, 6, 4, 3], activation="tanh", loss=loss, dtype=dtype, seed=11, bias=bias, l2=l2)


def _data(n: int = 9, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


@pytest.mark.parametrize("bias", [True, False])
def test_penalty_adds_its_closed_form_to_loss_and_weight_gradients_only(backend, bias):
    X, y = _data()
    lam, n = 0.7, X.shape[0]
    C0, g0 = _net(0.0, bias=bias).loss_and_grads(X, y)
    net = _net(lam, bias=bias)
    C, g = net.loss_and_grads(X, y)
    W = [backend.to_numpy(layer.W) for layer in net.layers[1:]]
    assert C == pytest.approx(C0 + lam / (2 * n) * sum(float((w * w).sum()) for w in W), rel=1e-13)
    for (dW, db), (dW0, db0), w in zip(g, g0, W):
        np.testing.assert_allclose(backend.to_numpy(dW), backend.to_numpy(dW0) + (lam / n) * w, rtol=1e-12, atol=1e-15)
        if bias:
            np.testing.assert_array_equal(backend.to_numpy(db), backend.to_numpy(db0))  # biases are not penalised
        else:
            assert db is None


@pytest.mark.parametrize("loss", ["sse", "cross_entropy", "binary_cross_entropy"])
def test_penalised_gradient_matches_finite_differences(backend, loss):
    X, y = _data(6, seed=1)
    Y = y if loss == "cross_entropy" else np.eye(3)[y]
    net = _net(2.5, loss=loss, dtype="float32")
    assert gpubp.gradcheck(net, X, Y) < 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_step_with_penalty_is_the_hand_computed_update(backend, dtype):
    X, y = _data()
    net = _net(0.3, dtype=dtype)
    before = backend.to_numpy(net.params).copy()
    _, grads = _net(0.0, dtype=dtype).loss_and_grads(X, y)
    C = net.train_step(X, y, gpubp.SGD(0.1))
    assert getattr(C, "shape", None) == ()  # a 0-d backend array, as without the penalty
    expected, offset = before.copy(), 0
    for (dW, db), layer in zip(grads, net.layers[1:]):
        size = layer.W.size
        W = before[offset:offset + size].reshape(layer.W.shape)
        expected[offset:offset + size] -= 0.1 * (backend.to_numpy(dW) + 0.3 / X.shape[0] * W).ravel()
        offset += size
        expected[offset:offset + layer.b.size] -= 0.1 * backend.to_numpy(db)
        offset += layer.b.size
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(backend.to_numpy(net.params), expected, rtol=tol, atol=tol)


def test_epoch_loss_pays_the_penalty_once_per_batch_and_evaluate_leaves_it_out(backend):
    X, y = _data(10)
    net, twin = _net(0.5), _net(0.5)
    hist = net.fit(X, y, epochs=1, batch_size=4, optimizer=gpubp.SGD(0.05), shuffle=False, progress=False)
    opt, total = gpubp.SGD(0.05), 0.0
    for s in range(0, 10, 4):
        total += float(twin.train_step(X[s:s + 4], y[s:s + 4], opt)) * len(X[s:s + 4])
    assert hist["loss"][0] == pytest.approx(total / 10, rel=1e-13)
    C, _ = net.evaluate(X, y)
    assert C == pytest.approx(_data_loss(net, X, y), rel=1e-13)


def _data_loss(net, X, y) -> float:
    plain = copy.deepcopy(net)
    plain.l2 = 0.0
    C, _ = plain.loss_and_grads(X, y)
    return C


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.1"])
def test_bad_penalty_is_refused_and_changes_nothing(bad):
    with pytest.raises((TypeError, ValueError), match="l2"):
        gpubp.MLP([2, 2], l2=bad)
    net = gpubp.MLP([2, 2], l2=0.25)
    with pytest.raises((TypeError, ValueError), match="l2"):
        net.l2 = bad
    assert net.l2 == 0.25


def test_checkpoint_keeps_the_penalty(backend, tmp_path):
    net = _net(0.125)
    net.save(tmp_path / "n.npz")
    assert gpubp.load(tmp_path / "n.npz").l2 == 0.125
    assert gpubp.MLP([2, 2]).get_config()["l2"] == 0.0


def test_pickled_network_trains_on_exactly_like_the_original(backend):
    X, y = _data(20)
    net = _net(0.2, dtype="float32")
    net.fit(X, y, epochs=2, batch_size=6, progress=False)
    clone = pickle.loads(pickle.dumps(net))
    assert clone.backend.name == net.backend.name
    assert clone.get_config() == net.get_config() and clone.epoch == net.epoch == 2
    np.testing.assert_array_equal(backend.to_numpy(clone.params), backend.to_numpy(net.params))
    # the views are rebuilt into the new buffer, and the shuffling generator goes on alike
    assert np.shares_memory(backend.to_numpy(clone.layers[1].W), backend.to_numpy(clone.params)) or backend.name == "cupy"
    opt_a, opt_b = gpubp.Adam(1e-2), gpubp.Adam(1e-2)
    net.fit(X, y, epochs=4, batch_size=6, optimizer=opt_a, initial_epoch=2, progress=False)
    clone.fit(X, y, epochs=4, batch_size=6, optimizer=opt_b, initial_epoch=2, progress=False)
    np.testing.assert_array_equal(backend.to_numpy(clone.params), backend.to_numpy(net.params))
    deep = copy.deepcopy(net)
    np.testing.assert_array_equal(backend.to_numpy(deep.params), backend.to_numpy(net.params))
    deep.params[0] += 1.0
    assert float(deep.params[0]) != float(net.params[0])  # a copy, not a view of the original


@pytest.mark.skipif(cupy_problem() is None, reason="a GPU is visible: a CuPy network comes back on it")
def test_network_pickled_on_a_gpu_comes_back_on_the_active_backend_where_there_is_none():
    net = _net(0.1)
    state = network_state(net)
    assert isinstance(state["params"], np.ndarray) and state["backend"] == "numpy"
    state["backend"] = "cupy"  # as pickled on a GPU machine: the parameters are already host arrays
    back = network_from_state(state)
    assert back.backend.name == gpubp.get_backend().name == "numpy"
    np.testing.assert_array_equal(back.params, net.params)
    state["params"] = state["params"][:-1]
    with pytest.raises(ValueError, match="params must be an array of shape"):
        network_from_state(state)


def test_penalty_on_a_network_with_batch_norm_and_dropout_covers_the_dense_weights_only(backend):
    X, y = _data(12, seed=4)
    kwargs = dict(activation="tanh", loss="cross_entropy", dtype="float64", seed=5, dropout=0.25, batch_norm=True)
    lam = 0.8
    net, plain = gpubp.MLP([5, 6, 4, 3], l2=lam, **kwargs), gpubp.MLP([5, 6, 4, 3], **kwargs)
    # the training pass: a fixed dropout mask, the batch's statistics (floor: the biases before a
    # BatchNorm have gradients that are 0 but for rounding)
    assert gpubp.gradcheck(net, X, y, floor=1e-4) < 1e-6
    C, grads = net.loss_and_grads(X, y)
    C0, grads0 = plain.loss_and_grads(X, y)  # the same seed: the same dropout mask
    dense = [layer for layer in net.layers[1:] if isinstance(layer, gpubp.layers.Dense)]
    W = [backend.to_numpy(layer.W) for layer in dense]
    assert C == pytest.approx(C0 + lam / (2 * len(X)) * sum(float((w * w).sum()) for w in W), rel=1e-12)
    kinds = [type(layer).__name__ for layer in net.layers[1:] if layer.param_specs()]
    w = iter(W)
    for kind, g, g0 in zip(kinds, grads, grads0):
        if kind == "Dense":
            np.testing.assert_allclose(backend.to_numpy(g[0]), backend.to_numpy(g0[0]) + lam / len(X) * next(w),
                                       rtol=1e-10, atol=1e-14)
            np.testing.assert_array_equal(backend.to_numpy(g[1]), backend.to_numpy(g0[1]))
        else:  # BatchNorm's gamma and beta are not penalised
            for a, b in zip(g, g0):
                np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    assert "BatchNorm" in kinds and net.get_config()["l2"] == lam


def test_pickled_network_keeps_running_statistics_and_dropout_streams(backend):
    X, y = _data(24, seed=6)
    net = gpubp.MLP([5, 6, 4, 3], activation="relu", loss="cross_entropy", seed=9, dropout=0.3, batch_norm=True, l2=0.1)
    net.fit(X, y, epochs=2, batch_size=8, progress=False)
    twin = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(backend.to_numpy(twin.state), backend.to_numpy(net.state))
    np.testing.assert_array_equal(backend.to_numpy(twin.predict(X)), backend.to_numpy(net.predict(X)))
    opt_a, opt_b = gpubp.SGD(0.1), gpubp.SGD(0.1)
    net.fit(X, y, epochs=3, batch_size=8, optimizer=opt_a, initial_epoch=2, progress=False)
    twin.fit(X, y, epochs=3, batch_size=8, optimizer=opt_b, initial_epoch=2, progress=False)
    np.testing.assert_array_equal(backend.to_numpy(twin.params), backend.to_numpy(net.params))  # the same masks
