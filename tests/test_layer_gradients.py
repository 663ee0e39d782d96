"""Gradients of networks with Dropout and BatchNorm against the tutorial-literal reference
(gpubp/reference.py, written from MATH.md) and PyTorch autograd, in float64 (relative error
< 1e-10), for several depths, with and without bias, in training and in inference mode; the
running statistics against BatchNorm1d's; gradcheck with every layer type."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp import reference
from gpubp.layers import BatchNorm, Dense, Dropout

from helpers import LAYER_ARCHS, rel_err
from layer_oracles import torch_loss_and_grads

HEADS = [("cross_entropy", None), ("sse", "sigmoid"), ("mse", None), ("binary_cross_entropy", None)]


def _targets(loss, n, rng):
    if loss == "cross_entropy":
        return rng.integers(0, 3, n)
    if loss == "binary_cross_entropy":
        return rng.uniform(size=(n, 3))
    return rng.normal(size=(n, 3))


def _net(arch, bias, loss, output, seed=5):
    layers = LAYER_ARCHS[arch](bias)
    if output is not None:
        layers[-1] = Dense(3, output, bias=bias)
    return gpubp.MLP.from_layers(4, layers, loss=loss, dtype="float64", seed=seed)


def _next_masks(net, n):
    return [layer.mask(n, call=layer.calls) for layer in net.layers if isinstance(layer, Dropout) and layer.p > 0]


def _flat(grads):
    return [g for pair in grads for g in pair if g is not None]


def _structural_zeros(net, training):
    """Per entry of :func:`_flat`: whether the gradient is 0 but for rounding (the bias of a Dense
    layer without activation whose output a BatchNorm on batch statistics centres: the mean removes the bias)."""
    flags = []
    layers = net.layers[1:]
    for i, layer in enumerate(layers):
        if isinstance(layer, Dense):
            flags.append(False)
            if layer.b is not None:
                flags.append(training and layer.activation is None and i + 1 < len(layers)
                             and isinstance(layers[i + 1], BatchNorm))
        elif isinstance(layer, BatchNorm):
            flags += [False, False]
    return flags


def _assert_grads_equal(got, want, zeros, what):
    scale = max(np.abs(np.asarray(g)).max() for g in want)
    for i, (g, w, zero) in enumerate(zip(got, want, zeros)):
        if zero:  # compared absolutely: rounding of terms of the gradients' size that cancel
            assert np.abs(np.asarray(g)).max() <= 1e-14 * scale and np.abs(w).max() <= 1e-14 * scale, (what, i)
        else:
            assert rel_err(g, w) < 1e-10, f"gradient {i} against {what}: {rel_err(g, w):.2e}"


@pytest.mark.parametrize("arch", sorted(LAYER_ARCHS))
@pytest.mark.parametrize("loss,output", HEADS)
@pytest.mark.parametrize("bias", [True, False])
def test_training_gradients_equal_reference_and_torch(backend, arch, loss, output, bias):
    pytest.importorskip("torch")
    rng = np.random.default_rng(abs(hash((arch, loss, bias))) % 2**32)
    net = _net(arch, bias, loss, output)
    n = 9
    X = rng.normal(1.0, 2.0, size=(n, 4))
    Y = _targets(loss, n, rng)
    net.forward(X, training=True)  # one pass first: the running statistics and streams move on
    masks = _next_masks(net, n)
    C_t, grads_t, stats_t, _ = torch_loss_and_grads(net, X, Y, masks, training=True)
    C, grads = net.loss_and_grads(X, Y)
    drawn = [layer.mask(n) for layer in net.layers if isinstance(layer, Dropout) and layer.p > 0]
    assert all(np.array_equal(a, b) for a, b in zip(drawn, masks))  # the pass drew the masks torch used
    C_ref, grads_ref = reference.net_loss_and_grads(net, X, Y)  # the masks of the pass just made
    to_np = net.backend.to_numpy
    got = [to_np(g) for g in _flat(grads)]
    assert len(got) == len(_flat(grads_ref)) == len(_flat(grads_t))
    assert abs(C - C_ref) <= 1e-10 * abs(C_ref) and abs(C - C_t) <= 1e-10 * abs(C_t)
    zeros = _structural_zeros(net, True)
    assert len(zeros) == len(got)
    _assert_grads_equal(got, _flat(grads_ref), zeros, "the reference")
    _assert_grads_equal(got, _flat(grads_t), zeros, "torch")
    bns = [layer for layer in net.layers if isinstance(layer, BatchNorm)]
    for bn, (rm, rv) in zip(bns, stats_t):
        assert rel_err(to_np(bn.running_mean), rm) < 1e-12 or np.abs(rm).max() == 0
        assert rel_err(to_np(bn.running_var), rv) < 1e-12


@pytest.mark.parametrize("arch", sorted(LAYER_ARCHS))
@pytest.mark.parametrize("bias", [True, False])
def test_inference_outputs_and_gradients_equal_torch_eval(backend, arch, bias):
    pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    net = _net(arch, bias, "cross_entropy", None)
    for _ in range(3):  # running statistics away from their initial 0 and 1
        net.forward(rng.normal(0.5, 3.0, size=(16, 4)), training=True)
    X, y = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    state = net.backend.to_numpy(net.state).copy()
    calls = [layer.calls for layer in net.layers if isinstance(layer, Dropout)]
    A = net.backend.to_numpy(net.forward(X))
    C, grads = net.loss_and_grads(X, y, training=False)
    C_t, grads_t, _, A_t = torch_loss_and_grads(net, X, y, training=False)
    C_ref, grads_ref = reference.net_loss_and_grads(net, X, y, training=False)
    assert rel_err(A, A_t) < 1e-12
    assert abs(C - C_t) <= 1e-10 * abs(C_t) and abs(C - C_ref) <= 1e-10 * abs(C_ref)
    got = [net.backend.to_numpy(g) for g in _flat(grads)]
    zeros = _structural_zeros(net, False)
    _assert_grads_equal(got, _flat(grads_ref), zeros, "the reference")
    _assert_grads_equal(got, _flat(grads_t), zeros, "torch")
    # inference passes change no state
    np.testing.assert_array_equal(net.backend.to_numpy(net.state), state)
    assert calls == [layer.calls for layer in net.layers if isinstance(layer, Dropout)]


@pytest.mark.parametrize("loss,output", HEADS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_shortcut_networks_equal_reference(backend, loss, output, depth):
    rng = np.random.default_rng(depth)
    sizes = [4, 6, 5, 4][: depth + 1] + [3]
    net = gpubp.MLP(sizes, activation="tanh", output_activation=output, loss=loss, dtype="float64", seed=1,
                    dropout=0.3, batch_norm=True)
    X, Y = rng.normal(size=(8, 4)), _targets(loss, 8, rng)
    C, grads = net.loss_and_grads(X, Y)
    C_ref, grads_ref = reference.net_loss_and_grads(net, X, Y)
    assert abs(C - C_ref) <= 1e-10 * abs(C_ref)
    _assert_grads_equal([net.backend.to_numpy(g) for g in _flat(grads)], _flat(grads_ref),
                        _structural_zeros(net, True), "the reference")


@pytest.mark.parametrize("arch", sorted(LAYER_ARCHS))
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_with_every_layer_type(backend, arch, training):
    rng = np.random.default_rng(4)
    layers = LAYER_ARCHS[arch](True)
    # smooth activations only: finite differences across a ReLU kink are not derivatives
    for layer in layers:
        if getattr(layer, "_activation", None) is not None and layer._activation.name in ("relu", "elu"):
            layer._activation = gpubp.activations.ACTIVATIONS["tanh"]
    net = gpubp.MLP.from_layers(4, layers, loss="cross_entropy", dtype="float32", seed=2)
    X, y = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
    net.forward(X, training=True)
    state, calls = net.backend.to_numpy(net.state).copy(), [getattr(layer, "calls", 0) for layer in net.layers]
    # floor 1e-4: a bias just before a BatchNorm has gradient 0, whose difference quotient is
    # rounding noise of about 1e-16 C / eps = 1e-11
    assert gpubp.gradcheck(net, X, y, training=training, floor=1e-4) < 1e-6
    # the check leaves the network as it was
    np.testing.assert_array_equal(net.backend.to_numpy(net.state), state)
    assert calls == [getattr(layer, "calls", 0) for layer in net.layers]


def test_gradcheck_sees_a_wrong_batch_norm_backward(backend, monkeypatch):
    """gradcheck can fail: drop the coupling terms of BatchNorm's backward pass and it notices."""
    rng = np.random.default_rng(5)
    net = gpubp.MLP([4, 6, 3], activation="tanh", loss="mse", batch_norm=True, dtype="float64", seed=0)
    X, Y = rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    assert gpubp.gradcheck(net, X, Y, floor=1e-4) < 1e-6
    ops = type(net.backend.ops)
    original = ops.batch_norm_backward

    def uncoupled(self, Delta, Xhat, s1, s2, gamma, inv_std, rows, training, *args, **kwargs):
        return original(self, Delta, Xhat, s1, s2, gamma, inv_std, rows, False, *args, **kwargs)

    monkeypatch.setattr(ops, "batch_norm_backward", uncoupled)
    assert gpubp.gradcheck(net, X, Y, floor=1e-4) > 1e-2
