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


def loss_and_grads(
    weights: Sequence[Tuple[Any, Optional[Any]]],
    activations: Sequence[str],
    loss: str,
    X: Any,
    Y: Any,
) -> Tuple[float, List[Tuple[np.ndarray, Optional[np.ndarray]]]]:
    """C and [(dC/dW^(l), dC/db^(l))] by the tutorial's per-sample, per-weight formulas.

    Args:
        weights: [(W^(l), b^(l) or None) for l = 1..L], ``W[j][k] = w_jk^(l)``.
        activations: g^(l) names for l = 1..L.
        loss: ``sse``, ``mse``, ``cross_entropy`` or ``binary_cross_entropy``.
        X: n samples of n_0 inputs; Y: n rows of targets (or n integer class labels).
    """
    W = [np.asarray(w, dtype=np.float64).tolist() for w, _ in weights]
    B = [None if b is None else np.asarray(b, dtype=np.float64).tolist() for _, b in weights]
    X = np.asarray(X, dtype=np.float64).tolist()
    Y = np.asarray(Y)
    L = len(W)
    m = len(W[-1])
    if Y.ndim == 1 and loss == "cross_entropy":
        Yrows = [[1.0 if j == int(lbl) else 0.0 for j in range(m)] for lbl in Y]
    else:
        Yrows = np.asarray(Y, dtype=np.float64).reshape(len(X), m).tolist()
    n = len(X)

    gW = [[[0.0] * len(W[l][0]) for _ in W[l]] for l in range(L)]
    gB = [[0.0] * len(W[l]) for l in range(L)]
    total = 0.0
    for i in range(n):  # one sample at a time
        # forward: z_j = sum_k w_jk a_k + b_j, a_j = g(z_j)
        a_layers = [X[i]]
        z_layers: List[List[float]] = [[]]
        for l in range(L):
            a_prev = a_layers[-1]
            z = []
            for j in range(len(W[l])):
                s = sum(W[l][j][k] * a_prev[k] for k in range(len(a_prev)))
                z.append(s + (B[l][j] if B[l] is not None else 0.0))
            act = activations[l]
            a = _softmax(z) if act == "softmax" else [SCALAR_ACTIVATIONS[act][0](v) for v in z]
            z_layers.append(z)
            a_layers.append(a)
        c0, dz = _sample_loss_and_output_signal(loss, activations[-1], z_layers[L], a_layers[L], Yrows[i])
        total += c0
        # backward: from layer L down to 1
        for l in range(L, 0, -1):
            a_prev = a_layers[l - 1]
            for j in range(len(dz)):
                for k in range(len(a_prev)):
                    gW[l - 1][j][k] += dz[j] * a_prev[k]  # dC_0/dw_jk = dC_0/dz_j * a_k
                gB[l - 1][j] += dz[j]
            if l > 1:
                gprime = SCALAR_ACTIVATIONS[activations[l - 2]][1]
                z_below = z_layers[l - 1]
                # dC_0/da_k^(l-1) = sum_j dC_0/dz_j^(l) w_jk^(l); then times g'(z_k^(l-1))
                dz = [
                    sum(dz[j] * W[l - 1][j][k] for j in range(len(dz))) * gprime(z_below[k])
                    for k in range(len(a_prev))
                ]
    grads = []
    for l in range(L):
        dW = np.array(gW[l]) / n  # averaged over the n samples
        db = None if B[l] is None else np.array(gB[l]) / n
        grads.append((dW, db))
    return total / n, grads


def net_loss_and_grads(net: Any, X: Any, Y: Any) -> Tuple[float, List[Tuple[np.ndarray, Optional[np.ndarray]]]]:
    """:func:`loss_and_grads` on the weights of a :class:`gpubp.MLP`."""
    to_np = net.backend.to_numpy
    weights = [(to_np(layer.W), None if layer.b is None else to_np(layer.b)) for layer in net.layers[1:]]
    return loss_and_grads(weights, [a.name for a in net.activations], net.loss.name, to_np(net.backend.asarray(X)),
                          to_np(net.backend.asarray(Y)))


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
