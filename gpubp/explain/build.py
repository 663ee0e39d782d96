"""An :class:`~gpubp.explain.explanation.Explanation` from the arrays of the network's own pass.

Every number is read from a :class:`gpubp.trace.Trace` (the workspace of the batched pass), or
is one elementwise step of the formula it stands for, on the backend, in the network's dtype:
the output layer's dC_0/dA^(L) = 2 s (A - Y) of a squared-error head (the head fuses it into
Delta^(L) in place), g'(Z) from the activation table the ops use, a dropout's mask from the
layer's own generator, and the products and sums the chain rule names. Nothing runs the
network a second way; the independent check is :mod:`gpubp.reference` (in the tests).
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from ..layers import BatchNorm, Dense, Dropout
from ..losses import SQUARED_ERROR
from ..trace import Trace, trace
from .explanation import Explanation, Factor, Terms
from .modes import CHAIN, FUSED, SOFTMAX
from .weight import WeightName, resolve


def _fused(loss: Any) -> bool:
    """Whether the loss head gives Delta^(L) = dC_0/dZ^(L) without its two factors (every head but
    the squared error's)."""
    return loss.head != SQUARED_ERROR


def _one_hot(xp: Any, Y: Any, m: int, dtype: Any) -> Any:
    """Y as rows of m targets (integer labels become one-hot rows)."""
    if Y.ndim == 1:
        out = xp.zeros((Y.shape[0], m), dtype=dtype)
        out[xp.arange(Y.shape[0]), Y] = 1.0
        return out
    return Y.astype(dtype, copy=False)


def _grad(xp: Any, act: Any, Z: Any, A: Any) -> Any:
    """g'(Z) of an elementwise activation (1 where the layer has none)."""
    if act is None:
        return xp.ones_like(Z)
    return act.grad(xp, Z, A)


def _layer_signal(tr: Trace, l: int) -> Tuple[str, Optional[Any], Optional[Any], Any]:
    """(mode, dC_0/dA^(l), g'(Z^(l)) or the softmax Jacobian's part, dC_0/dZ^(l)) of Dense layer l,
    all nodes (n, n_l), on the backend."""
    net, d = tr.net, tr[l]
    xp = net.backend.xp
    act = d.layer.activation
    if l < tr.L:
        gp = _grad(xp, act, d.Z, d.A)
        return CHAIN, d.dA, gp, xp.multiply(d.dA, gp)
    if _fused(net.loss):
        return FUSED, None, None, d.Delta
    m = d.A.shape[1]
    Y = _one_hot(xp, tr.Y, m, d.A.dtype)
    dA = xp.multiply(xp.subtract(d.A, Y), 2.0 * net.loss.squared_scale(m))  # the tutorial's 2 (a_j - y_j)
    if act.elementwise:
        gp = act.grad(xp, d.Z, d.A)
        return CHAIN, dA, gp, xp.multiply(dA, gp)
    return SOFTMAX, dA, None, d.Delta


def _softmax_column(xp: Any, A: Any, j: int) -> Any:
    """da_r/dz_j = a_r ([r = j] - a_j) for r = 1..m, per sample (n, m)."""
    col = -A[:, j:j + 1] * A
    col[:, j] += A[:, j]
    return col


def _between(tr: Trace, lower: Dense, upper: Dense, j: int) -> List[Factor]:
    """The layers between ``lower`` and ``upper`` (top down), for node j (0-based)."""
    net = tr.net
    to_np = net.backend.to_numpy
    xp = net.backend.xp
    steps = tr.steps
    # the signal at the input of ``upper``: what the layer below it held before its backward pass
    signal = steps[upper.index - 2].dout[:, j]
    out: List[Factor] = []
    for index in range(upper.index - 1, lower.index, -1):
        layer, step = net.layers[index], steps[index - 1]
        if isinstance(layer, Dropout):
            owner = steps[layer.fused_into.index - 1] if layer.fused_into is not None else step
            if owner.draw is None:  # inference, or p = 0: the identity
                din, parts = signal, {}
            else:
                mask = owner.arrays["mask"][:, j]
                din = xp.multiply(signal, mask) if layer.fused_into is not None else step.after[:, j]
                parts = {"mask": to_np(mask).copy(), "p": layer.p}
            out.append(Factor("dropout", index, repr(layer), to_np(signal).copy(), to_np(din).copy(), parts,
                              tr.training, layer.fused_into is not None))
        elif isinstance(layer, BatchNorm):
            below = steps[index - 2]
            din = below.dout[:, j]
            arr = step.arrays
            gp = _grad(xp, layer.activation, arr["Y"][:, j], arr["A"][:, j])
            parts = {
                "g'(y)": to_np(gp).copy(), "delta": to_np(step.after[:, j]).copy(),
                "zhat": to_np(arr["Xhat"][:, j]).copy(), "gamma": float(layer.gamma[j]),
                "inv_std": float(arr["inv_std"][j]), "activation": getattr(layer.activation, "name", "identity"),
            }
            if tr.training:
                parts["mean_delta"] = float(step.grads["beta"][j])
                parts["mean_delta_zhat"] = float(step.grads["gamma"][j])
            out.append(Factor("batch_norm", index, repr(layer), to_np(signal).copy(), to_np(din).copy(), parts,
                              tr.training))
        else:
            raise TypeError(f"explain does not know the layer {layer!r} between two Dense layers")
        signal = din
    return out


def from_trace(tr: Trace, name: WeightName) -> Explanation:
    """The explanation of parameter ``name`` from the traced pass ``tr``."""
    net = tr.net
    xp = net.backend.xp
    to_np = net.backend.to_numpy
    l, j = name.l, name.j - 1
    d = tr[l]
    dense = d.layer
    n = tr.n
    act = dense.activation
    dz_dw = xp.ones(n, dtype=net.dtype) if name.is_bias else d.A_prev[:, name.k - 1]
    mode, dA, gp, dZ = _layer_signal(tr, l)
    a = y = None
    terms: Optional[Terms] = None
    between: List[Factor] = []
    if mode == SOFTMAX:
        dC_da, da_dz = dA, _softmax_column(xp, d.A, j)
        dC_dz = (dC_da * da_dz).sum(axis=1)
    elif mode == FUSED:
        dC_da = da_dz = None
        dC_dz = dZ[:, j]
    else:
        dC_da, da_dz, dC_dz = dA[:, j], gp[:, j], dZ[:, j]
    if l == tr.L:
        a = to_np(d.A[:, j]).copy()
        y = to_np(_one_hot(xp, tr.Y, d.A.shape[1], d.A.dtype)[:, j]).copy()
    else:
        upper = tr[l + 1]
        up_mode, up_dA, up_gp, up_dZ = _layer_signal(tr, l + 1)
        w = upper.layer.W[:, j]
        products = xp.multiply(up_dZ, w)
        terms = Terms(l + 1, up_mode, getattr(upper.layer.activation, "name", "identity"),
                      None if up_dA is None else to_np(up_dA).copy(), None if up_gp is None else to_np(up_gp).copy(),
                      to_np(up_dZ).copy(), to_np(w).copy(), to_np(products).copy(), to_np(products.sum(axis=1)).copy())
        between = _between(tr, dense, upper.layer, j)
    per_sample = xp.multiply(dC_dz, dz_dw)
    # the L2 penalty's part of dC/dw, (lambda/n) w, as loss_and_grads adds it (none for a bias)
    penalty = 0.0 if name.is_bias or not net.l2 else float(net.l2 / n * d.layer.W[j, name.k - 1])
    value = float(per_sample.mean(dtype=net.dtype)) + penalty
    batched = float(d.db[j] if name.is_bias else d.dW[j, name.k - 1])
    first = tr[l - 1].layer.index + 1 if l > 1 else 1
    below_layers = net.layers[first:dense.index]
    below = tuple(repr(layer) for layer in below_layers)
    reads = "a" if not below_layers else ("drop" if isinstance(below_layers[-1], Dropout) else "bn")
    coupled = tr.training and any(isinstance(layer, BatchNorm) for layer in net.layers[dense.index + 1:])

    def host(v: Any) -> Optional[np.ndarray]:
        return None if v is None else to_np(v).copy()

    return Explanation(
        name=name, n=n, training=tr.training, dtype=net.dtype.name, backend=net.backend.name, loss=net.loss.name,
        activation=getattr(act, "name", "identity"), head=mode if l == tr.L else None,
        dC_da=host(dC_da), da_dz=host(da_dz), dC_dz=host(dC_dz), dz_dw=host(dz_dw), per_sample=host(per_sample),
        value=value, batched=batched, penalty=penalty,
        terms=terms, between=tuple(between), below=below, reads=reads, a=a, y=y, coupled=coupled)


def explain(net: Any, X: Any, Y: Any, weight: Optional[str] = None, *, layer: Any = None, j: Any = None, k: Any = None,
            training: bool = True) -> Explanation:
    """:meth:`gpubp.MLP.explain`: the parameter is named (and checked) before the pass runs."""
    name = resolve(net, weight, layer, j, k)
    return from_trace(trace(net, X, Y, training=training), name)


__all__ = ["explain", "from_trace"]
