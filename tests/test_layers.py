"""The layer protocol: networks as sequences of layer objects, the two ways to build one, the
flat buffers and their initialisation, and a network of Dense layers giving the numbers it gave
before layers existed."""
from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import gpubp
from gpubp import parameters
from gpubp.layers import BatchNorm, Dense, Dropout, Input, Layer, layer_from_config

DATA = Path(__file__).with_name("data")


def test_net_layers_are_the_layer_objects(backend):
    layers = [Dense(6, "relu"), Dropout(0.2), Dense(5, None), BatchNorm(activation="tanh"), Dense(3, "softmax")]
    net = gpubp.MLP.from_layers(4, layers, loss="cross_entropy", dtype="float64", seed=0)
    assert isinstance(net.layers[0], Input) and net.layers[0].W is None and net.layers[0].size == 4
    assert all(a is b for a, b in zip(net.layers[1:], layers))
    assert [layer.index for layer in net.layers] == list(range(6))
    assert isinstance(net.layers[1], Dense) and isinstance(net.layers[1], Layer)
    d1, drop, d2, bn, d3 = layers
    assert (d1.l, d2.l, d3.l) == (1, 2, 3) and net.L == 3 and net.sizes == (4, 6, 5, 3)
    assert d1.W.shape == (6, 4) and d2.W.shape == (5, 6) and d3.W.shape == (3, 5)
    assert bn.gamma.shape == bn.beta.shape == bn.running_mean.shape == bn.running_var.shape == (5,)
    assert net.n_params == 6 * 4 + 6 + 5 * 6 + 5 + 2 * 5 + 3 * 5 + 3 == net.params.size
    assert net.state.size == 15  # running mean, running variance, the last batch mean
    # views into the flat buffers, in layer order: d1.W, d1.b, d2.W, d2.b, gamma, beta, d3.W, d3.b
    bn.gamma[2] = 7.0
    assert float(net.params[24 + 6 + 30 + 5 + 2]) == 7.0
    bn.running_var[1] = 3.0
    assert float(net.state[5 + 1]) == 3.0
    net.grads[...] = 0
    bn.dbeta[4] = 2.0
    assert float(net.grads[24 + 6 + 30 + 5 + 5 + 4]) == 2.0
    # gamma = 1, beta = 0, running mean 0, running variance 1 to begin with
    to_np = backend.to_numpy
    assert np.all(to_np(bn.beta) == 0) and np.all(to_np(net.state)[:5] == 0)
    assert [a.name for a in net.activations] == ["relu", "tanh", "softmax"]
    assert drop.fused_into is d1 and d1.dropout is drop
    assert "Dropout(p=0.2)" in repr(net) and "BatchNorm" in repr(net)


def test_shortcuts_lay_out_the_layers():
    net = gpubp.MLP([8, 7, 6, 3], activation=["relu", "tanh"], loss="mse", dropout=0.3, batch_norm=True, seed=0)
    kinds = [(type(layer).__name__, getattr(layer.activation, "name", None)) for layer in net.layers[1:]]
    assert kinds == [("Dense", None), ("BatchNorm", "relu"), ("Dropout", None), ("Dense", None),
                     ("BatchNorm", "tanh"), ("Dropout", None), ("Dense", "identity")]
    assert [layer.p for layer in net.layers if isinstance(layer, Dropout)] == [0.3, 0.3]
    assert net.layers[2].dropout is net.layers[3]  # the dropout rides in BatchNorm's activation pass
    # He for the ReLU layer's weights even though its activation sits in the BatchNorm
    assert [s.init for s in net.layers[1].param_specs()] == ["he", "zeros"]
    assert [a.name for a in net.activations] == ["relu", "tanh", "identity"]
    plain = gpubp.MLP([8, 7, 6, 3], activation=["relu", "tanh"], loss="mse", seed=0)
    assert all(isinstance(layer, Dense) for layer in plain.layers[1:])
    drop_only = gpubp.MLP([8, 7, 3], dropout=0.5, seed=0)
    assert [type(layer).__name__ for layer in drop_only.layers[1:]] == ["Dense", "Dropout", "Dense"]


def test_from_layers_equals_the_constructor_bit_for_bit(backend):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)), rng.integers(0, 4, 40)
    a = gpubp.MLP([6, 9, 7, 4], activation=["tanh", "relu"], loss="cross_entropy", seed=3)
    b = gpubp.MLP.from_layers(6, [Dense(9, "tanh"), Dense(7, "relu"), Dense(4)], loss="cross_entropy", seed=3)
    to_np = backend.to_numpy
    np.testing.assert_array_equal(to_np(a.params), to_np(b.params))
    assert b.layers[3].activation.name == "softmax"  # the loss's natural output activation
    Ca, ga = a.loss_and_grads(X, y)
    Cb, gb = b.loss_and_grads(X, y)
    assert Ca == Cb
    for (dWa, dba), (dWb, dbb) in zip(ga, gb):
        np.testing.assert_array_equal(to_np(dWa), to_np(dWb))
        np.testing.assert_array_equal(to_np(dba), to_np(dbb))
    a.fit(X, y, epochs=2, batch_size=8, progress=False)
    b.fit(X, y, epochs=2, batch_size=8, progress=False)
    np.testing.assert_array_equal(to_np(a.params), to_np(b.params))


def _pinned_step(net, X, Y):
    """The training pass of a network of Dense layers as it was written before layers existed,
    op for op (forward, loss head, backward from the top), on the network's own ops and buffers."""
    ops, L = net.backend.ops, net.L
    ws = net.workspace(X.shape[0])
    W = [None] + [d.W for d in net.layers[1:]]
    b = [None] + [d.b for d in net.layers[1:]]
    acts = [None] + list(net.activations)
    A_prev = X
    for l in range(1, L + 1):
        ops.layer_forward(A_prev, W[l], b[l], acts[l], ws.Z[l], ws.A[l])
        A_prev = ws.A[l]
    C = ops.loss_head(net.loss, acts[L], ws.Z[L], ws.A[L], Y, ws.Delta[L])
    grads = []
    for l in range(L, 0, -1):
        dW = np.empty_like(W[l])
        ops.grad_weights(ws.Delta[l], ws.A[l - 1] if l > 1 else X, out=dW)
        db = None
        if b[l] is not None:
            db = np.empty_like(b[l])
            ops.grad_bias(ws.Delta[l], out=db)
        if l > 1:
            ops.backprop_linear(ws.Delta[l], W[l], out=ws.Delta[l - 1])
            ops.activation_backward(ws.Delta[l - 1], ws.Z[l - 1], ws.A[l - 1], acts[l - 1], out=ws.Delta[l - 1])
        grads.insert(0, (dW, db))
    return C, grads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss,hidden,bias", [("cross_entropy", ["relu", "gelu"], True), ("sse", ["tanh", "silu"], False),
                                              ("mse", ["elu", "relu"], True), ("binary_cross_entropy", ["sigmoid", "relu"], True)])
def test_dense_networks_give_the_numbers_they_gave_before_layers(dtype, loss, hidden, bias):
    rng = np.random.default_rng(1)
    n = 300  # large enough for the direct BLAS products at 784 inputs
    X = rng.normal(size=(n, 784)).astype(dtype)
    Y = rng.integers(0, 10, n) if loss == "cross_entropy" else rng.uniform(size=(n, 10)).astype(dtype)
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([784, 64, 32, 10], activation=hidden, loss=loss, dtype=dtype, seed=2, bias=bias)
    C_pin, grads_pin = _pinned_step(net, X, Y)
    C, grads = net.loss_and_grads(X, Y)
    assert C == float(C_pin)
    for (dW, db), (dW_pin, db_pin) in zip(grads, grads_pin):
        np.testing.assert_array_equal(dW, dW_pin)
        assert (db is None) == (db_pin is None) == (not bias)
        if bias:
            np.testing.assert_array_equal(db, db_pin)


# sha256 of the float32 parameters of MLP([64, 32, 16, 10], loss="cross_entropy", seed=0) and of
# MLP([30, 20, 5], activation="tanh", dtype="float64", seed=7, bias=False) as gpubp drew them
# before layers existed (one float64 draw per weight matrix, cast at the end)
INIT_SHA256 = {
    "relu-f32": "f2056d22fbe48a7ffd297a63831512ea99b87db2798d78d66d561d37d4908338",
    "tanh-f64": "124e7a5c4aa6a8ecdb1172033657f2b92e41d5fbc14e0a491fa20545861ffead",
}


def test_initialisation_draws_the_numbers_it_always_drew():
    with gpubp.use_backend("numpy"):
        a = gpubp.MLP([64, 32, 16, 10], loss="cross_entropy", seed=0)
        b = gpubp.MLP([30, 20, 5], activation="tanh", dtype="float64", seed=7, bias=False)
    assert hashlib.sha256(a.params.tobytes()).hexdigest() == INIT_SHA256["relu-f32"]
    assert hashlib.sha256(b.params.tobytes()).hexdigest() == INIT_SHA256["tanh-f64"]


@pytest.mark.parametrize("sizes,dtype", [([600, 1000, 300], "float32"), ([2, 70000, 3], "float64")])
def test_chunked_initialisation_equals_one_draw_per_layer(monkeypatch, sizes, dtype):
    """Drawn in chunks (some smaller than a row), the numbers are those of one float64 draw per
    weight matrix, cast into the network's dtype."""
    monkeypatch.setattr(parameters, "CHUNK", 5000)
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP(sizes, activation="relu", output_activation="tanh", dtype=dtype, seed=11)
    rng = np.random.default_rng(11)
    W1 = rng.normal(0.0, np.sqrt(2.0 / sizes[0]), size=(sizes[1], sizes[0]))
    limit = np.sqrt(6.0 / (sizes[1] + sizes[2]))
    W2 = rng.uniform(-limit, limit, size=(sizes[2], sizes[1]))
    np.testing.assert_array_equal(net.layers[1].W, W1.astype(dtype))
    np.testing.assert_array_equal(net.layers[2].W, W2.astype(dtype))
    assert np.all(net.layers[1].b == 0) and np.all(net.layers[2].b == 0)


def test_building_peaks_at_the_parameters_and_gradients():
    """A 2000 x 2000 float32 layer: 16 MB of parameters, 16 MB of gradients, one 2 MB chunk
    of float64 draws in flight; no float64 copy of the whole network, no concatenation."""
    with gpubp.use_backend("numpy"):
        tracemalloc.start()
        try:
            net = gpubp.MLP([2000, 2000], dtype="float32", seed=0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    P = net.params.nbytes
    assert peak <= 2 * P + parameters.CHUNK * 8 + (1 << 20), f"peak {peak / 1e6:.1f} MB for {P / 1e6:.1f} MB"


def test_a_layer_belongs_to_one_network():
    d = Dense(3, "relu")
    gpubp.MLP.from_layers(2, [d, Dense(1)], loss="mse")
    with pytest.raises(ValueError, match="already belongs to a network"):
        gpubp.MLP.from_layers(2, [d, Dense(1)], loss="mse")
    e = Dense(3)
    with pytest.raises(ValueError, match="same object"):
        gpubp.MLP.from_layers(3, [e, e, Dense(1)], loss="mse")


def test_a_network_that_cannot_be_allocated_leaves_its_layer_objects_as_they_came():
    """Out of memory after connecting (a Dropout fused into the Dense before it, the output layer
    given the loss's activation): the objects are as they were, and a network built from them
    again is the network built from new ones."""
    first, drop, out = Dense(4, "relu"), Dropout(0.5), Dense(10**7)
    before = [dict(layer.__dict__) for layer in (first, drop, out)]
    with pytest.raises(gpubp.OutOfMemoryError, match="choose smaller sizes"):
        gpubp.MLP.from_layers(10**7, [Dense(10**6, "relu"), BatchNorm(), first, drop, out], loss="cross_entropy")
    assert first.dropout is None and out.activation is None and drop.fused_into is None
    assert [layer.__dict__ for layer in (first, drop, out)] == before
    X, Y = np.ones((4, 3)), np.zeros((4, 2))
    reused = gpubp.MLP.from_layers(3, [first, Dense(2)], loss="mse", seed=0, dtype="float64")
    fresh = gpubp.MLP.from_layers(3, [Dense(4, "relu"), Dense(2)], loss="mse", seed=0, dtype="float64")
    assert [float(reused.loss_and_grads(X, Y)[0]) for _ in range(2)] == [float(fresh.loss_and_grads(X, Y)[0])] * 2


def test_from_layers_errors_change_nothing():
    layers = [Dense(4, "relu"), Dropout(0.1)]
    with pytest.raises(ValueError, match="last layer must be a Dense"):
        gpubp.MLP.from_layers(3, layers, loss="mse")
    assert all(layer._network is None for layer in layers)
    with pytest.raises(ValueError, match="needs output_activation='softmax'"):
        gpubp.MLP.from_layers(3, [Dense(2, "sigmoid")], loss="cross_entropy")
    with pytest.raises(ValueError, match="elementwise"):
        gpubp.MLP.from_layers(3, [Dense(4, "softmax"), Dense(2)], loss="mse")
    with pytest.raises(TypeError, match="layers\\[1\\] must be"):
        gpubp.MLP.from_layers(3, [Dense(4), "relu", Dense(2)], loss="mse")
    with pytest.raises(TypeError, match="non-empty list"):
        gpubp.MLP.from_layers(3, [], loss="mse")
    with pytest.raises(ValueError, match="float32"):
        gpubp.MLP.from_layers(3, [Dense(2)], loss="mse", dtype="float16")
    with pytest.raises(ValueError, match="p must lie in"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="p must lie in"):
        gpubp.MLP([3, 4, 2], dropout=-0.1)
    with pytest.raises(TypeError, match="batch_norm"):
        gpubp.MLP([3, 4, 2], batch_norm="yes")
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(momentum=1.5)
    with pytest.raises(ValueError, match="eps"):
        BatchNorm(eps=0.0)
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    with pytest.raises(ValueError, match="init"):
        Dense(3, init="lecun")
    with pytest.raises(ValueError, match="unknown layer type"):
        layer_from_config({"type": "Conv2d"})


@pytest.mark.parametrize("make", [
    lambda: gpubp.MLP([5, 6, 3], activation="tanh", loss="mse", dropout=0.25, batch_norm=True, seed=4),
    lambda: gpubp.MLP.from_layers(5, [BatchNorm(), Dense(6, "relu"), Dropout(0.5), Dense(3, "sigmoid")], seed=4,
                                  dtype="float64"),
])
def test_config_round_trip(make):
    net = make()
    twin = gpubp.MLP.from_config(net.get_config())
    assert twin.get_config() == net.get_config()
    np.testing.assert_array_equal(twin.params, net.params)
    assert [type(a) for a in twin.layers] == [type(a) for a in net.layers]


def test_a_checkpoint_written_before_layers_still_loads():
    """tests/data/checkpoint-v1.npz: format version 1, written by gpubp before this change
    (MLP([64, 12, 10], activation="tanh", loss="cross_entropy", seed=5) after 2 epochs of Adam)."""
    from gpubp.data import load_digits

    X, y = load_digits()
    with gpubp.use_backend("numpy"):
        net = gpubp.load(DATA / "checkpoint-v1.npz")
        opt = gpubp.load_optimizer(DATA / "checkpoint-v1.npz", net)
    assert net.sizes == (64, 12, 10) and net.epoch == 2 and opt.t == 8
    assert [type(layer) for layer in net.layers[1:]] == [Dense, Dense] and net.state.size == 0
    np.testing.assert_array_equal(net.forward(X[:5]), np.load(DATA / "checkpoint-v1-forward.npy"))
    net.fit(X[:200], y[:200], epochs=3, batch_size=50, optimizer=opt, initial_epoch=net.epoch, progress=False)
    assert net.epoch == 3 and opt.t == 12
