"""Training on real data: the bundled digits and the MNIST test set."""
from __future__ import annotations


import numpy as np
import pytest

import gpubp
from gpubp import data


def test_digits_reach_97_percent(backend):
    X, y = data.load_digits()
    X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, 0.2, seed=0)
    net = gpubp.MLP([64, 128, 64, 10], activation="relu", loss="cross_entropy", seed=0)
    history = net.fit(X_tr, y_tr, epochs=40, batch_size=32, optimizer=gpubp.Adam(1e-3),
                      validation_data=(X_te, y_te), progress=False)
    assert len(history["loss"]) == 40 and len(history.val_accuracy) == 40
    assert history["loss"][-1] < history["loss"][0] / 10
    loss, acc = net.evaluate(X_te, y_te)
    assert acc >= 0.97
    assert acc == pytest.approx(history["val_accuracy"][-1])
    pred = backend.to_numpy(net.predict_classes(X_te))
    assert np.mean(pred == y_te) == pytest.approx(acc)


def test_tutorial_setup_learns_digits_with_plain_sgd(backend):
    """sigmoid everywhere, the sse loss, one-hot targets, no bias, plain SGD: the tutorial's own setting."""
    X, y = data.load_digits()
    X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, 0.2, seed=1)
    net = gpubp.MLP([64, 64, 10], activation="sigmoid", output_activation="sigmoid", loss="sse", bias=False, seed=1)
    net.fit(X_tr, data.one_hot(y_tr, 10), epochs=30, batch_size=16, optimizer=gpubp.SGD(0.5), progress=False)
    _, acc = net.evaluate(X_te, data.one_hot(y_te, 10))
    assert acc >= 0.9


def test_mnist_real_handwriting(backend, mnist_dir):
    X, y = data.load_mnist(mnist_dir, "t10k")
    X_tr, X_te, y_tr, y_te = X[:8000], X[8000:], y[:8000], y[8000:]
    net = gpubp.MLP([784, 128, 10], activation="relu", loss="cross_entropy", seed=0)
    net.fit(X_tr, y_tr, epochs=4, batch_size=64, optimizer=gpubp.Adam(2e-3), progress=False)
    _, acc = net.evaluate(X_te, y_te)
    assert acc >= 0.90


def test_fit_history_regression_and_binary(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    net = gpubp.MLP([3, 1], output_activation="identity", loss="mse", dtype="float64", seed=0)
    h = net.fit(X, Y, epochs=60, batch_size=20, optimizer=gpubp.SGD(0.05), progress=False)
    assert h["accuracy"] == [None] * 60
    assert h["loss"][-1] < 1e-6
    np.testing.assert_allclose(backend.to_numpy(net.layers[1].W), [[1.0, -2.0, 0.5]], atol=1e-3)
    yb = (X[:, 0] + X[:, 1] > 0).astype(float)
    clf = gpubp.MLP([3, 8, 1], activation="tanh", loss="binary_cross_entropy", seed=0)
    h = clf.fit(X, yb, epochs=40, batch_size=20, optimizer=gpubp.Adam(0.01), progress=False)
    assert h["accuracy"][-1] >= 0.95


def test_fit_uses_one_permutation_of_the_rows(backend):
    """With SGD and no shuffle, fit equals train_step over consecutive slices (last batch smaller)."""
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    a = gpubp.MLP([3, 4, 2], activation="tanh", loss="mse", dtype="float64", seed=0)
    b = gpubp.MLP([3, 4, 2], activation="tanh", loss="mse", dtype="float64", seed=0)
    a.fit(X, Y, epochs=2, batch_size=4, optimizer=gpubp.SGD(0.1), shuffle=False, progress=False)
    opt = gpubp.SGD(0.1)
    for _ in range(2):
        for s in range(0, 10, 4):
            b.train_step(X[s:s + 4], Y[s:s + 4], opt)
    np.testing.assert_allclose(backend.to_numpy(a.params), backend.to_numpy(b.params), rtol=1e-14)
