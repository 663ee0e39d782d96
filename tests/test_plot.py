"""gpubp.plot.network drawn with matplotlib's Agg backend and read back: its nodes, edges (width and
colour from the weight or its gradient) and labels in the tutorial's notation."""
from __future__ import annotations

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.collections import LineCollection, PathCollection  # noqa: E402

import gpubp  # noqa: E402
from gpubp import plot  # noqa: E402
from gpubp.errors import MissingExtraError  # noqa: E402

from test_explain import tutorial_network  # noqa: E402


def contents(fig):
    ax = fig.axes[0]
    edges = [c for c in ax.collections if isinstance(c, LineCollection)]
    nodes = [c for c in ax.collections if isinstance(c, PathCollection)]
    return edges, nodes, [t.get_text() for t in ax.texts]


def check_edges(edges, values):
    """Each layer's segments go from column l-1 to column l; width 0.4 + 3.6 |v| / max |v|; red for
    v > 0, blue for v < 0; the edges drawn are the largest."""
    for l, (coll, V) in enumerate(zip(edges, values), start=1):
        segs, widths, colours = coll.get_segments(), coll.get_linewidths(), coll.get_colors()
        assert all(seg[0][0] == l - 1 and seg[1][0] == l for seg in segs)
        scale = np.abs(V).max()
        drawn = np.sort(np.abs(V).ravel())[::-1][: len(segs)]
        np.testing.assert_allclose(np.sort((np.asarray(widths) - 0.4) / 3.6 * scale)[::-1], drawn, rtol=1e-9)
        signs = {}
        for seg, w, c in zip(segs, widths, colours):
            signs[(seg[0][1], seg[1][1])] = np.sign(c[0] - c[2]) if w > 0.5 else 0.0
        assert any(signs.values())
        # the colour's sign is the value's: red (r > b) positive, blue negative
        ys = [(len(V[0]) - 1) / 2.0 - np.arange(len(V[0])), (len(V) - 1) / 2.0 - np.arange(len(V))]
        for j in range(V.shape[0]):
            for k in range(V.shape[1]):
                s = signs.get((ys[0][k], ys[1][j]))
                if s:
                    assert s == np.sign(V[j, k]), (l, j, k)


def test_the_tutorial_network(tmp_path):
    net, X, Y = tutorial_network()
    path = tmp_path / "net.png"
    fig = plot.network(net, path=path)
    edges, nodes, texts = contents(fig)
    assert [len(n.get_offsets()) for n in nodes] == [2, 3, 2, 2]
    assert [len(e.get_segments()) for e in edges] == [6, 6, 4]
    W = [net.layers[l].W for l in (1, 2, 3)]
    check_edges(edges, W)
    # w_12^(L) = -0.5: from node 2 of layer 2 to node 1 of layer 3, blue, and labelled
    coll = edges[2]
    i = [k for k, seg in enumerate(coll.get_segments()) if tuple(seg[0]) == (2, -0.5) and tuple(seg[1]) == (3, 0.5)]
    assert len(i) == 1
    c = coll.get_colors()[i[0]]
    assert c[2] > c[0]  # blue: negative
    assert coll.get_linewidths()[i[0]] == pytest.approx(0.4 + 3.6 * 0.5 / 0.7)
    for label in ("$a_{1}^{(0)}$", "$a_{3}^{(1)}$", "$a_{2}^{(2)}$", "$a_{2}^{(L)}$", "$w_{12}^{(L)}$: -0.5",
                  "$w_{22}^{(2)}$: 0.2", "$w_{31}^{(1)}$: 0.5"):
        assert label in texts, label
    assert any(t.startswith("layer L = 3\nsigmoid, 2 nodes") for t in texts)
    assert any(t.startswith("$w^{(1)}$: 6 of 6 edges") for t in texts)
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400 and image[..., :3].std() > 0.05


def test_gradients_of_a_batch():
    net, X, Y = tutorial_network()
    fig = plot.network(net, X, Y, show="gradients")
    edges, nodes, texts = contents(fig)
    tr = net.trace(X, Y)
    check_edges(edges, [t.dW for t in tr])
    assert "over n = 2 samples" in fig.axes[0].get_title()
    assert f"$w_{{12}}^{{(L)}}$: {tr[3].dW[0, 1]:.3g}" in texts


def test_wide_layers_are_summarised():
    net = gpubp.MLP([64, 128, 64, 10], loss="cross_entropy", seed=0, dropout=0.2, dtype="float64")
    fig = plot.network(net, max_nodes=12, max_edges=40)
    edges, nodes, texts = contents(fig)
    assert [len(n.get_offsets()) for n in nodes] == [12, 12, 12, 10]
    assert [len(e.get_segments()) for e in edges] == [40, 40, 40]
    for more in ("+52 more nodes", "+116 more nodes"):
        assert more in texts
    # the summary is true: the largest of the edges not drawn (which may join a node not drawn)
    W1 = np.abs(net.dense_layers[0].W)
    drawn = {(round(w, 12)) for w in ((np.asarray(edges[0].get_linewidths()) - 0.4) / 3.6 * W1.max())}
    undrawn = np.array([w for w in W1.ravel() if round(w, 12) not in drawn])
    assert undrawn.size == 8152
    assert f"$w^{{(1)}}$: 40 of 8192 edges,\n8152 more, the largest {undrawn.max():.2g}" in "\n".join(texts)
    assert any("then Dropout(p=0.2)" in t for t in texts)
    # the largest weight of each layer is among the edges drawn, at its nodes
    for l, coll in enumerate(edges, start=1):
        W = net.layers[[i for i, x in enumerate(net.layers) if isinstance(x, gpubp.layers.Dense)][l - 1]].W
        assert max(coll.get_linewidths()) == pytest.approx(4.0)
        j, k = np.unravel_index(np.abs(W).argmax(), W.shape)
        assert f"$a_{{{j + 1}}}^{{({'L' if l == 3 else l})}}$" in texts and f"$a_{{{k + 1}}}^{{({l - 1})}}$" in texts
    assert not any(": " in t and t.startswith("$w_{") for t in texts)  # no edge labels on a wide picture


@pytest.mark.parametrize("kwargs, message", [
    (dict(show="biases"), "show must be one of"),
    (dict(show="gradients"), "needs a batch"),
    (dict(X=np.ones((2, 2)), Y=np.ones((2, 2))), "the weights need none"),
    (dict(max_nodes=0), "max_nodes"),
])
def test_refusals(kwargs, message):
    net, X, Y = tutorial_network()
    with pytest.raises(ValueError, match=message):
        plot.network(net, **kwargs)


@pytest.mark.parametrize("call, error, message", [
    (lambda net, h: plot.network(None), TypeError, "net must be a gpubp.MLP; got NoneType"),
    (lambda net, h: plot.network(net, path=5), TypeError, "path must be a str"),
    (lambda net, h: plot.network(net, path=""), ValueError, "path must name the picture file"),
    (lambda net, h: plot.network(net, edge_labels="no"), TypeError, "edge_labels must be True or False"),
    (lambda net, h: plot.network(net, training="x"), TypeError, "training must be True or False"),
    (lambda net, h: plot.history(h, metrics=5), TypeError, "metrics must be a metric's name"),
    (lambda net, h: plot.history(h, path=3.0), TypeError, "path must be a str"),
    (lambda net, h: plot.history([1.0, 0.5]), TypeError, "history must be a gpubp.History"),
    (lambda net, h: h.plot(ax=3), TypeError, "ax must be a matplotlib Axes"),
    (lambda net, h: net.summary(print_fn=3), TypeError, "print_fn must be a function"),
])
def test_bad_arguments_name_the_argument(call, error, message):
    net = tutorial_network()[0]
    h = gpubp.History({"loss": [1.0, 0.5]})
    h.epochs = [1, 2]
    with pytest.raises(error, match=message):
        call(net, h)


def test_a_plain_dict_of_per_epoch_lists_is_drawn():
    """Keras's history.history, or a History turned into a dict: epochs numbered from 1."""
    fig = plot.history({"loss": [1.0, 0.5, 0.2], "val_loss": [1.1, 0.7, 0.6]})
    lines = fig.axes[0].get_lines()
    assert [list(line.get_xdata()) for line in lines] == [[1, 2, 3], [1, 2, 3]]
    assert [list(line.get_ydata()) for line in lines] == [[1.0, 0.5, 0.2], [1.1, 0.7, 0.6]]


def test_plot_is_reached_from_the_package():
    assert gpubp.plot.network is plot.network and gpubp.plot.history is plot.history


def test_without_matplotlib_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r"gpubp\[plot\]"):
        plot.network(tutorial_network()[0])
