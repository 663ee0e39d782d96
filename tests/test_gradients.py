"""Vectorized backprop against the tutorial-literal reference and finite differences."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import gpubp
from gpubp import reference
from gpubp.activations import ELEMENTWISE
from helpers import rel_err, targets

LOSS_HEADS = [
    ("sse", "sigmoid"),
    ("sse", "identity"),
    ("sse", "softmax"),
    ("mse", "identity"),
    ("mse", "tanh"),
    ("cross_entropy", "softmax"),
    ("binary_cross_entropy", "sigmoid"),
]
DEPTHS = {1: [4, 3], 2: [4, 5, 3], 3: [4, 6, 5, 3]}


def _compare(net, X, Y):
    C, grads = net.loss_and_grads(X, Y)
    C_ref, grads_ref = reference.net_loss_and_grads(net, X, Y)
    to_np = net.backend.to_numpy
    assert abs(C - C_ref) <= 1e-10 * abs(C_ref)
    for l, ((dW, db), (dW_ref, db_ref)) in enumerate(zip(grads, grads_ref), start=1):
        assert dW.shape == (net.sizes[l], net.sizes[l - 1])
        assert rel_err(to_np(dW), dW_ref) < 1e-10, f"dC/dW^({l})"
        if net.bias:
            assert rel_err(to_np(db), db_ref) < 1e-10, f"dC/db^({l})"
        else:
            assert db is None and db_ref is None


@pytest.mark.parametrize("activation", ELEMENTWISE)
@pytest.mark.parametrize("loss,output", LOSS_HEADS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_equal_tutorial_reference(backend, activation, loss, output, bias):
    rng = np.random.default_rng(abs(hash((activation, loss, output, bias))) % 2**32)
    net = gpubp.MLP(DEPTHS[2], activation=activation, output_activation=output, loss=loss,
                    dtype="float64", seed=3, bias=bias)
    X = rng.normal(size=(7, 4))
    _compare(net, X, targets(loss, 7, 3, rng))


@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("loss,output", LOSS_HEADS)
@pytest.mark.parametrize("bias", [True, False])
def test_gradients_equal_reference_at_every_depth(backend, depth, loss, output, bias):
    rng = np.random.default_rng(depth * 100 + len(loss))
    hidden = ["tanh", "gelu"][: depth - 1] if depth < 3 else ["tanh", "silu"]
    net = gpubp.MLP(DEPTHS[depth], activation=hidden, output_activation=output, loss=loss,
                    dtype="float64", seed=depth, bias=bias)
    _compare(net, rng.normal(size=(5, 4)), targets(loss, 5, 3, rng))


def test_gradcheck_detects_a_wrong_gradient(backend, monkeypatch):
    """gradcheck can fail: break the derivative of tanh and it must notice."""
    from gpubp import activations

    rng = np.random.default_rng(1)
    net = gpubp.MLP([3, 4, 2], activation="tanh", output_activation="identity", loss="sse", dtype="float64", seed=0)
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    assert gpubp.gradcheck(net, X, Y) < 1e-6
    broken = activations.Activation("tanh", lambda xp, Z: xp.tanh(Z), lambda xp, Z, A: 1.0 - A,
                                    "return tanh(z);", "return T(1) - a;")
    monkeypatch.setitem(activations.ACTIVATIONS, "tanh", broken)
    net_broken = gpubp.MLP([3, 4, 2], activation="tanh", output_activation="identity", loss="sse", dtype="float64", seed=0)
    assert gpubp.gradcheck(net_broken, X, Y) > 1e-2


def test_tutorial_example_output_weight_w12(backend):
    """MATH.md: dC_0/dw_12^(L) = 2 (a_1^(L) - y_1) g'^(L)(z_1^(L)) a_2^(L-1), averaged over n.

    The tutorial's 1-based j = 1, k = 2 is W[0, 1]; no bias, the tutorial's sse loss, sigmoid
    output. a^(L-1) and z^(L) are computed here by hand from the weights.
    """
    rng = np.random.default_rng(12)
    net = gpubp.MLP([3, 4, 2], activation="sigmoid", output_activation="sigmoid", loss="sse",
                    dtype="float64", seed=5, bias=False)
    n = 6
    X = rng.normal(size=(n, 3))
    Y = rng.uniform(size=(n, 2))
    to_np = net.backend.to_numpy
    W1, W2 = to_np(net.layers[1].W), to_np(net.layers[2].W)

    def sig(z):
        return 1.0 / (1.0 + np.exp(-z))

    a_Lm1 = sig(X @ W1.T)          # a^(L-1), one row per sample
    z_L = a_Lm1 @ W2.T             # z^(L)
    a_L = sig(z_L)
    g_prime = a_L * (1.0 - a_L)    # sigmoid'(z) = a (1 - a)
    expected = np.mean(2.0 * (a_L[:, 0] - Y[:, 0]) * g_prime[:, 0] * a_Lm1[:, 1])
    _, grads = net.loss_and_grads(X, Y)
    dW_L = to_np(grads[-1][0])
    assert dW_L[0, 1] == pytest.approx(expected, rel=1e-12)
    # and the loss is C = (1/n) sum_i sum_j (a_j - y_j)^2, with no factor 1/2
    C, _ = net.loss_and_grads(X, Y)
    assert C == pytest.approx(np.mean(np.sum((a_L - Y) ** 2, axis=1)), rel=1e-12)


def test_hot_path_equals_per_sample_outer_products(backend):
    """dC/dW = (1/n) Delta^T A equals the tutorial's average of per-sample outer products."""
    rng = np.random.default_rng(2)
    Delta, A = rng.normal(size=(33, 7)), rng.normal(size=(33, 5))
    xp = backend.xp
    out = xp.empty((7, 5))
    backend.ops.grad_weights(xp.asarray(Delta), xp.asarray(A), out=out)
    np.testing.assert_allclose(backend.to_numpy(out), reference.average_outer_products(Delta, A), rtol=1e-12)


def test_large_inputs_stay_finite(backend):
    """Saturated units (|z| ~ 1e3) give finite losses and gradients for every head."""
    for act, (loss, output) in itertools.product(ELEMENTWISE, LOSS_HEADS):
        net = gpubp.MLP([2, 3, 3], activation=act, output_activation=output, loss=loss, dtype="float64", seed=0)
        X = np.array([[1e3, -1e3], [-1e3, 1e3]])
        Y = targets(loss, 2, 3, np.random.default_rng(0))
        C, grads = net.loss_and_grads(X, Y)
        assert np.isfinite(C), (act, loss, output)
        for dW, _ in grads:
            assert np.all(np.isfinite(net.backend.to_numpy(dW))), (act, loss, output)
