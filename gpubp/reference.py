"""The tutorial, literally: backpropagation one sample, one node, one weight at a time.

This module is the oracle the tests check the vectorized library against, and the baseline
the benchmarks measure it against. It shares no code with the library's math: every
activation and its derivative is written again here for one Python float, every sum is a
Python loop over samples i, nodes j of layer l and nodes k of layer l-1, exactly as the
tutorial (and MATH.md) derives it:

    z_j^(l) = sum_k w_jk^(l) a_k^(l-1) + b_j^(l),        a_j^(l) = g^(l)(z_j^(l))
    dC_0/dw_jk^(L) = dC_0/da_j^(L) * g'^(L)(z_j^(L)) * a_k^(L-1)
    dC_0/da_k^(l-1) = sum_j dC_0/da_j^(l) * g'^(l)(z_j^(l)) * w_jk^(l)
    dC/dw_jk^(l) = (1/n) sum_i dC_0^(i)/dw_jk^(l)                 (averaged over the n samples)

Each layer of :mod:`gpubp.layers` has its class here (:class:`RefDense`, :class:`RefDropout`,
:class:`RefBatchNorm`), written from MATH.md's formulas; BatchNorm couples the samples of a
batch, so the passes go layer by layer over the samples rather than sample by sample.

It is slow by design; use it on small networks only.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

C_GELU = math.sqrt(2.0 / math.pi)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _gelu_tanh(z: float) -> Tuple[float, float]:
    if abs(z) > 50.0:
        return (z if z > 0 else 0.0), (1.0 if z > 0 else 0.0)
    u = C_GELU * (z + 0.044715 * z**3)
    t = math.tanh(u)
    g = 0.5 * z * (1.0 + t)
    dg = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * C_GELU * (1.0 + 3 * 0.044715 * z * z)
    return g, dg


# name -> (g(z), g'(z)) for one scalar z
SCALAR_ACTIVATIONS: Dict[str, Tuple[Callable[[float], float], Callable[[float], float]]] = {
    "identity": (lambda z: z, lambda z: 1.0),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1.0 - _sigmoid(z))),
    "tanh": (math.tanh, lambda z: 1.0 - math.tanh(z) ** 2),
    "relu": (lambda z: z if z > 0 else 0.0, lambda z: 1.0 if z > 0 else 0.0),
    "leaky_relu": (lambda z: z if z > 0 else 0.01 * z, lambda z: 1.0 if z > 0 else 0.01),
    "elu": (lambda z: z if z > 0 else math.expm1(z), lambda z: 1.0 if z > 0 else math.exp(z)),
    "softplus": (lambda z: max(z, 0.0) + math.log1p(math.exp(-abs(z))), _sigmoid),
    "gelu": (
        lambda z: 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0))),
        lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) + z * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi),
    ),
    "gelu_tanh": (lambda z: _gelu_tanh(z)[0], lambda z: _gelu_tanh(z)[1]),
    "silu": (lambda z: z * _sigmoid(z), lambda z: _sigmoid(z) * (1.0 + z * (1.0 - _sigmoid(z)))),
}


def _softmax(z: List[float]) -> List[float]:
    top = max(z)
    e = [math.exp(v - top) for v in z]
    s = sum(e)
    return [v / s for v in e]


def _sample_loss_and_output_signal(
    loss: str, out_act: str, z: List[float], a: List[float], y: List[float]
) -> Tuple[float, List[float]]:
    """C_0 of one sample and dC_0/dz_j^(L) for each output node j."""
    m = len(z)
    if loss in ("sse", "mse"):
        scale = 1.0 if loss == "sse" else 1.0 / m
        c0 = scale * sum((a[j] - y[j]) ** 2 for j in range(m))
        dc_da = [scale * 2.0 * (a[j] - y[j]) for j in range(m)]  # the tutorial's factor 2
        if out_act == "softmax":
            # da_i/dz_j = a_i (delta_ij - a_j)
            return c0, [sum(dc_da[i] * a[i] * ((1.0 if i == j else 0.0) - a[j]) for i in range(m)) for j in range(m)]
        gprime = SCALAR_ACTIVATIONS[out_act][1]
        return c0, [dc_da[j] * gprime(z[j]) for j in range(m)]
    if loss == "cross_entropy":
        top = max(z)
        lse = top + math.log(sum(math.exp(v - top) for v in z))
        c0 = sum(y[j] * (lse - z[j]) for j in range(m))
        ysum = sum(y)
        return c0, [a[j] * ysum - y[j] for j in range(m)]
    if loss == "binary_cross_entropy":
        # -[y log a + (1 - y) log(1 - a)] with a = sigmoid(z), = softplus(z) - y z
        c0 = sum(max(z[j], 0.0) - y[j] * z[j] + math.log1p(math.exp(-abs(z[j]))) for j in range(m))
        # dC_0/da_j * g'(z_j) = (a - y) / (a (1 - a)) * a (1 - a) = a_j - y_j
        return c0, [a[j] - y[j] for j in range(m)]
    raise ValueError(f"unknown loss {loss!r}")


class RefDense:
    """Dense layer l: z_j = sum_k w_jk a_k + b_j, a_j = g(z_j) (``act`` None: a_j = z_j)."""

    def __init__(self, W: Any, b: Optional[Any], act: Optional[str]):
        self.W = np.asarray(W, dtype=np.float64).tolist()
        self.b = None if b is None else np.asarray(b, dtype=np.float64).tolist()
        self.act = act

    def forward(self, rows: List[List[float]]) -> List[List[float]]:
        self.inputs, self.z, self.a = rows, [], []
        for a_prev in rows:  # one sample at a time
            z = []
            for j in range(len(self.W)):
                s = sum(self.W[j][k] * a_prev[k] for k in range(len(a_prev)))
                z.append(s + (self.b[j] if self.b is not None else 0.0))
            if self.act is None:
                a = list(z)
            elif self.act == "softmax":
                a = _softmax(z)
            else:
                a = [SCALAR_ACTIVATIONS[self.act][0](v) for v in z]
            self.z.append(z)
            self.a.append(a)
        return self.a

    def backward(self, d_out: List[List[float]], from_head: bool = False) -> List[List[float]]:
        """``d_out``: dC_0/da_j per sample (dC_0/dz_j itself when ``from_head``); returns dC_0/da_k
        of the layer below per sample, and keeps dC/dW, dC/db averaged over the n samples."""
        n = len(d_out)
        gW = [[0.0] * len(self.W[0]) for _ in self.W]
        gB = [0.0] * len(self.W)
        d_in = []
        self.d_out, self.dz = d_out, []  # kept per sample (the signal received, dC_0/dz)
        for i in range(n):
            if from_head or self.act is None:
                dz = d_out[i]
            else:
                gprime = SCALAR_ACTIVATIONS[self.act][1]
                dz = [d_out[i][j] * gprime(self.z[i][j]) for j in range(len(self.W))]
            self.dz.append(dz)
            a_prev = self.inputs[i]
            for j in range(len(dz)):
                for k in range(len(a_prev)):
                    gW[j][k] += dz[j] * a_prev[k]  # dC_0/dw_jk = dC_0/dz_j * a_k
                gB[j] += dz[j]
            # dC_0/da_k^(l-1) = sum_j dC_0/dz_j^(l) w_jk^(l)
            d_in.append([sum(dz[j] * self.W[j][k] for j in range(len(dz))) for k in range(len(a_prev))])
        self.grads = (np.array(gW) / n, None if self.b is None else np.array(gB) / n)  # averaged over n
        self.d_in = d_in
        return d_in


class RefDropout:
    """Dropout with a given mask: a_j m_j / (1 - p), where ``mask`` holds m_j / (1 - p) per sample
    (None: the identity, inference mode)."""

    def __init__(self, mask: Optional[Any]):
        self.mask = None if mask is None else np.asarray(mask, dtype=np.float64).tolist()
        self.grads = None

    def forward(self, rows: List[List[float]]) -> List[List[float]]:
        if self.mask is None:
            return rows
        return [[v * m for v, m in zip(row, mrow)] for row, mrow in zip(rows, self.mask)]

    def backward(self, d_out: List[List[float]], from_head: bool = False) -> List[List[float]]:
        if self.mask is None:
            return d_out
        return [[d * m for d, m in zip(row, mrow)] for row, mrow in zip(d_out, self.mask)]


class RefBatchNorm:
    """Batch normalisation of node j over the n samples i (MATH.md, BatchNorm):
    zhat_ij = (z_ij - mu_j) / sqrt(sigma_j^2 + eps), y_ij = gamma_j zhat_ij + beta_j, a_ij = g(y_ij),
    with the batch's mu_j and sigma_j^2 in training, the running ones in inference."""

    def __init__(self, gamma: Any, beta: Any, running_mean: Any, running_var: Any, eps: float, act: Optional[str],
                 training: bool):
        self.gamma = np.asarray(gamma, dtype=np.float64).tolist()
        self.beta = np.asarray(beta, dtype=np.float64).tolist()
        self.running_mean = np.asarray(running_mean, dtype=np.float64).tolist()
        self.running_var = np.asarray(running_var, dtype=np.float64).tolist()
        self.eps, self.act, self.training = eps, act, training

    def forward(self, rows: List[List[float]]) -> List[List[float]]:
        n, m = len(rows), len(self.gamma)
        if self.training:
            self.mu = [sum(rows[i][j] for i in range(n)) / n for j in range(m)]
            self.var = [sum((rows[i][j] - self.mu[j]) ** 2 for i in range(n)) / n for j in range(m)]
        else:
            self.mu, self.var = self.running_mean, self.running_var
        self.sd = [math.sqrt(self.var[j] + self.eps) for j in range(m)]
        self.zhat = [[(rows[i][j] - self.mu[j]) / self.sd[j] for j in range(m)] for i in range(n)]
        self.y = [[self.gamma[j] * self.zhat[i][j] + self.beta[j] for j in range(m)] for i in range(n)]
        if self.act is None:
            return self.y
        g = SCALAR_ACTIVATIONS[self.act][0]
        return [[g(v) for v in row] for row in self.y]

    def backward(self, d_out: List[List[float]], from_head: bool = False) -> List[List[float]]:
        n, m = len(d_out), len(self.gamma)
        gprime = (lambda v: 1.0) if self.act is None else SCALAR_ACTIVATIONS[self.act][1]
        delta = [[d_out[i][j] * gprime(self.y[i][j]) for j in range(m)] for i in range(n)]
        # dC/dgamma_j = (1/n) sum_i delta_ij zhat_ij, dC/dbeta_j = (1/n) sum_i delta_ij
        dgamma = [sum(delta[i][j] * self.zhat[i][j] for i in range(n)) / n for j in range(m)]
        dbeta = [sum(delta[i][j] for i in range(n)) / n for j in range(m)]
        self.grads = (np.array(dgamma), np.array(dbeta))
        if not self.training:  # fixed statistics: no coupling between the samples
            return [[self.gamma[j] / self.sd[j] * delta[i][j] for j in range(m)] for i in range(n)]
        # every z_ij moves mu_j and sigma_j^2, so each sample's signal takes the others' in too
        return [[self.gamma[j] / self.sd[j] * (delta[i][j] - dbeta[j] - self.zhat[i][j] * dgamma[j])
                 for j in range(m)] for i in range(n)]


def layers_loss_and_grads(layers: Sequence[Any], loss: str, X: Any, Y: Any) -> Tuple[float, List[Tuple[Any, ...]]]:
    """C and the gradients of every layer with parameters ((dC/dW, dC/db) for a :class:`RefDense`,
    (dC/dgamma, dC/dbeta) for a :class:`RefBatchNorm`), the last layer a :class:`RefDense` whose
    activation the loss head differentiates; the forward pass layer by layer over the samples,
    the backward pass from the loss head down."""
    rows = np.asarray(X, dtype=np.float64).tolist()
    Y = np.asarray(Y)
    out = layers[-1]
    m = len(out.W)
    if Y.ndim == 1 and loss == "cross_entropy":
        Yrows = [[1.0 if j == int(lbl) else 0.0 for j in range(m)] for lbl in Y]
    else:
        Yrows = np.asarray(Y, dtype=np.float64).reshape(len(rows), m).tolist()
    n = len(rows)
    for layer in layers:
        rows = layer.forward(rows)
    total, d = 0.0, []
    for i in range(n):
        c0, dz = _sample_loss_and_output_signal(loss, out.act, out.z[i], out.a[i], Yrows[i])
        total += c0
        d.append(dz)
    d = out.backward(d, from_head=True)
    for layer in reversed(layers[:-1]):
        d = layer.backward(d)
    return total / n, [layer.grads for layer in layers if layer.grads is not None]


def loss_and_grads(
    weights: Sequence[Tuple[Any, Optional[Any]]],
    activations: Sequence[str],
    loss: str,
    X: Any,
    Y: Any,
) -> Tuple[float, List[Tuple[np.ndarray, Optional[np.ndarray]]]]:
    """C and [(dC/dW^(l), dC/db^(l))] of a network of Dense layers, by the tutorial's formulas.

    Args:
        weights: [(W^(l), b^(l) or None) for l = 1..L], ``W[j][k] = w_jk^(l)``.
        activations: g^(l) names for l = 1..L.
        loss: ``sse``, ``mse``, ``cross_entropy`` or ``binary_cross_entropy``.
        X: n samples of n_0 inputs; Y: n rows of targets (or n integer class labels).
    """
    layers = [RefDense(W, b, act) for (W, b), act in zip(weights, activations)]
    return layers_loss_and_grads(layers, loss, X, Y)


def net_loss_and_grads(net: Any, X: Any, Y: Any, training: bool = True) -> Tuple[float, List[Tuple[Any, ...]]]:
    """:func:`layers_loss_and_grads` on the layers of a :class:`gpubp.MLP` (each layer's own
    reference); in training mode a Dropout takes the mask of its last training pass."""
    to_np = net.backend.to_numpy
    n = np.shape(X)[0]
    layers = [layer.reference(to_np, training, n) for layer in net.layers[1:]]
    return layers_loss_and_grads(layers, net.loss.name, to_np(net.backend.asarray(X)), to_np(net.backend.asarray(Y)))


def explain_parameter(net: Any, X: Any, Y: Any, l: int, j: int, k: Optional[int],
                      training: bool = True) -> Dict[str, Any]:
    """The tutorial's chain rule for w_jk^(l) (``k`` None: b_j^(l)) of a :class:`gpubp.MLP`, one
    sample at a time (1-based j, k, as the tutorial numbers nodes), on the layers of
    :func:`net_loss_and_grads` (a Dropout takes the mask of the last training pass):

        dC_0/dw_jk^(l) = dC_0/da_j^(l) * g'^(l)(z_j^(l)) * a_k^(l-1)

    Returns per-sample lists: ``dC_da`` (the output layer: 2 s (a_j - y_j) for sse and mse,
    s = 1 or 1/m, None for a fused head; a hidden layer: the signal its backward pass received),
    ``da_dz`` (g'(z_j), 1 without activation; None for a softmax or fused output), ``dC_dz``,
    ``dz_dw`` (a_k^(l-1) as layer l reads it, or 1), ``per_sample`` (dC_0/dz_j * a_k), ``value``
    (their average) and, for a hidden layer, ``upper``: layer l+1's ``dC_da``, ``da_dz``, ``dC_dz``
    for all its nodes and ``d_in``, the signal at its input (sum_i dC_0/dz_i^(l+1) w_ij^(l+1)).
    """
    to_np = net.backend.to_numpy
    n = np.shape(X)[0]
    layers = [layer.reference(to_np, training, n) for layer in net.layers[1:]]
    Xh, Yh = to_np(net.backend.asarray(X)), to_np(net.backend.asarray(Y))
    layers_loss_and_grads(layers, net.loss.name, Xh, Yh)
    dense = [layer for layer in layers if isinstance(layer, RefDense)]
    out = dense[-1]
    m = len(out.W)
    Yrows = [[1.0 if c == int(lbl) else 0.0 for c in range(m)] for lbl in Yh] if Yh.ndim == 1 else \
        np.asarray(Yh, dtype=np.float64).reshape(n, m).tolist()

    def signals(layer: RefDense) -> Tuple[Optional[List[List[float]]], Optional[List[List[float]]]]:
        """(dC_0/da, g'(z)) of every node of ``layer``, per sample."""
        if layer is out:
            if net.loss.name not in ("sse", "mse"):
                return None, None
            scale = 1.0 if net.loss.name == "sse" else 1.0 / m
            dc_da = [[scale * 2.0 * (out.a[i][c] - Yrows[i][c]) for c in range(m)] for i in range(n)]
            if out.act == "softmax":
                return dc_da, None
            gprime = SCALAR_ACTIVATIONS[out.act][1]
            return dc_da, [[gprime(v) for v in row] for row in out.z]
        gprime = (lambda v: 1.0) if layer.act is None else SCALAR_ACTIVATIONS[layer.act][1]
        return layer.d_out, [[gprime(v) for v in row] for row in layer.z]

    layer = dense[l - 1]
    dc_da, da_dz = signals(layer)
    res: Dict[str, Any] = {
        "dC_da": None if dc_da is None else [row[j - 1] for row in dc_da],
        "da_dz": None if da_dz is None else [row[j - 1] for row in da_dz],
        "dC_dz": [row[j - 1] for row in layer.dz],
        "dz_dw": [1.0 if k is None else row[k - 1] for row in layer.inputs],
    }
    if res["da_dz"] is not None:  # the tutorial's three factors
        res["per_sample"] = [a * b * c for a, b, c in zip(res["dC_da"], res["da_dz"], res["dz_dw"])]
    else:
        res["per_sample"] = [a * c for a, c in zip(res["dC_dz"], res["dz_dw"])]
    res["value"] = sum(res["per_sample"]) / n
    if l < len(dense):
        up = dense[l]
        up_da, up_dz = signals(up)
        res["upper"] = {"dC_da": up_da, "da_dz": up_dz, "dC_dz": up.dz, "d_in": [row[j - 1] for row in up.d_in]}
    return res


def average_outer_products(Delta: Any, A_prev: Any) -> np.ndarray:
    """dC/dW = (1/n) sum_i delta_i a_i^T: the tutorial's per-sample averaging, one outer product a sample."""
    n = Delta.shape[0]
    dW = np.zeros((Delta.shape[1], A_prev.shape[1]), dtype=Delta.dtype)
    for i in range(n):
        dW += np.outer(Delta[i], A_prev[i])
    dW /= n
    return dW


def average_rows(Delta: Any) -> np.ndarray:
    """dC/db = (1/n) sum_i delta_i: the tutorial's per-sample averaging of the bias gradient, a sample at a time."""
    n = Delta.shape[0]
    db = np.zeros(Delta.shape[1], dtype=Delta.dtype)
    for i in range(n):
        db += Delta[i]
    db /= n
    return db


def philox4x64(counter: Sequence[int], key: Sequence[int]) -> List[int]:
    """Philox4x64-10 (Salmon et al., SC 2011) of one 256-bit counter under a 128-bit key, as four
    Python ints, written out from the paper: the oracle of the dropout generator on both backends."""
    mask = (1 << 64) - 1
    c = [int(x) & mask for x in counter]
    k = [int(x) & mask for x in key]
    for _ in range(10):
        p0, p1 = 0xD2E7470EE14C6C93 * c[0], 0xCA5A826395121157 * c[2]  # the two multipliers
        c = [(p1 >> 64) ^ c[1] ^ k[0], p1 & mask, (p0 >> 64) ^ c[3] ^ k[1], p0 & mask]
        k = [(k[0] + 0x9E3779B97F4A7C15) & mask, (k[1] + 0xBB67AE8584CAA73B) & mask]  # the Weyl key schedule
    return c


def dropout_uniform(seed: int, stream: int, call: int, element: int, dtype: str) -> float:
    """The uniform number of element ``element`` of a dropout call (gpubp/philox.py's definition),
    one element at a time."""
    if dtype == "float64":
        word = philox4x64([element // 4 + 1, call, 0, 0], [seed, stream])[element % 4]
        return (word >> 11) * 2.0**-53
    word = philox4x64([element // 8 + 1, call, 0, 0], [seed, stream])[(element // 2) % 4]
    half = word >> 32 if element % 2 else word & 0xFFFFFFFF
    return (half >> 8) * 2.0**-24
