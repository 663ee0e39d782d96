"""Property-based: any stack of Dense, Dropout and BatchNorm layers gives the loss and gradients
of the tutorial-literal reference, in training and in inference mode."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="these tests need hypothesis (the test extra)")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gpubp  # noqa: E402
from gpubp import reference  # noqa: E402
from gpubp.layers import BatchNorm, Dense, Dropout  # noqa: E402
from helpers import rel_err  # noqa: E402
from test_layer_gradients import HEADS, _flat, _structural_zeros, _targets  # noqa: E402

SMOOTH_HIDDEN = ["tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "softplus", "identity", None]


@st.composite
def layer_stacks(draw):
    """A random list of Dense, Dropout and BatchNorm layers ending in a Dense output layer."""
    layers = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["dense", "dense", "dropout", "batch_norm"]))
        if kind == "dense":
            layers.append(Dense(draw(st.integers(1, 6)), draw(st.sampled_from(SMOOTH_HIDDEN)), bias=draw(st.booleans())))
        elif kind == "dropout":
            layers.append(Dropout(draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))))
        else:
            layers.append(BatchNorm(momentum=draw(st.sampled_from([0.0, 0.1, 1.0])), eps=draw(st.sampled_from([1e-5, 0.5])),
                                    activation=draw(st.sampled_from(SMOOTH_HIDDEN))))
    loss, output = draw(st.sampled_from(HEADS))
    layers.append(Dense(3, output, bias=draw(st.booleans())))
    return layers, loss


@settings(max_examples=40, deadline=None, derandomize=True)
@given(stack=layer_stacks(), n=st.integers(2, 6), training=st.booleans())
def test_random_layer_stacks_equal_reference(stack, n, training):
    """Any stack of the three layer types: C and every gradient as the reference computes them,
    in training and in inference mode (float64, rel. err. < 1e-10 where not 0 by structure)."""
    layers, loss = stack
    rng = np.random.default_rng(n)
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP.from_layers(4, layers, loss=loss, dtype="float64", seed=n)
    X, Y = rng.normal(size=(n, 4)), _targets(loss, n, rng)
    net.forward(X, training=True)  # running statistics away from 0 and 1
    C, grads = net.loss_and_grads(X, Y, training=training)
    C_ref, grads_ref = reference.net_loss_and_grads(net, X, Y, training=training)
    assert abs(C - C_ref) <= 1e-10 * abs(C_ref) + 1e-300
    got, want = _flat(grads), _flat(grads_ref)
    assert len(got) == len(want)
    scale = max([np.abs(w).max() for w in want] + [1e-300])
    for g, w, zero in zip(got, want, _structural_zeros(net, training)):
        if zero or np.abs(w).max() <= 1e-12 * scale:  # 0 but for rounding (a bias before a BatchNorm, ...)
            assert np.abs(g - w).max() <= 1e-12 * scale
        else:
            assert rel_err(g, w) < 1e-10
