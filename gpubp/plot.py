"""Pictures with matplotlib (the ``plot`` extra): the network drawn as the tutorial draws it, and
the learning curves of a training run.

:func:`network` draws layers 0..L as columns of nodes a_j^(l) and the weights w_jk^(l) as edges,
each edge's width and colour from its weight (or, with ``show="gradients"``, from dC/dw_jk^(l)
of a batch, as the network's own pass computes it). :func:`history` draws a History's loss,
accuracy and learning rate per epoch (``History.plot`` calls it). Every function returns the
:class:`matplotlib.figure.Figure` (made without pyplot, so nothing global changes and any
backend, Agg included, can save it) and writes it to ``path=`` if given.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import MissingExtraError

SHOWS = ("weights", "gradients")


def _matplotlib() -> Any:
    """The matplotlib package, or a :class:`~gpubp.errors.MissingExtraError` naming the extra."""
    try:
        import matplotlib
        import matplotlib.collections  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise MissingExtraError('drawing needs matplotlib, which is not installed: pip install "gpubp[plot]"') from None
    return matplotlib


def _check_path(path: Any) -> Any:
    """``path`` (None, a str or an os.PathLike naming the picture file, or an open binary file),
    checked before anything is drawn; a TypeError naming ``path`` otherwise."""
    if path is None or hasattr(path, "write"):
        return path
    try:
        name = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike naming the picture file (or a binary file object); got "
                        f"{type(path).__name__} {path!r}"[:300]) from None
    if not name:
        raise ValueError("path must name the picture file; got an empty string")
    return name


def _save(fig: Any, path: Any) -> None:
    if path is not None:
        fig.savefig(path, dpi=fig.dpi, bbox_inches="tight")


def _chosen_nodes(values: List[np.ndarray], sizes: Tuple[int, ...], max_nodes: int) -> List[np.ndarray]:
    """The nodes drawn in each layer 0..L: all of a layer that has at most ``max_nodes``, else those
    with the largest edges (each edge's size relative to its layer's largest, so the largest edge
    of every layer is drawn), in index order."""
    chosen = []
    for l, width in enumerate(sizes):
        if width <= max_nodes:
            chosen.append(np.arange(width))
            continue
        score = np.zeros(width)
        if l >= 1:  # edges into the node: rows of W^(l)
            V = np.abs(values[l - 1])
            score = np.maximum(score, V.max(axis=1) / max(V.max(), 1e-300))
        if l < len(sizes) - 1:  # edges out of it: columns of W^(l+1)
            V = np.abs(values[l])
            score = np.maximum(score, V.max(axis=0) / max(V.max(), 1e-300))
        chosen.append(np.sort(np.argsort(-score, kind="stable")[:max_nodes]))
    return chosen


def _positions(count: int) -> np.ndarray:
    """y of ``count`` nodes in a column (top down), centred on 0, one apart."""
    return (count - 1) / 2.0 - np.arange(count) if count else np.zeros(0)


def _math(symbol: str, index: str, layer: str) -> str:
    """``w_12^(L)`` or ``dC/dw_12^(L)`` as mathtext (no index: the layer's matrix)."""
    sub = f"_{{{index}}}" if index else ""
    w = f"w{sub}^{{({layer})}}"
    return f"$\\partial C/\\partial {w}$" if symbol == "dC/dw" else f"${w}$"


def _label(l: int, L: int) -> str:
    return "L" if l == L and L > 1 else str(l)


def network(net: Any, X: Any = None, Y: Any = None, show: str = "weights", path: Any = None, max_nodes: int = 12,
            max_edges: int = 60, edge_labels: Optional[bool] = None, training: bool = True) -> Any:
    """The network as nodes and edges; returns the Figure (saved to ``path`` if given).

    Args:
        show: ``"weights"`` (edges w_jk^(l), nodes coloured by the bias b_j^(l)) or ``"gradients"``
            (dC/dw_jk^(l) and dC/db_j^(l) averaged over the rows of X, Y, from :meth:`gpubp.MLP.trace`;
            a training pass unless ``training=False``, which leaves the network as it was).
        X, Y: the batch of ``show="gradients"`` (not used for weights).
        max_nodes: nodes drawn per layer; a wider layer shows those with the largest edges and says
            how many more it has.
        max_edges: edges drawn per pair of layers, the largest by size between the nodes drawn;
            the rest are summarised above the layer (how many, and the size of the largest of them,
            which may join a node that is not drawn).
        edge_labels: write w_jk^(l) and its value beside each edge (default: where a pair of layers
            draws at most 8 edges).

    Edge width and colour are the size and sign of the value relative to the largest of its layer
    (red positive, blue negative; each layer has its own scale, written above it). Node labels
    are the tutorial's a_j^(l) (a_k^(0): the inputs).
    """
    from . import validation

    if not hasattr(net, "dense_layers") or not hasattr(net, "trace"):
        raise TypeError(f"net must be a gpubp.MLP; got {type(net).__name__}")
    path = _check_path(path)
    training = validation.check_bool(training, "training")
    if edge_labels is not None:
        edge_labels = validation.check_bool(edge_labels, "edge_labels")
    if show not in SHOWS:
        raise ValueError(f"show must be one of {', '.join(SHOWS)}; got {show!r}")
    max_nodes = validation.check_int(max_nodes, "max_nodes", 1)
    max_edges = validation.check_int(max_edges, "max_edges", 1)
    if show == "gradients" and (X is None or Y is None):
        raise ValueError("show='gradients' needs a batch: network(net, X, Y, show='gradients')")
    if show == "weights" and (X is not None or Y is not None):
        raise ValueError("X and Y are the batch of show='gradients'; the weights need none")
    mpl = _matplotlib()
    to_np = net.backend.to_numpy
    dense = net.dense_layers
    if show == "gradients":
        tr = net.trace(X, Y, training=training)
        values = [to_np(t.dW).astype(np.float64) for t in tr]
        node_values = [None if t.db is None else to_np(t.db).astype(np.float64) for t in tr]
        symbol, title = "dC/dw", rf"gradients $\partial C/\partial w_{{jk}}^{{(l)}}$ over n = {tr.n} samples"
    else:
        values = [to_np(d.W).astype(np.float64) for d in dense]
        node_values = [None if d.b is None else to_np(d.b).astype(np.float64) for d in dense]
        symbol, title = "w", r"weights $w_{jk}^{(l)}$"
    sizes = tuple(net.sizes)
    L = len(sizes) - 1
    chosen = _chosen_nodes(values, sizes, max_nodes)
    tallest = max(len(c) for c in chosen)

    drawn_per_layer = [min(max_edges, len(chosen[l]) * len(chosen[l - 1])) for l in range(1, L + 1)]
    labelled = [bool(edge_labels) if edge_labels is not None else count <= 8 for count in drawn_per_layer]
    roomy = any(labelled)  # room for the labels of the edges
    fig = mpl.figure.Figure(figsize=(2.4 + (3.4 if roomy else 2.3) * L, 1.6 + (1.0 if roomy else 0.55) * tallest),
                            dpi=110)
    ax = fig.add_subplot()
    cmap = mpl.colormaps["RdBu_r"]
    ys = [_positions(len(c)) for c in chosen]
    where: List[Dict[int, float]] = [dict(zip(c.tolist(), y.tolist())) for c, y in zip(chosen, ys)]
    between = _between_layers(net)
    for l in range(1, L + 1):
        V = values[l - 1]
        scale = max(float(np.abs(V).max()), 1e-300)
        rows, cols = chosen[l], chosen[l - 1]
        sub = V[np.ix_(rows, cols)]
        order = np.argsort(-np.abs(sub), axis=None, kind="stable")[:max_edges]
        jj, kk = np.unravel_index(order, sub.shape)
        segs, colours, widths = [], [], []
        for a, b in zip(jj, kk):
            j, k = int(rows[a]), int(cols[b])
            v = float(V[j, k])
            segs.append([(l - 1, where[l - 1][k]), (l, where[l][j])])
            colours.append(cmap(0.5 + 0.5 * v / scale))
            widths.append(0.4 + 3.6 * abs(v) / scale)
        ax.add_collection(mpl.collections.LineCollection(segs, colors=colours, linewidths=widths, zorder=1,
                                                         label=f"edges of layer {l}"))
        drawn, total = len(segs), V.size
        rest = total - drawn
        summary = f"{_math(symbol, '', _label(l, L))}: {drawn} of {total} edges"
        if rest:
            undrawn = np.ones(V.shape, dtype=bool)
            undrawn[rows[jj], cols[kk]] = False
            summary += f",\n{rest} more, the largest {float(np.abs(V[undrawn]).max()):.2g}"
        top = tallest / 2.0 + 0.35
        ax.text(l - 0.5, top, summary + f"\nscale: largest size {scale:.2g}", ha="center", va="bottom", fontsize=7)
        if labelled[l - 1]:
            for (p0, p1), a, b in zip(segs, jj, kk):
                j, k = int(rows[a]) + 1, int(cols[b]) + 1
                idx = f"{j}{k}" if j < 10 and k < 10 else f"{j},{k}"
                # each target node's edges labelled at their own distance along the edge, so labels
                # of edges that meet at a node do not overlap
                t = 0.3 + 0.4 * (a / max(len(rows) - 1, 1))
                x, y = p0[0] + t * (p1[0] - p0[0]), p0[1] + t * (p1[1] - p0[1])
                ax.text(x, y, f"{_math('w', idx, _label(l, L))}: {V[j - 1, k - 1]:.3g}", fontsize=6, ha="center",
                        va="center", zorder=3, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85))
    for l in range(L + 1):
        c, y = chosen[l], ys[l]
        if l == 0 or node_values[l - 1] is None:
            faces = ["#dddddd"] * len(c)
        else:
            nv = node_values[l - 1]
            s = max(float(np.abs(nv).max()), 1e-300)
            faces = [cmap(0.5 + 0.5 * float(nv[j]) / s) for j in c]
        ax.scatter(np.full(len(c), float(l)), y, s=520, c=faces, edgecolors="black", linewidths=0.8, zorder=2,
                   label=f"nodes of layer {l}")
        for j, yy, face in zip(c, y, faces):
            dark = not isinstance(face, str) and 0.299 * face[0] + 0.587 * face[1] + 0.114 * face[2] < 0.5
            ax.text(l, yy, f"$a_{{{j + 1}}}^{{({_label(l, L)})}}$", ha="center", va="center", fontsize=7, zorder=4,
                    color="white" if dark else "black")
        if len(c) < sizes[l]:
            ax.text(l, y[-1] - 0.75, f"+{sizes[l] - len(c)} more nodes", ha="center", va="top", fontsize=7)
        name = "input" if l == 0 else (dense[l - 1].activation.name if dense[l - 1].activation else "linear")
        head = f"layer {_label(l, L)}" + (f" = {l}" if _label(l, L) == "L" else "") + f"\n{name}, {sizes[l]} nodes"
        if between.get(l):
            head += "\nthen " + ", ".join(between[l])
        ax.text(l, -tallest / 2.0 - 0.6, head, ha="center", va="top", fontsize=7)
    ax.set_xlim(-0.6, L + 0.6)
    ax.set_ylim(-tallest / 2.0 - 2.0, tallest / 2.0 + 1.6)
    ax.set_axis_off()
    ax.set_title(f"{title} (red > 0, blue < 0; width: size)", fontsize=9)
    _save(fig, path)
    return fig


def _between_layers(net: Any) -> Dict[int, List[str]]:
    """Layer l -> the Dropout and BatchNorm layers after Dense layer l (layer 0: before layer 1)."""
    from .layers import Dense

    out: Dict[int, List[str]] = {}
    l = 0
    for layer in net.layers[1:]:
        if isinstance(layer, Dense):
            l += 1
        else:
            out.setdefault(l, []).append(repr(layer))
    return out


__all__ = ["network"]


# ---- learning curves ----------------------------------------------------------------------------
def _panel(metric: str) -> str:
    """Which axes a metric is drawn on: losses together, accuracies together, the learning rate
    apart (log scale), anything else on its own."""
    if metric.endswith("loss"):
        return "loss"
    if "acc" in metric:
        return "accuracy"
    return metric


def history(history: Any, metrics: Optional[Sequence[str]] = None, ax: Any = None, path: Any = None) -> Any:
    """The learning curves of ``history`` (a :class:`gpubp.History`, what ``fit`` returns) against
    the epoch number; returns the Figure (saved to ``path`` if given).

    Args:
        metrics: the entries to draw (default: every entry with a value; the learning rate only
            where it changed). Each must be in the history.
        ax: a matplotlib Axes to draw every metric on; by default a new Figure gets one Axes per
            kind (losses, accuracies, the learning rate on a log scale, then any other entry),
            validation curves dashed.

    A history without epochs, or a metric it does not hold, is a ValueError; missing matplotlib
    is a :class:`~gpubp.errors.MissingExtraError` naming the extra.
    """
    if not isinstance(history, dict):
        raise TypeError(f"history must be a gpubp.History (what fit returns) or a dict of per-epoch lists; got "
                        f"{type(history).__name__}")
    path = _check_path(path)
    if ax is not None and not (hasattr(ax, "plot") and hasattr(ax, "figure")):
        raise TypeError(f"ax must be a matplotlib Axes to draw on (or None for a new Figure); got {type(ax).__name__}")
    # a History numbers its epochs (a resumed fit starts later); a plain dict's run from 1
    epochs = list(getattr(history, "epochs", None) or range(1, 1 + max((len(v) for v in history.values()), default=0)))
    if metrics is not None and not isinstance(metrics, str) and (
            not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) for m in metrics)):
        raise TypeError(f"metrics must be a metric's name or a list of names; got {type(metrics).__name__} {metrics!r}"[:300])
    if metrics is None:
        names = [k for k, v in history.items() if any(x is not None for x in v)]
        if "lr" in names and len({x for x in history["lr"] if x is not None}) <= 1:
            names.remove("lr")
    else:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in names if m not in history]
        if unknown:
            raise ValueError(f"metrics {unknown} are not in the history; it has {', '.join(sorted(history))}")
    if not epochs or not names:
        raise ValueError(f"nothing to plot: the history has {len(epochs)} epochs and no values of "
                         f"{names or 'any metric'}")
    matplotlib = _matplotlib()
    from matplotlib.ticker import MaxNLocator

    panels: Dict[str, List[str]] = {}
    for name in names:
        panels.setdefault(_panel(name) if ax is None else "value", []).append(name)
    if ax is None:
        fig = matplotlib.figure.Figure(figsize=(6.4, 2.6 * len(panels)))
        targets = list(fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0])
    else:
        fig, targets = ax.figure, [ax]
    for target, (panel, group) in zip(targets, panels.items()):
        for name in group:
            points = [(e, v) for e, v in zip(epochs, history[name]) if v is not None]
            target.plot([e for e, _ in points], [v for _, v in points], marker="." if len(points) < 30 else None,
                        linestyle="--" if name.startswith("val_") else "-", label=name)
        if panel == "lr":
            target.set_yscale("log")
        target.set_ylabel(panel)
        target.grid(True, alpha=0.3)
        target.legend(fontsize=8)
    targets[-1].set_xlabel("epoch")
    targets[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax is None:
        fig.tight_layout()
    _save(fig, path)
    return fig
