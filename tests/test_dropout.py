"""Dropout: the counter-based generator, the masks it draws, training and inference modes."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp import philox, reference
from gpubp.layers import Dense, Dropout

# Random123's known-answer vectors for Philox4x64-10: (counter, key) -> four output words
KAT = [
    ([2**64 - 1] * 4, [2**64 - 1] * 2,
     [0x87B092C3013FE90B, 0x438C3C67BE8D0224, 0x9CC7D7C69CD777B6, 0xA09CAEBF594F0BA0]),
    ([0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89],
     [0x452821E638D01377, 0xBE5466CF34E90C6C],
     [0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6]),
]


@pytest.mark.parametrize("counter,key,words", KAT)
def test_philox_reference_and_numpy_give_the_known_answers(counter, key, words):
    assert reference.philox4x64(counter, key) == words
    # NumPy's Philox adds 1 to its counter before each block
    start = np.array(counter, dtype=np.uint64)
    start[0] -= np.uint64(1)
    raw = np.random.Philox(counter=start, key=np.array(key, dtype=np.uint64)).random_raw(4)
    assert [int(w) for w in raw] == words


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("offset", [0, 1, 7, 8, 13])
def test_host_stream_is_the_definition(dtype, offset):
    """Element e of call c is the number gpubp/philox.py defines, whatever the offset of the draw."""
    stream = philox.Stream(0xDEADBEEF12345678, 3)
    out = np.empty(29, dtype=dtype)
    stream.uniform_into(out, 9, offset)
    want = [reference.dropout_uniform(0xDEADBEEF12345678, 3, 9, offset + e, dtype) for e in range(29)]
    np.testing.assert_array_equal(out, np.array(want, dtype=dtype))


def test_masks_keep_with_probability_one_minus_p_and_scale_the_survivors():
    net = gpubp.MLP.from_layers(200, [Dense(300, "relu"), Dropout(0.3), Dense(2)], loss="mse", seed=0)
    net.forward(np.ones((100, 200)), training=True)
    M = net.layers[2].mask(100, dtype=np.float32)
    assert set(np.unique(M).tolist()) == {0.0, float(np.float32(1 / 0.7))}
    kept = float((M > 0).mean())  # 30000 draws: standard deviation 0.0026
    assert abs(kept - 0.7) < 0.015
    # kept entries are independent of position: every row and every column keeps about 70%
    assert abs((M > 0).mean(axis=1) - 0.7).max() < 0.15 and abs((M > 0).mean(axis=0) - 0.7).max() < 0.25


def test_forward_in_training_mode_multiplies_by_the_mask(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 5))
    net = gpubp.MLP.from_layers(5, [Dropout(0.4), Dense(3, "identity")], loss="mse", dtype="float64", seed=1)
    A = backend.to_numpy(net.forward(X, training=True))
    M = net.layers[1].mask(6)
    W, b = backend.to_numpy(net.layers[2].W), backend.to_numpy(net.layers[2].b)
    np.testing.assert_allclose(A, (X * M) @ W.T + b, rtol=1e-14)
    assert np.any(M == 0) and np.all((M == 0) | (M == 1 / 0.6))


def test_same_seed_same_masks_new_pass_new_mask(backend):
    X = np.ones((8, 4))
    layers = lambda: [Dense(50, "tanh"), Dropout(0.5), Dense(50, "tanh"), Dropout(0.5), Dense(2)]  # noqa: E731
    a = gpubp.MLP.from_layers(4, layers(), loss="mse", seed=7)
    b = gpubp.MLP.from_layers(4, layers(), loss="mse", seed=7)
    c = gpubp.MLP.from_layers(4, layers(), loss="mse", seed=8)
    outs = [backend.to_numpy(net.forward(X, training=True)) for net in (a, b, c)]
    np.testing.assert_array_equal(outs[0], outs[1])
    da, db, dc = (net.layers[2] for net in (a, b, c))
    np.testing.assert_array_equal(da.mask(8), db.mask(8))
    assert not np.array_equal(da.mask(8), dc.mask(8))
    assert not np.array_equal(da.mask(8), a.layers[4].mask(8))  # another layer, another stream
    a.forward(X, training=True)
    assert not np.array_equal(da.mask(8, call=0), da.mask(8, call=1))
    assert da.calls == 2 and db.calls == 1


def test_inference_mode_and_p_zero_are_the_identity(backend):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    net = gpubp.MLP([4, 6, 5, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=3, dropout=0.5)
    plain = gpubp.MLP([4, 6, 5, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=3)
    to_np = backend.to_numpy
    np.testing.assert_array_equal(to_np(net.params), to_np(plain.params))
    np.testing.assert_array_equal(to_np(net.forward(X)), to_np(plain.forward(X)))
    assert net.evaluate(X, y) == plain.evaluate(X, y)
    zero = gpubp.MLP.from_layers(4, [Dense(6, "tanh"), Dropout(0.0), Dense(5, "tanh"), Dense(3)], loss="cross_entropy",
                                 dtype="float64", seed=3)
    C0, g0 = zero.loss_and_grads(X, y)
    C1, g1 = plain.loss_and_grads(X, y)
    assert C0 == C1
    for (dW0, db0), (dW1, db1) in zip(g0, g1):
        np.testing.assert_array_equal(to_np(dW0), to_np(dW1))
        np.testing.assert_array_equal(to_np(db0), to_np(db1))
    assert zero.layers[2].calls == 0  # p = 0 draws nothing


def test_predict_with_training_true_samples_new_masks():
    """Monte Carlo dropout: predict(training=True) draws a new mask per call."""
    rng = np.random.default_rng(4)
    net = gpubp.MLP([4, 32, 2], activation="relu", loss="mse", dropout=0.5, seed=0)
    X = rng.normal(size=(3, 4))
    a, b = net.predict(X, training=True), net.predict(X, training=True)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(net.predict(X), net.predict(X))


def test_numpy_mask_array_is_the_size_of_the_output():
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([4, 32, 16, 2], dropout=0.5, seed=0)
    net.loss_and_grads(np.ones((10, 4)), np.zeros((10, 2)))
    ws = net.workspace(10)
    masks = [c.mask for c in ws.caches[1:] if getattr(c, "mask", None) is not None]
    assert [m.shape for m in masks] == [(10, 32), (10, 16)]
    assert not net.backend.ops.dropout_in_kernels
