"""net.trace: copies of Z^(l), A^(l), Delta^(l), dC/dW^(l), dC/db^(l) of the network's own pass,
against the tutorial-literal reference (per sample, per node) and loss_and_grads; the pass leaves
the network as it was."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gpubp
from gpubp import reference
from gpubp.layers import BatchNorm, Dense, Dropout

from helpers import rel_err


def _layers():
    return [Dense(6, "tanh"), Dropout(0.3), Dense(5, None, bias=False), BatchNorm(activation="relu"), Dropout(0.2),
            Dense(4, "sigmoid"), Dense(3)]


@pytest.mark.parametrize("training", [True, False])
def test_trace_is_the_pass_of_the_reference(backend, training):
    rng = np.random.default_rng(0)
    net = gpubp.MLP.from_layers(4, _layers(), loss="cross_entropy", dtype="float64", seed=1)
    X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    net.loss_and_grads(X, y)  # a step before: the BatchNorm shift of a previous batch, a later mask
    before = (backend.to_numpy(net.params).copy(), backend.to_numpy(net.state).copy(), json.dumps(net.host_state()))
    tr = net.trace(X, y, training=training)
    assert (backend.to_numpy(net.params) == before[0]).all() and (backend.to_numpy(net.state) == before[1]).all()
    assert json.dumps(net.host_state()) == before[2]
    assert len(tr) == net.L == 4 and [t.l for t in tr] == [1, 2, 3, 4] and tr.n == 8
    C, grads = net.loss_and_grads(X, y, training=training)  # the same pass (the same masks)
    assert tr.C == C
    dense_grads = [g for layer, g in zip([x for x in net.layers[1:] if x.param_specs()], grads) if isinstance(layer, Dense)]
    # the reference, one sample at a time (its Dropout takes the mask of that last pass)
    to_np = backend.to_numpy
    layers = [layer.reference(to_np, training, 8) for layer in net.layers[1:]]
    C_ref, _ = reference.layers_loss_and_grads(layers, "cross_entropy", X, y)
    assert abs(tr.C - C_ref) < 1e-12 * abs(C_ref)
    refs = [layer for layer in layers if isinstance(layer, reference.RefDense)]
    for t, ref, (dW, db) in zip(tr, refs, dense_grads):
        assert rel_err(to_np(t.Z), ref.z) < 1e-12 and rel_err(to_np(t.A), ref.a) < 1e-12
        assert rel_err(to_np(t.A_prev), ref.inputs) < 1e-12
        assert rel_err(to_np(t.Delta), ref.dz) < 1e-12
        if t.l < net.L:
            assert rel_err(to_np(t.dA), ref.d_out) < 1e-12
        else:
            assert t.dA is None
        assert (to_np(t.dW) == to_np(dW)).all()
        assert (t.db is None) == (db is None) and (db is None or (to_np(t.db) == to_np(db)).all())
    if not training:
        assert rel_err(to_np(tr[4].A), to_np(net.forward(X))) < 1e-15


def test_trace_arrays_are_copies():
    rng = np.random.default_rng(1)
    net = gpubp.MLP([4, 5, 3], loss="sse", dtype="float64", seed=0)
    X, Y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    tr = net.trace(X, Y)
    kept = {name: getattr(tr[1], name).copy() for name in ("Z", "A", "Delta", "dW", "db", "dA")}
    net.loss_and_grads(rng.normal(size=(6, 4)), rng.normal(size=(6, 3)))  # the same workspace, new numbers
    for name, value in kept.items():
        assert (getattr(tr[1], name) == value).all(), name
    assert tr[1].dW is not net.layers[1].dW


def test_trace_steps_show_every_layer():
    rng = np.random.default_rng(2)
    net = gpubp.MLP.from_layers(4, _layers(), loss="mse", dtype="float64", seed=1)
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    tr = net.trace(X, Y)
    assert [type(s.layer).__name__ for s in tr.steps] == ["Dense", "Dropout", "Dense", "BatchNorm", "Dropout", "Dense",
                                                           "Dense"]
    dense, fused, bn = tr.steps[0], tr.steps[1], tr.steps[3]
    assert "mask" in dense.arrays and dense.draw is not None  # the Dropout after tanh runs in its activation pass
    assert fused.draw is None and fused.arrays == {}
    assert set(bn.arrays) == {"Xhat", "Y", "A", "mean", "inv_std", "mask", "out"}
    # the dropped output is the activation times the mask; the layer above read it
    assert (dense.arrays["out"] == dense.arrays["A"] * dense.arrays["mask"]).all()
    assert (tr.steps[2].input == dense.arrays["out"]).all()
    assert tr.step(net.layers[4]) is bn and set(bn.grads) == {"gamma", "beta"}
    with pytest.raises(IndexError, match="l = 1..4"):
        tr[0]
    assert "Trace(L=4, n=5" in repr(tr)
