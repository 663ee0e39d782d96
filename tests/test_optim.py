"""Optimizers against their closed forms, on the flat parameter buffer."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from helpers import snapshot


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
    assert gpubp.AdamW(eps_hat=True).get_config()["eps_hat"] is True and gpubp.AdamW().eps_hat is False
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


# ---- hyper-parameters assigned after construction ------------------------------------------
NAN, INF = float("nan"), float("inf")
BAD_ASSIGNMENTS = [
    # (optimizer, attribute, value, error, fragment of the message)
    (lambda: gpubp.SGD(0.1), "lr", "0.01", TypeError, "lr"),
    (lambda: gpubp.SGD(0.1), "lr", None, TypeError, "lr"),
    (lambda: gpubp.SGD(0.1), "lr", NAN, ValueError, "lr"),
    (lambda: gpubp.SGD(0.1), "lr", INF, ValueError, "lr"),
    (lambda: gpubp.SGD(0.1), "lr", 0, ValueError, "lr"),
    (lambda: gpubp.SGD(0.1), "lr", -0.1, ValueError, "lr"),
    (lambda: gpubp.Adam(), "lr", "0.01", TypeError, "lr"),
    (lambda: gpubp.Adam(), "lr", None, TypeError, "lr"),
    (lambda: gpubp.Adam(), "lr", -INF, ValueError, "lr"),
    (lambda: gpubp.Adam(), "eps", 0, ValueError, "eps"),
    (lambda: gpubp.Adam(), "eps", NAN, ValueError, "eps"),
    (lambda: gpubp.SGD(0.1, momentum=0.9), "momentum", 1.5, ValueError, "momentum"),
    (lambda: gpubp.SGD(0.1, momentum=0.9), "momentum", -0.1, ValueError, "momentum"),
    (lambda: gpubp.SGD(0.1, momentum=0.9, nesterov=True), "momentum", 0.0, ValueError, "nesterov"),
    (lambda: gpubp.SGD(0.1), "nesterov", True, ValueError, "nesterov"),
    (lambda: gpubp.SGD(0.1, momentum=0.9), "nesterov", "yes", TypeError, "nesterov"),
    (lambda: gpubp.SGD(0.1), "weight_decay", -1, ValueError, "weight_decay"),
    (lambda: gpubp.Adam(), "weight_decay", -1, ValueError, "weight_decay"),
    (lambda: gpubp.Adam(), "betas", (0.9, 1.5), ValueError, "betas"),
    (lambda: gpubp.Adam(), "betas", (0.9,), TypeError, "betas"),
    (lambda: gpubp.Adam(), "betas", 0.9, TypeError, "betas"),
    (lambda: gpubp.SGD(0.1, momentum=0.9), "t", -1, ValueError, "t"),
    (lambda: gpubp.Adam(), "t", -1, ValueError, "t"),
    (lambda: gpubp.Adam(), "t", 1.5, TypeError, "t"),
    (lambda: gpubp.Adam(), "t", "3", TypeError, "t"),
]


@pytest.mark.parametrize("make,attr,value,exc,fragment", BAD_ASSIGNMENTS,
                         ids=[f"{i}-{c[1]}-{c[2]!r}" for i, c in enumerate(BAD_ASSIGNMENTS)])
def test_bad_hyperparameter_assignments_are_refused_like_the_constructor_and_change_nothing(
        backend, make, attr, value, exc, fragment):
    net, X, Y = _net_with_grads(backend)
    opt = make()
    net.train_step(X, Y, opt)  # a step count and moment buffers to keep
    before, config = snapshot(net, opt), opt.get_config()
    with pytest.raises(exc) as info:
        setattr(opt, attr, value)
    assert fragment in str(info.value)
    assert snapshot(net, opt) == before and opt.get_config() == config
    if attr != "t":  # the same check, and the same message, as the constructor's
        with pytest.raises(exc) as made:
            type(opt)(**dict(config, **{attr: value}))
        assert str(made.value) == str(info.value)
    net.train_step(X, Y, opt)  # the optimizer still works, with its old values
    assert opt.t == before.t + 1


def test_good_assignments_take_effect(backend):
    net, X, Y = _net_with_grads(backend)
    opt = gpubp.SGD(lr=0.1)
    opt.lr = 0.5
    opt.momentum = 0.9  # a velocity buffer from the next step on, as if given to the constructor
    ref_net, _, _ = _net_with_grads(backend)
    ref = gpubp.SGD(lr=0.5, momentum=0.9)
    for _ in range(3):
        net.train_step(X, Y, opt)
        ref_net.train_step(X, Y, ref)
    assert snapshot(net, opt) == snapshot(ref_net, ref)
    with pytest.raises(AttributeError, match="no hyper-parameter 'betas'"):
        opt.hyper.betas = (0.9, 0.99)
    adam = gpubp.Adam()
    adam.betas = [0.8, 0.9]
    assert adam.betas == (0.8, 0.9) and adam.get_config()["betas"] == [0.8, 0.9]


@pytest.mark.parametrize("make,buffer", [(lambda: gpubp.Adam(), "v"), (lambda: gpubp.Adam(), "m"),
                                         (lambda: gpubp.SGD(0.1, momentum=0.9), "velocity")])
@pytest.mark.parametrize("bad", ["shape", "dtype"])
def test_an_update_checks_its_buffers_before_it_changes_anything(backend, make, buffer, bad):
    net, X, Y = _net_with_grads(backend)
    opt = make()
    net.train_step(X, Y, opt)
    xp = net.backend.xp
    opt.state[buffer] = xp.zeros(3) if bad == "shape" else xp.zeros(net.params.size, dtype=np.float32)
    net.loss_and_grads(X, Y)
    before = snapshot(net, opt)
    with pytest.raises(ValueError, match="one optimizer per network"):
        opt.step(net)
    assert snapshot(net, opt) == before


def test_a_negative_step_count_in_a_checkpoint_is_refused(tmp_path):
    net, X, Y = _net_with_grads(gpubp.get_backend())
    opt = gpubp.Adam()
    net.train_step(X, Y, opt)
    opt._t = -1  # what a forged or corrupted file could hold (assignment refuses it)
    net.save(tmp_path / "m.npz", optimizer=opt)
    with pytest.raises(gpubp.CheckpointError, match="t = -1"):
        gpubp.load_optimizer(tmp_path / "m.npz", net)
    fresh = gpubp.Adam()
    with pytest.raises(gpubp.CheckpointError, match="t = -1"):
        gpubp.load(tmp_path / "m.npz", optimizer=fresh)
    assert fresh.t == 0 and fresh.state == {}
