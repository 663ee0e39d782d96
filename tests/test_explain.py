"""net.explain: the tutorial's chain rule for one parameter, in the numbers of the batched pass.

Every activation and loss head, with and without bias, on the output layer and on hidden layers
of networks of depth L = 2..4: ``per_sample`` and its factors equal the tutorial's per-sample
formulas written out one sample at a time (gpubp/reference.py's ``explain_parameter``), ``value``
equals the entry of ``loss_and_grads`` (float64, relative error < 1e-12), and the hidden-layer
``terms`` sum to dC_0/da_j^(l); with Dropout and BatchNorm between the layers, each layer's factor
turns the signal above it into the one below. The tutorial's own example (sigmoid, sse, no bias) is
printed and checked against numbers computed by hand.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import gpubp
from gpubp import reference
from gpubp.activations import ELEMENTWISE
from gpubp.explain import FUSED, SOFTMAX, parse
from gpubp.layers import BatchNorm, Dense

from helpers import HEADS, LAYER_ARCHS, rel_err, targets

#: One loss of each head for the sweeps over the hidden activations (the output layer's default activation).
LOSSES = ["sse", "mse", "cross_entropy:labels", "binary_cross_entropy"]


def make_targets(loss_key, n, m, rng):
    return targets(loss_key, n, m, rng, soft_first_row=True)


def loss_name(loss_key):
    return loss_key.partition(":")[0]


def close(got, want, scale, tol=1e-12):
    """|got - want| <= tol * scale elementwise: ``scale`` the size of the numbers compared."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = float(np.max(np.abs(got - want), initial=0.0))
    assert err <= tol * max(scale, 1e-300), f"error {err:.3e} > {tol:g} * {scale:.3e}"


def size(a):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64)), initial=0.0))


def params_of(net):
    """Two parameters of every Dense layer: a weight (the last node pair, then the first) and a
    bias where there is one, as (l, j, k) with k None for the bias (1-based)."""
    out = []
    for l in range(1, net.L + 1):
        n_l, n_prev = net.sizes[l], net.sizes[l - 1]
        out.append((l, n_l, n_prev))
        out.append((l, 1, 1))
        if net.layers[[i for i, layer in enumerate(net.layers) if isinstance(layer, Dense)][l - 1]].b is not None:
            out.append((l, (l % n_l) + 1, None))
    return out


def check_network(net, X, Y, training=True):
    """Every parameter of :func:`params_of` against the reference and loss_and_grads."""
    expl = {(l, j, k): net.explain(X, Y, layer=l, j=j, k=k, training=training) for l, j, k in params_of(net)}
    C, grads = net.loss_and_grads(X, Y, training=training)  # the pass explain ran (same masks)
    dense_grads = [g for layer, g in zip([x for x in net.layers[1:] if x.param_specs()], grads)
                   if isinstance(layer, Dense)]
    for (l, j, k), e in expl.items():
        ref = reference.explain_parameter(net, X, Y, l, j, k, training=training)
        scale = size(ref["per_sample"])
        close(e.per_sample, ref["per_sample"], scale)
        close(e.dz_dw, ref["dz_dw"], size(ref["dz_dw"]))
        close(e.dC_dz, ref["dC_dz"], size(ref["dC_dz"]))
        if ref["dC_da"] is not None and e.head != SOFTMAX:
            close(e.dC_da, ref["dC_da"], size(ref["dC_da"]))
        if ref["da_dz"] is not None:
            close(e.da_dz, ref["da_dz"], size(ref["da_dz"]))
        if e.head is None or e.head == "chain":  # the three factors multiply to per_sample
            close(e.dC_da * e.da_dz * e.dz_dw, e.per_sample, scale, 1e-15)
        # value: the average of per_sample, the entry of the network's own gradient
        dW, db = dense_grads[l - 1]
        g = float(db[j - 1] if k is None else dW[j - 1, k - 1])
        avg_scale = max(abs(g), float(np.mean(np.abs(e.per_sample))))
        close(e.value, g, avg_scale)
        close(e.batched, g, avg_scale, 0.0)  # the same pass: bit for bit
        close(e.value, ref["value"], avg_scale)
        if l < net.L:
            t, up = e.terms, ref["upper"]
            close(t.products.sum(axis=1), t.total, size(t.products), 1e-15)
            close(t.total, up["d_in"], size(t.products))  # the sum is dC_0/d(what layer l+1 reads)
            close(t.dC_dz, up["dC_dz"], size(up["dC_dz"]))
            if up["dC_da"] is not None:
                close(t.dC_da, up["dC_da"], size(up["dC_da"]))
            if t.da_dz is not None:
                close(t.da_dz, up["da_dz"], size(up["da_dz"]))
            # down through the layers between: the top one takes the sum, the bottom one gives dC_0/da_j^(l)
            signal = t.total
            for f in e.between:
                close(f.dout, signal, size(t.products))
                signal = f.din
            close(signal, e.dC_da, size(e.dC_da), 0.0 if e.between else 1e-12)
    return expl


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ELEMENTWISE)
def test_every_hidden_activation_at_every_layer(act, loss, bias, depth):
    rng = np.random.default_rng(depth * 7 + len(act))
    sizes = [4, 5, 4, 3, 3][:depth] + [3]
    net = gpubp.MLP(sizes, activation=act, loss=loss_name(loss), dtype="float64", seed=depth, bias=bias)
    X = rng.normal(size=(6, 4))
    expl = check_network(net, X, make_targets(loss, 6, 3, rng))
    out = expl[(depth, 3, sizes[-2])]
    assert out.head == (FUSED if net.loss.head != "squared_error" else "chain")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("loss, output", HEADS)
def test_every_head(loss, output, bias):
    """Every output activation of every loss (labels and one-hot rows, a soft row among them)."""
    rng = np.random.default_rng(3)
    net = gpubp.MLP([4, 5, 4, 3], activation="tanh", output_activation=output, loss=loss_name(loss), dtype="float64",
                    seed=1, bias=bias)
    expl = check_network(net, rng.normal(size=(5, 4)), make_targets(loss, 5, 3, rng))
    e = expl[(3, 3, 4)]
    if output == "softmax" and net.loss.head == "squared_error":  # the Jacobian's column contracted with the row of dC_0/da_r
        assert e.head == SOFTMAX and e.dC_da.shape == e.da_dz.shape == (5, 3)
        close((e.dC_da * e.da_dz).sum(axis=1), e.dC_dz, size(e.dC_dz), 1e-15)
        close(e.da_dz.sum(axis=1), np.zeros(5), 1.0, 1e-15)  # a_r ([r = j] - a_j) sums to 0 over r
        close(e.da_dz[:, 2], e.a * (1.0 - e.a), 1.0, 1e-15)
        assert expl[(2, 4, 5)].terms.mode == SOFTMAX




@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("arch", sorted(LAYER_ARCHS))
def test_dropout_and_batch_norm_are_factors_of_their_own(arch, loss, bias, training):
    rng = np.random.default_rng(11)
    net = gpubp.MLP.from_layers(4, LAYER_ARCHS[arch](bias), loss=loss_name(loss), dtype="float64", seed=5)
    X, Y = rng.normal(1.0, 2.0, size=(7, 4)), make_targets(loss, 7, 3, rng)
    if training:
        net.loss_and_grads(X, Y)  # one step before: BatchNorm's sums shifted by a previous mean, later masks
    expl = check_network(net, X, Y, training=training)
    for e in expl.values():
        for f in e.between:
            if f.kind == "dropout" and "mask" in f.parts:
                close(f.din, f.dout * f.parts["mask"], size(f.dout), 0.0)  # bit for bit the backward pass's product
                assert set(np.unique(f.parts["mask"])) <= {0.0, 1.0 / (1.0 - f.parts["p"])}
            elif f.kind == "batch_norm":
                p = f.parts
                close(p["delta"], f.dout * p["g'(y)"], size(p["delta"]), 1e-15)
                if training:
                    close(p["mean_delta"], p["delta"].mean(), size(p["delta"]), 1e-14)
                    close(p["mean_delta_zhat"], (p["delta"] * p["zhat"]).mean(), size(p["delta"]), 1e-14)
                    want = p["gamma"] * p["inv_std"] * (p["delta"] - p["mean_delta"] - p["zhat"] * p["mean_delta_zhat"])
                else:
                    want = p["gamma"] * p["inv_std"] * p["delta"]
                close(f.din, want, size(f.din), 1e-14)
        dense = [x for x in net.layers if isinstance(x, Dense)][e.name.l - 1]
        above = net.layers[dense.index + 1:]
        assert e.coupled == (training and any(isinstance(x, BatchNorm) for x in above))
    kinds = {f.kind for e in expl.values() for f in e.between}
    assert kinds == ({"dropout"} if arch == "dense-dropout" else {"dropout", "batch_norm"})


def test_explain_changes_nothing_and_agrees_with_the_next_step():
    """explain runs the pass the next training step runs (the same masks, the same BatchNorm shift)
    and leaves the network as it was."""
    rng = np.random.default_rng(0)
    net = gpubp.MLP([4, 6, 5, 3], activation="relu", loss="cross_entropy", dtype="float64", seed=2, dropout=0.3,
                    batch_norm=True)
    X, y = rng.normal(size=(8, 4)), rng.integers(0, 3, 8)
    net.loss_and_grads(X, y)
    before = (net.params.copy(), net.state.copy(), json.dumps(net.host_state()))
    e = net.explain(X, y, "w_21^(1)")
    assert np.array_equal(net.params, before[0]) and np.array_equal(net.state, before[1])
    assert json.dumps(net.host_state()) == before[2]
    _, grads = net.loss_and_grads(X, y)
    assert e.batched == grads[0][0][1, 0]


@pytest.mark.parametrize("layers", [None, "dropout_batch_norm"])
def test_an_l2_penalty_is_part_of_value_and_of_the_trace(layers):
    """With l2 > 0, dC/dw = (1/n) sum_i dC_0^(i)/dw + (lambda/n) w (MATH.md, L2 penalty): ``value``
    and ``batched`` equal loss_and_grads' entry, ``value - penalty`` the reference's average of the
    per-sample products; a bias has no penalty; the trace's C and dW are loss_and_grads' too."""
    rng = np.random.default_rng(3)
    net = gpubp.MLP([4, 6, 5, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=1, l2=0.7,
                    dropout=0.2 if layers else 0.0, batch_norm=bool(layers))
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    for l, j, k in [(3, 2, 4), (2, 5, 1), (1, 3, 2), (3, 1, None)]:
        e = net.explain(X, y, layer=l, j=j, k=k)
        tr = net.trace(X, y)  # the same pass again: neither uses up a mask or moves a statistic
        C, grads = net.loss_and_grads(X, y)  # the pass explain and trace ran (same masks)
        dW, db = [g for layer, g in zip([x for x in net.layers[1:] if x.param_specs()], grads)
                  if isinstance(layer, Dense)][l - 1]
        g = float(db[j - 1] if k is None else dW[j - 1, k - 1])
        ref = reference.explain_parameter(net, X, y, l, j, k)
        W = net.dense_layers[l - 1].W
        want_penalty = 0.0 if k is None else 0.7 / 9 * float(W[j - 1, k - 1])
        assert e.penalty == pytest.approx(want_penalty, rel=1e-15, abs=0.0)
        close(e.value, g, abs(g), 1e-12)
        close(e.batched, g, abs(g), 0.0)
        close(e.value - e.penalty, ref["value"], abs(ref["value"]) + abs(want_penalty))
        if k is not None:
            assert "+ (lambda/n) w_" in str(e) and "(lambda/n) W" in str(e)
        assert tr.C == pytest.approx(float(C), rel=1e-14)
        for m in range(1, net.L + 1):
            close(tr[m].dW, [gr for layer, gr in zip([x for x in net.layers[1:] if x.param_specs()], grads)
                             if isinstance(layer, Dense)][m - 1][0], size(tr[m].dW), 1e-14)


def test_weight_names_in_the_tutorials_notation():
    net = gpubp.MLP([3, 12, 4, 2], loss="sse", dtype="float64", seed=0)
    X, Y = np.ones((2, 3)), np.zeros((2, 2))
    for text, (kind, l, j, k) in {
        "w_12^(L)": ("w", 3, 1, 2), "w_22^(L-1)": ("w", 2, 2, 2), "b_1^(2)": ("b", 2, 1, None),
        "w_{12,3}^(1)": ("w", 1, 12, 3), "w_12,3^(1)": ("w", 1, 12, 3), " w_{4, 2}^{(L-1)} ": ("w", 2, 4, 2),
        "w_{11,3}^{(L-2)}": ("w", 1, 11, 3), "b_{12}^(1)": ("b", 1, 12, None), "w_31^(L-1)": ("w", 2, 3, 1),
        "w_(2,1)^(3)": ("w", 3, 2, 1),
    }.items():
        name = parse(net, text)
        assert (name.kind, name.l, name.j, name.k) == (kind, l, j, k), text
    e = net.explain(X, Y, "w_22^(L-1)")
    assert str(e.name) == "w_22^(L-1)" and e.name.describe() == "the weight from node 2 of layer L-2 to node 2 of layer L-1"
    assert str(net.explain(X, Y, layer=1, j=12, k=3).name) == "w_12,3^(1)"
    assert str(net.explain(X, Y, layer="L", j=2).name) == "b_2^(L)"


@pytest.mark.parametrize("call, error, words", [
    (dict(weight="w_32^(L)"), ValueError, ["j = 1..2", "w_jk^(2) with j = 1..2, k = 1..4, b_j^(2) with j = 1..2"]),
    (dict(weight="w_15^(L)"), ValueError, ["k = 1..4", "got k = 5"]),
    (dict(weight="w_11^(3)"), ValueError, ["layers are l = 1..2"]),
    (dict(weight="w_11^(0)"), ValueError, ["layers are l = 1..2", "input"]),
    (dict(weight="w_11^(L-2)"), ValueError, ["layers are l = 1..2"]),
    (dict(weight="w_1^(L)"), ValueError, ["two node numbers", "w_12^(L)"]),
    (dict(weight="w_123^(2)"), ValueError, ["comma"]),
    (dict(weight="v_12^(L)"), ValueError, ["cannot read weight", "b_1^(2)"]),
    (dict(weight="w_12"), ValueError, ["cannot read weight"]),
    (dict(weight=12), TypeError, ["string"]),
    (dict(weight="w_12^(L)", layer=1), TypeError, ["not both"]),
    (dict(layer=1), TypeError, ["j="]),
    (dict(layer=1, j=1.0, k=1), TypeError, ["j must be a node number"]),
    (dict(layer=True, j=1, k=1), TypeError, ["layer"]),
    (dict(layer="M", j=1, k=1), ValueError, ["'L', 'L-1'"]),
])
def test_a_parameter_that_does_not_exist_is_a_clear_error(call, error, words):
    net = gpubp.MLP([3, 4, 2], loss="sse", dtype="float64", seed=0)
    X, Y = np.ones((2, 3)), np.zeros((2, 2))
    before = net.params.copy()
    with pytest.raises(error) as info:
        net.explain(X, Y, **call)
    assert np.array_equal(net.params, before) and not net.grads.any()  # refused before any pass ran
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_a_bias_of_a_layer_without_one():
    net = gpubp.MLP([3, 4, 2], loss="sse", dtype="float64", seed=0, bias=False)
    with pytest.raises(ValueError, match=r"layer 2 has no bias.*w_jk\^\(2\) with j = 1..2, k = 1..4"):
        net.explain(np.ones((2, 3)), np.zeros((2, 2)), "b_1^(L)")


# ---- the tutorial's own example --------------------------------------------------------------
def tutorial_network():
    """Two hidden layers, sigmoid, the sum of squared errors, no bias (L = 3, sizes 2-3-2-2)."""
    net = gpubp.MLP([2, 3, 2, 2], activation="sigmoid", loss="sse", dtype="float64", bias=False, seed=0)
    net.layers[1].W[...] = [[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]
    net.layers[2].W[...] = [[0.7, -0.8, 0.9], [-0.1, 0.2, 0.3]]
    net.layers[3].W[...] = [[0.4, -0.5], [0.6, 0.7]]
    X = np.array([[1.0, 0.5], [-0.5, 1.0]])
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    return net, X, Y


def test_the_tutorials_worked_example_by_hand(capsys):
    """The numbers worked out by hand, sample 1 (x = (1, 0.5), y = (1, 0)) and sample 2
    (x = (-0.5, 1), y = (0, 1)), with sigma(z) = 1 / (1 + e^-z), sigma' = sigma (1 - sigma):

    sample 1: z^(1) = (0.1 + 0.1, 0.3 - 0.2, 0.5 + 0.3) = (0.2, 0.1, 0.8)
              a^(1) = (0.549834, 0.524979, 0.689974)
              z^(2) = (0.7 a1 - 0.8 a2 + 0.9 a3, -0.1 a1 + 0.2 a2 + 0.3 a3) = (0.585886, 0.256988)
              a^(2) = (0.642419, 0.563900)
              z^(3) = (0.4 * 0.642419 - 0.5 * 0.563900, 0.6 * 0.642419 + 0.7 * 0.563900) = (-0.024982, 0.780181)
              a^(3) = (0.493755, 0.685719)
      w_12^(L):   dC_0/da_1^(L) = 2 (0.493755 - 1) = -1.012491;  g' = 0.493755 (1 - 0.493755) = 0.249961;
                  a_2^(L-1) = 0.563900;  product = -0.142714
      w_22^(L-1): dC_0/da_2^(L-1) = sum_j 2 (a_j - y_j) g'(z_j^(L)) w_j2^(L)
                    = -1.012491 * 0.249961 * -0.5 + 2 (0.685719 - 0) (0.685719 * 0.314281) * 0.7
                    = 0.126542 + 0.206890 = 0.333431;
                  g' = 0.563900 * 0.436100 = 0.245917;  a_2^(L-2) = 0.524979;  product = 0.043046
    sample 2: a^(1) = (0.537430, 0.365864, 0.586618), a^(2) = (0.648275, 0.548699), a^(3) = (0.496240, 0.684181)
      w_12^(L):   0.992480 * 0.249986 * 0.548699 = 0.136136
      w_22^(L-1): (-0.124053 - 0.095538) * 0.247628 * 0.365864 = -0.019895
    averages: dC/dw_12^(L) = (-0.142714 + 0.136136) / 2 = -0.003289,
              dC/dw_22^(L-1) = (0.043046 - 0.019895) / 2 = 0.011576
    """
    net, X, Y = tutorial_network()
    out = net.explain(X, Y, "w_12^(L)")
    hidden = net.explain(X, Y, "w_22^(L-1)")
    print(out)
    print(hidden)
    np.testing.assert_allclose(out.dC_da, [-1.012491, 0.992480], atol=1e-6)
    np.testing.assert_allclose(out.da_dz, [0.249961, 0.249986], atol=1e-6)
    np.testing.assert_allclose(out.dz_dw, [0.563900, 0.548699], atol=1e-6)
    np.testing.assert_allclose(out.per_sample, [-0.142714, 0.136136], atol=1e-6)
    assert out.value == pytest.approx(-0.003289, abs=1e-6)
    np.testing.assert_allclose(hidden.terms.products[0], [0.126542, 0.206890], atol=1e-6)
    np.testing.assert_allclose(hidden.terms.products[1], [-0.124053, -0.095538], atol=1e-6)
    np.testing.assert_allclose(hidden.dC_da, [0.333431, -0.219591], atol=1e-6)
    np.testing.assert_allclose(hidden.da_dz, [0.245917, 0.247628], atol=1e-6)
    np.testing.assert_allclose(hidden.dz_dw, [0.524979, 0.365864], atol=1e-6)
    np.testing.assert_allclose(hidden.per_sample, [0.043046, -0.019895], atol=1e-6)
    assert hidden.value == pytest.approx(0.011576, abs=1e-6)
    text = capsys.readouterr().out
    for line in ("dC_0/dw_12^(L) = dC_0/da_1^(L) * da_1^(L)/dz_1^(L) * dz_1^(L)/dw_12^(L)",
                 "= 2 (a_1^(L) - y_1) * g'(z_1^(L)) * a_2^(L-1)",
                 "dC_0/da_2^(L-1) = sum_j dC_0/da_j^(L) * da_j^(L)/dz_j^(L) * dz_j^(L)/da_2^(L-1)",
                 "= sum_j dC_0/da_j^(L) * g'(z_j^(L)) * w_j2^(L)",
                 "-0.142714", "0.136136", "0.333431", "0.0430464", "dC/dw_22^(L-1) = (1/n) sum_i dC_0^(i)/dw_22^(L-1)"):
        assert line in text, line


# ---- rendering -------------------------------------------------------------------------------
def test_markdown_latex_and_dict_say_the_same():
    net, X, Y = tutorial_network()
    e = net.explain(X, Y, "w_22^(L-1)")
    md, tex = e._repr_markdown_(), e._repr_latex_()
    assert r"\frac{\partial C_0}{\partial w_{22}^{(L-1)}}" in md and "| 1 | 0.333431 |" in md
    assert tex.startswith("$$\\begin{aligned}") and tex.endswith("\\end{aligned}$$")
    assert r"\sum_j \frac{\partial C_0}{\partial a_{j}^{(L)}}\, g'(z_j^{(L)})\, w_{j2}^{(L)}" in tex
    assert tex.count(r"\begin{array}") == 2 and "0.0430464" in tex
    d = json.loads(json.dumps(e.to_dict()))
    assert d["weight"] == "w_22^(L-1)" and (d["layer"], d["j"], d["k"]) == (2, 2, 2)
    assert d["per_sample"] == e.per_sample.tolist() and d["value"] == e.value
    assert d["terms"]["products"] == e.terms.products.tolist() and d["between"] == []
    assert e.format(samples=1).count("\n       1 ") >= 1 and "(1 more sample)" in e.format(samples=1)
    with pytest.raises(ValueError, match="style"):
        e.format(style="html")


def test_wide_layers_show_their_largest_terms():
    rng = np.random.default_rng(0)
    net = gpubp.MLP([5, 4, 20], loss="cross_entropy", dtype="float64", seed=0)
    e = net.explain(rng.normal(size=(3, 5)), rng.integers(0, 20, 3), "w_11^(1)")
    text = str(e)
    assert "14 more" in text  # 20 terms: the 6 largest shown, the rest summed
    assert e.terms.products.shape == (3, 20)


def test_cross_entropy_with_soft_targets():
    """Rows of Y that do not sum to 1: the fused factor is a_j sum_r y_r - y_j."""
    rng = np.random.default_rng(5)
    net = gpubp.MLP([4, 5, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=0)
    X, Y = rng.normal(size=(4, 4)), rng.uniform(size=(4, 3))
    expl = check_network(net, X, Y)
    e = expl[(2, 3, 5)]
    close(e.dC_dz, e.a * Y.sum(axis=1) - Y[:, 2], 1.0, 1e-15)


# ---- backends ------------------------------------------------------------------------------
def test_on_every_backend(backend):
    rng = np.random.default_rng(4)
    net = gpubp.MLP([4, 6, 5, 3], activation="gelu", loss="cross_entropy", dtype="float64", seed=3, dropout=0.2,
                    batch_norm=True)
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    check_network(net, X, y)


def test_float32_explains_the_float32_pass(backend):
    """The same dtype as the network: the average of the float32 products is the float32 gradient to
    rounding, and the float32 explanation is the float64 one to float32 precision."""
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(16, 4)), rng.integers(0, 3, 16)
    # (no dropout: a float32 network draws its masks from other bits of the generator than a float64 one)
    nets = {dt: gpubp.MLP([4, 6, 5, 3], activation="silu", loss="cross_entropy", dtype=dt, seed=3, batch_norm=True)
            for dt in ("float32", "float64")}
    nets["float32"].params[...] = nets["float64"].params  # the same weights (float64 rounded to float32)
    nets["float64"].params[...] = nets["float32"].params
    for w in ("w_23^(1)", "b_4^(2)", "w_35^(L)"):
        e32, e64 = (nets[dt].explain(X, y, w) for dt in ("float32", "float64"))
        assert e32.per_sample.dtype == np.float32 and e32.dtype == "float32"
        scale = float(np.mean(np.abs(e32.per_sample)))
        assert abs(e32.value - e32.batched) <= 1e-6 * scale
        assert rel_err(e32.per_sample, e64.per_sample) < 1e-5


def test_the_cuda_kernels_give_the_same_explanation(kernels):
    """CupyOps with the kernels built for the host (no mask array: the dropout masks are computed
    in the kernels) explains with the numbers of the NumPy backend."""
    import host_kernels

    ops = host_kernels.host_cupy_ops(kernels)
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
    got = {}
    for which in ("numpy", "kernels"):
        with gpubp.use_backend("numpy"):
            net = gpubp.MLP.from_layers(4, LAYER_ARCHS["deeper"](True), loss="cross_entropy", dtype="float64", seed=5)
        if which == "kernels":
            net.backend = dataclasses.replace(net.backend, ops=ops)
            assert net.backend.ops.dropout_in_kernels
        got[which] = [net.explain(X, y, w) for w in ("w_23^(1)", "w_12^(2)", "b_3^(3)", "w_31^(L)")]
    for a, b in zip(got["kernels"], got["numpy"]):
        assert rel_err(a.per_sample, b.per_sample) < 1e-12
        assert rel_err(a.value, b.value) < 1e-12
        for fa, fb in zip(a.between, b.between):
            assert rel_err(fa.din, fb.din) < 1e-12 and fa.parts.keys() == fb.parts.keys()
