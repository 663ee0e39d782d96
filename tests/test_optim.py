"""Optimizers against their closed forms, on the flat parameter buffer."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp


def _net_with_grads(backend):
    rng = np.random.default_rng(0)
    net = gpubp.MLP([3, 4, 2], activation="tanh", output_activation="identity", loss="sse", dtype="float64", seed=0)
    X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    return net, X, Y


def test_sgd_is_w_minus_eta_gradient(backend):
    net, X, Y = _net_with_grads(backend)
    w0 = backend.to_numpy(net.params).copy()
    _, grads = net.loss_and_grads(X, Y)
    g = np.concatenate([np.concatenate([backend.to_numpy(dW).ravel(), backend.to_numpy(db)]) for dW, db in grads])
    net.train_step(X, Y, gpubp.SGD(lr=0.1))
    np.testing.assert_allclose(backend.to_numpy(net.params), w0 - 0.1 * g, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_decay_follow_the_recurrence(backend, nesterov):
    net, X, Y = _net_with_grads(backend)
    opt = gpubp.SGD(lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    w = backend.to_numpy(net.params).copy()
    v = np.zeros_like(w)
    for _ in range(3):
        net.loss_and_grads(X, Y)
        g = backend.to_numpy(net.grads).copy() + 0.01 * w
        v = 0.9 * v + g
        w = w - 0.05 * ((g + 0.9 * v) if nesterov else v)
        net.train_step(X, Y, opt)
        np.testing.assert_allclose(backend.to_numpy(net.params), w, rtol=1e-12, atol=1e-14)


def test_adam_first_step_moves_each_weight_by_lr(backend):
    """At t = 1, m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps)."""
    net, X, Y = _net_with_grads(backend)
    w0 = backend.to_numpy(net.params).copy()
    net.loss_and_grads(X, Y)
    g = backend.to_numpy(net.grads).copy()
    net.train_step(X, Y, gpubp.Adam(lr=0.01, eps=1e-8))
    np.testing.assert_allclose(backend.to_numpy(net.params), w0 - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12, atol=1e-15)


def test_adam_recurrence_with_decay(backend):
    net, X, Y = _net_with_grads(backend)
    opt = gpubp.Adam(lr=0.02, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
    w = backend.to_numpy(net.params).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, 4):
        net.loss_and_grads(X, Y)
        g = backend.to_numpy(net.grads).copy() + 0.1 * w
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.02 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.9**t)) + 1e-6)
        net.train_step(X, Y, opt)
        np.testing.assert_allclose(backend.to_numpy(net.params), w, rtol=1e-11, atol=1e-14)


def test_adam_with_epsilon_hat_follows_the_papers_efficient_form(backend):
    """eps_hat=True: w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps) (scikit-learn's, TensorFlow's);
    eps is large here so that the two placements of epsilon give different weights."""
    net, X, Y = _net_with_grads(backend)
    plain = gpubp.MLP(**net.get_config())
    opt, opt_plain = gpubp.Adam(lr=0.02, betas=(0.8, 0.9), eps=1e-2, eps_hat=True), gpubp.Adam(0.02, (0.8, 0.9), 1e-2)
    w = backend.to_numpy(net.params).copy()
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, 4):
        net.loss_and_grads(X, Y)
        g = backend.to_numpy(net.grads).copy()
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.02 * np.sqrt(1 - 0.9**t) / (1 - 0.8**t) * m / (np.sqrt(v) + 1e-2)
        net.train_step(X, Y, opt)
        plain.train_step(X, Y, opt_plain)
        np.testing.assert_allclose(backend.to_numpy(net.params), w, rtol=1e-11, atol=1e-14)
    assert np.abs(backend.to_numpy(plain.params) - w).max() > 1e-4
    assert opt.get_config()["eps_hat"] is True and gpubp.Adam().eps_hat is False
    with pytest.raises(TypeError, match="eps_hat"):
        gpubp.Adam(eps_hat="yes")


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="lr"):
        gpubp.SGD(lr=0)
    with pytest.raises(ValueError, match="lr"):
        gpubp.Adam(lr=float("nan"))
    with pytest.raises(ValueError, match="momentum"):
        gpubp.SGD(0.1, momentum=1.5)
    with pytest.raises(ValueError, match="nesterov"):
        gpubp.SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        gpubp.Adam(betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="lr"):
        gpubp.SGD(lr="fast")
