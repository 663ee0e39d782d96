"""The MLP's structure: shapes, flat buffers and views, initialisation, forward pass."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp import reference


def test_layers_follow_the_tutorial_notation(backend):
    net = gpubp.MLP([5, 4, 3], seed=0)
    assert net.L == 2
    assert net.layers[0].W is None and net.layers[0].size == 5
    assert net.layers[1].W.shape == (4, 5) and net.layers[1].b.shape == (4,)
    assert net.layers[2].W.shape == (3, 4) and net.layers[2].b.shape == (3,)
    assert net.n_params == 4 * 5 + 4 + 3 * 4 + 3 == net.params.size
    # W and b are views into the one flat buffer
    net.layers[2].W[1, 2] = 7.0
    assert float(net.params[4 * 5 + 4 + 1 * 4 + 2]) == 7.0
    nb = gpubp.MLP([5, 4, 3], bias=False, seed=0)
    assert nb.layers[1].b is None and nb.n_params == 32


def test_forward_equals_tutorial_per_sample(backend):
    rng = np.random.default_rng(0)
    net = gpubp.MLP([3, 4, 2], activation="tanh", output_activation="sigmoid", dtype="float64", seed=2)
    X = rng.normal(size=(5, 3))
    A = backend.to_numpy(net.forward(X))
    to_np = backend.to_numpy
    for i in range(5):
        a = X[i]
        for l, g in ((1, np.tanh), (2, lambda z: 1 / (1 + np.exp(-z)))):
            W, b = to_np(net.layers[l].W), to_np(net.layers[l].b)
            a = g(np.array([sum(W[j, k] * a[k] for k in range(len(a))) + b[j] for j in range(W.shape[0])]))
        np.testing.assert_allclose(A[i], a, rtol=1e-13)
    np.testing.assert_array_equal(backend.to_numpy(net.predict(X)), A)


def test_softmax_rows_sum_to_one_and_are_stable(backend):
    net = gpubp.MLP([2, 4], loss="cross_entropy", dtype="float64", seed=0)
    X = np.array([[1e4, -1e4], [0.0, 0.0]])
    A = backend.to_numpy(net.forward(X))
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=1e-14)


def test_same_seed_same_numbers_on_every_backend(backend):
    a = gpubp.MLP([6, 5, 3], seed=42)
    with gpubp.use_backend("numpy"):
        b = gpubp.MLP([6, 5, 3], seed=42)
    np.testing.assert_array_equal(backend.to_numpy(a.params), b.params)
    c = gpubp.MLP([6, 5, 3], seed=43)
    assert not np.array_equal(backend.to_numpy(c.params), b.params)


def test_initialisation_scales():
    """He (std sqrt(2/fan_in)) for ReLU-like layers, Glorot (uniform, limit sqrt(6/(fan_in+fan_out))) otherwise."""
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([400, 300, 200], activation="relu", output_activation="tanh", dtype="float64", seed=0)
    W1, W2 = net.layers[1].W, net.layers[2].W
    assert W1.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert abs(W1.mean()) < 0.003
    limit = np.sqrt(6 / (300 + 200))
    assert W2.max() <= limit and W2.min() >= -limit
    assert W2.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert np.all(net.layers[1].b == 0)


def test_float32_end_to_end(backend):
    net = gpubp.MLP([4, 3, 2], dtype="float32", seed=0)
    X = np.random.default_rng(0).normal(size=(6, 4))  # float64 input is cast once
    assert net.forward(X).dtype == np.float32
    C, grads = net.loss_and_grads(X, np.zeros((6, 2)))
    assert all(dW.dtype == np.float32 and db.dtype == np.float32 for dW, db in grads)
    loss = net.train_step(X, np.zeros((6, 2)), gpubp.SGD(0.1))
    assert loss.shape == () and loss.dtype == np.float32
    assert isinstance(loss, backend.xp.ndarray)


def test_per_layer_activations_and_reference(backend):
    rng = np.random.default_rng(3)
    net = gpubp.MLP([3, 4, 4, 2], activation=["gelu", "elu"], output_activation="identity", loss="mse",
                    dtype="float64", seed=1)
    assert [a.name for a in net.activations] == ["gelu", "elu", "identity"]
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    C, grads = net.loss_and_grads(X, Y)
    C_ref, grads_ref = reference.net_loss_and_grads(net, X, Y)
    assert C == pytest.approx(C_ref, rel=1e-12)


def test_construction_errors():
    with pytest.raises(ValueError, match="needs output_activation='softmax'"):
        gpubp.MLP([3, 2], loss="cross_entropy", output_activation="sigmoid")
    with pytest.raises(ValueError, match="output layer only"):
        gpubp.MLP([3, 3, 2], activation="softmax")
    with pytest.raises(ValueError, match="2 hidden layers"):
        gpubp.MLP([3, 3, 3, 2], activation=["relu"])
    with pytest.raises(ValueError, match="unknown activation 'swish'.*relu"):
        gpubp.MLP([3, 2], activation="swish")
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*sse"):
        gpubp.MLP([3, 2], loss="hinge")
    with pytest.raises(ValueError, match="float32"):
        gpubp.MLP([3, 2], dtype="float16")
    with pytest.raises(ValueError, match="at least two"):
        gpubp.MLP([3])
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        gpubp.MLP([3, 0])


def test_save_load_round_trip(tmp_path, backend):
    net = gpubp.MLP([4, 3, 2], activation="tanh", loss="mse", dtype="float64", seed=9, bias=False)
    path = tmp_path / "m.npz"
    net.save(path)
    with gpubp.use_backend("numpy"):
        back = gpubp.load(path)
    assert back.get_config() == net.get_config()
    np.testing.assert_array_equal(back.params, backend.to_numpy(net.params))
    X = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_allclose(back.forward(X), backend.to_numpy(net.forward(X)), rtol=1e-14)


def test_softmax_flushes_denormal_probabilities(backend):
    """exp(-100) is a float32 denormal: it is flushed to 0 (it would slow later CPU products tenfold)."""
    from gpubp.activations import ACTIVATIONS

    xp = backend.xp
    Z = xp.asarray([[0.0, -100.0, -50.0], [3.0, 3.0, -1e4]], dtype=xp.float32)
    A = backend.to_numpy(ACTIVATIONS["softmax"].forward(xp, Z))
    e50 = np.float32(np.exp(-50.0))
    np.testing.assert_allclose(A[0], [1 / (1 + e50), 0.0, e50 / (1 + e50)], rtol=1e-6)
    assert A[0, 1] == 0.0 and A[1, 2] == 0.0
    assert not np.any((A != 0) & (np.abs(A) < np.finfo(np.float32).tiny))
