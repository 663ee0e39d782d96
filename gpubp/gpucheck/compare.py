"""gpucheck's comparisons: every hot operation and full training steps of one backend against
another (CuPy against NumPy on a GPU; the host build of the kernels against NumPy in the CPU
test suite), on the same inputs.

The error measure is normwise: max|got - want| / max|want| over the finite entries, with NaN
and infinities required in the same places. It must stay below 1e-5 in float32 and 1e-12
in float64. Shapes are (n, width) pairs; gpucheck runs :data:`SHAPES`, which on an H100/H200
wrap every grid-stride loop, the row kernels' column stride and both strides of the column
reduction, besides a tiny shape.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..activations import ACTIVATIONS, ELEMENTWISE
from ..backend import Backend, use_backend
from ..losses import LOSSES
from ..optim import AdamHyperparameters, AdamWHyperparameters, SGDHyperparameters

TOLERANCES: Dict[str, float] = {"float32": 1e-5, "float64": 1e-12}
DTYPES = tuple(TOLERANCES)
# (n, width): the usual shape; one whose sizes wrap, on an H100/H200 (132 SMs of 2048
# threads), the flat kernels' grid-stride loop (n * width > 132 * 2048), the row kernels' grid
# (n > 132 * 2048 / 256 rows) and column stride (width > 256 threads), and both strides of
# the column reduction; and a tiny one (fewer elements than a warp).
SHAPES: Tuple[Tuple[int, int], ...] = ((257, 131), (4099, 1031), (3, 2))
HEADS = (
    [("sse", a) for a in ELEMENTWISE + ("softmax",)]
    + [("mse", a) for a in ELEMENTWISE + ("softmax",)]
    + [("cross_entropy", "softmax"), ("cross_entropy:labels", "softmax"), ("binary_cross_entropy", "sigmoid")]
)


@dataclass
class Check:
    """One comparison: ``rel_err`` against the tolerance of its dtype."""

    name: str
    dtype: str
    rel_err: float
    tol: float
    shape: str = ""

    @property
    def passed(self) -> bool:
        return self.rel_err < self.tol

    def as_dict(self) -> Dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def rel_err(got: Any, want: Any) -> float:
    """max|got - want| / max|want| over the finite entries (normwise relative error); ``inf``
    when the shapes differ, NaN or infinities are not in the same places, or infinities differ.

    Computed in the wider of the two dtypes (at least float32): its rounding, relative
    1e-7 of the error itself, is far below the tolerances.
    """
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    dtype = np.result_type(got.dtype, want.dtype, np.float32)
    got, want = got.astype(dtype, copy=False), want.astype(dtype, copy=False)
    if not (np.isfinite(want).all() and np.isfinite(got).all()):
        nan, inf = np.isnan(want), np.isinf(want)
        if not np.array_equal(np.isnan(got), nan) or not np.array_equal(np.isinf(got), inf):
            return float("inf")
        if not np.array_equal(got[inf], want[inf]):
            return float("inf")
        fin = ~(nan | inf)
        if not fin.any():
            return 0.0
        got, want = got[fin], want[fin]
    scale = max(float(want.max()), -float(want.min()))
    d = got - want
    diff = max(float(d.max()), -float(d.min()))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _targets(loss_key: str, n: int, m: int, dtype: str, rng: np.random.Generator) -> np.ndarray:
    if loss_key == "cross_entropy:labels":
        return rng.integers(0, m, n).astype(np.int64)
    if loss_key == "cross_entropy":
        return np.eye(m, dtype=dtype)[rng.integers(0, m, n)]
    if loss_key == "binary_cross_entropy":
        return rng.uniform(size=(n, m)).astype(dtype)
    return rng.normal(size=(n, m)).astype(dtype)


def compare_ops(candidate: Backend, reference: Backend, dtypes: Sequence[str] = DTYPES,
                shapes: Sequence[Tuple[int, int]] = SHAPES[:1], seed: int = 0) -> List[Check]:
    """Every hot operation of ``candidate.ops`` against ``reference.ops`` on the same inputs,
    for each (n, width) of ``shapes``: activations and dC/db on (n, width) batches, loss heads
    with width output nodes, dC/dW of a layer of width x 67, optimizers over n * width + 1
    parameters."""
    checks: List[Check] = []
    for n, width in shapes:
        checks += _compare_ops(candidate, reference, dtypes, n, width, seed)
    return checks


def _compare_ops(candidate: Backend, reference: Backend, dtypes: Sequence[str], n: int, width: int,
                 seed: int) -> List[Check]:
    checks: List[Check] = []
    rng = np.random.default_rng(seed)
    c, r = candidate, reference
    shape = f"{n}x{width}"

    def run(backend: Backend, fn: Any, *arrays: np.ndarray) -> List[np.ndarray]:
        """Call ``fn(ops, *arrays on the backend)``; returns every array argument afterwards, on the host."""
        moved = [backend.asarray(a).copy() if isinstance(a, np.ndarray) else a for a in arrays]
        result = fn(backend.ops, *moved)
        backend.synchronize()
        outs = [backend.to_numpy(a) for a in moved if a is not None and not np.isscalar(a)]
        if result is not None:
            outs.append(backend.to_numpy(result))
        return outs

    def compare(name: str, dtype: str, fn: Any, *arrays: Any) -> None:
        got, want = run(c, fn, *arrays), run(r, fn, *arrays)
        err = max((rel_err(g, w) for g, w in zip(got, want)), default=0.0)
        checks.append(Check(name, dtype, err, TOLERANCES[dtype], shape))

    for dtype in dtypes:
        Z = (rng.normal(size=(n, width)) * 3.0).astype(dtype)
        Z.flat[:4] = [0.0, -0.0, 40.0, -40.0][: Z.size]
        b = rng.normal(size=width).astype(dtype)
        dA = rng.normal(size=(n, width)).astype(dtype)
        for name, act in ACTIVATIONS.items():
            A = np.empty_like(Z)
            compare(f"forward {name}, bias", dtype, lambda o, Z, b, A, act=act: o.bias_activation(Z, b, act, A), Z, b, A)
            compare(f"forward {name}, no bias", dtype, lambda o, Z, A, act=act: o.bias_activation(Z, None, act, A), Z, A)
            with np.errstate(all="ignore"):
                A = act.forward(np, Z).astype(dtype)
            compare(f"backward {name}", dtype, lambda o, dA, Z, A, act=act: o.activation_backward(dA, Z, A, act, dA),
                    dA, Z, A)
        m = width
        Zo = (rng.normal(size=(n, m)) * 3.0).astype(dtype)
        for loss_key, act_name in HEADS:
            loss, act = LOSSES[loss_key.split(":")[0]], ACTIVATIONS[act_name]
            Y = _targets(loss_key, n, m, dtype, rng)
            with np.errstate(all="ignore"):
                A = act.forward(np, Zo).astype(dtype)
            Delta = np.empty_like(Zo)
            compare(f"loss head {loss_key} / {act_name}", dtype,
                    lambda o, Z, A, Y, D, loss=loss, act=act: o.loss_head(loss, act, Z, A, Y, D), Zo, A, Y, Delta)
        A_prev = rng.normal(size=(n, 67)).astype(dtype)
        compare("dC/dW (1/n) Delta^T A", dtype, lambda o, D, Ap, out: o.grad_weights(D, Ap, out), dA, A_prev,
                np.empty((width, 67), dtype=dtype))
        compare("dC/db (1/n) sum Delta", dtype, lambda o, D, out: o.grad_bias(D, out), dA, np.empty(width, dtype=dtype))
        p = rng.normal(size=n * width + 1).astype(dtype)  # as many parameters as the batch has entries
        g = (rng.normal(size=p.size) * 0.1).astype(dtype)
        for label, mom, nest, wd in (("SGD", 0.0, False, 0.0), ("SGD + decay", 0.0, False, 1e-2),
                                     ("SGD momentum", 0.9, False, 0.0), ("SGD Nesterov + decay", 0.9, True, 5e-4)):
            v = np.ones_like(p) * 0.01 if mom else None
            sgd = SGDHyperparameters(lr=0.1, momentum=mom, nesterov=nest, weight_decay=wd)
            compare(label, dtype, lambda o, p, g, v, sgd=sgd: o.sgd_update(p, g, v, sgd), p, g, v)
        for wd in (0.0, 1e-2):
            m1, v1 = (g * 0.1).astype(dtype), (g * g).astype(dtype)
            adam = AdamHyperparameters(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
            compare(f"Adam step 3, decay {wd}", dtype,
                    lambda o, p, g, m1, v1, adam=adam: o.adam_update(p, g, m1, v1, 3, adam), p, g, m1, v1)
            adamw = AdamWHyperparameters(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
            compare(f"AdamW step 3, decay {wd}", dtype,
                    lambda o, p, g, m1, v1, adamw=adamw: o.adamw_update(p, g, m1, v1, 3, adamw), p, g, m1, v1)
        for max_norm in (1e-3, 1e9):  # clipped, and left alone
            compare(f"clip_grad_norm to {max_norm:g}", dtype, lambda o, g, c=max_norm: o.clip_grad_norm(g, c), g)
    return checks


TRAINING_CASES = (
    ("sse", "sigmoid", ("relu", "tanh", "sigmoid")),
    ("mse", "identity", ("leaky_relu", "elu", "softplus")),
    ("cross_entropy", "softmax", ("gelu", "gelu_tanh", "silu")),
    ("binary_cross_entropy", "sigmoid", ("identity", "relu", "tanh")),
)


def compare_training(candidate: Backend, reference: Backend, dtypes: Sequence[str] = DTYPES, steps: int = 2,
                     seed: int = 0, shapes: Sequence[Tuple[int, int]] = ((128, 64),)) -> List[Check]:
    """Full training steps (forward, loss head, backward, optimizer) of the same network on both
    backends: the loss of every step, the gradients of the first step, and the parameters after
    the last SGD step. For each (n, width) of ``shapes`` the network is 48-width-width-width-10
    and the batch n rows.

    Parameters after Adam steps are not compared elementwise: Adam divides each gradient entry
    by its own running magnitude, so an entry of ~1e-9 whose last bits differ between two
    correct implementations can move its weight by up to lr either way. Their effect still
    shows in the losses of the later steps.
    """
    from ..network import MLP
    from ..optim import SGD, Adam

    checks: List[Check] = []
    rng = np.random.default_rng(seed)
    for (n, width), dtype in ((s, d) for s in shapes for d in dtypes):
        tol = TOLERANCES[dtype]
        for loss, out, hidden in TRAINING_CASES:
            X = rng.normal(size=(n, 48))
            Y = _targets("cross_entropy:labels" if loss == "cross_entropy" else loss, n, 10, "float64", rng)
            for opt_name in ("adam", "nesterov"):
                results = []
                for backend in (candidate, reference):
                    with use_backend("numpy"):
                        net = MLP([48, width, width, width, 10], activation=list(hidden), output_activation=out,
                                  loss=loss, dtype=dtype, seed=seed)
                    net.to(backend)
                    opt = Adam(1e-3) if opt_name == "adam" else SGD(0.05, momentum=0.9, nesterov=True)
                    Xb, Yb = backend.asarray(X), backend.asarray(Y)
                    losses = [float(net.train_step(Xb, Yb, opt))]
                    grads = backend.to_numpy(net.grads).copy()
                    losses += [float(net.train_step(Xb, Yb, opt)) for _ in range(steps - 1)]
                    results.append((losses, grads, backend.to_numpy(net.params)))
                (lc, gc, pc), (lr_, gr, pr) = results
                name = f"training {loss}/{out}, hidden {'+'.join(hidden)}, {opt_name}"
                shape = f"{n}x{width}"
                checks.append(Check(f"{name}: loss of {steps} steps", dtype, rel_err(lc, lr_), tol, shape))
                checks.append(Check(f"{name}: gradients", dtype, rel_err(gc, gr), tol, shape))
                if opt_name != "adam":
                    checks.append(Check(f"{name}: parameters", dtype, rel_err(pc, pr), tol, shape))
    return checks


#: Networks with Dropout and BatchNorm for :func:`compare_layer_training`: (hidden activation,
#: dropout p, batch_norm, loss, bias) of a 48-width-width-10 MLP, and (activation None) one built
#: from layers with a Dropout of its own on the inputs and after a linear part. Together they
#: launch every layer kernel: BatchNorm with and without a dropout in its passes, a dropout fused
#: into the activation pass with and without a bias, and a dropout on its own.
LAYER_TRAINING_CASES = (
    ("relu", 0.2, True, "cross_entropy", True),
    ("gelu_tanh", 0.5, True, "mse", True),
    ("silu", 0.3, False, "binary_cross_entropy", True),
    ("tanh", 0.0, True, "mse", True),
    ("relu", 0.2, False, "cross_entropy", False),
    (None, 0.3, False, "cross_entropy", True),
)


def _layer_case_network(case: Tuple[Any, ...], width: int, dtype: str, seed: int) -> Any:
    """The network of one of :data:`LAYER_TRAINING_CASES`, on the NumPy backend."""
    from ..layers import Dense, Dropout
    from ..network import MLP

    act, p, batch_norm, loss, bias = case
    if act is not None:
        return MLP([48, width, width, 10], activation=act, loss=loss, dtype=dtype, seed=seed, dropout=p,
                   batch_norm=batch_norm, bias=bias)
    return MLP.from_layers(48, [Dropout(p / 3), Dense(width, "relu"), Dense(width, None), Dropout(p), Dense(10)],
                           loss=loss, dtype=dtype, seed=seed)


def _layer_case_label(case: Tuple[Any, ...]) -> str:
    act, p, batch_norm, loss, bias = case
    if act is None:
        return f"training {loss}, Dropout on the inputs and after a linear part"
    return (f"training {loss}, hidden {act}, dropout {p}{', batch_norm' if batch_norm else ''}"
            f"{'' if bias else ', no bias'}")


def compare_layer_training(candidate: Backend, reference: Backend, dtypes: Sequence[str] = DTYPES, steps: int = 3,
                           seed: int = 0, shapes: Sequence[Tuple[int, int]] = ((128, 64),)) -> List[Check]:
    """Training steps of networks with Dropout (the same masks on both backends: one generator)
    and BatchNorm: the loss of every step, the gradients of the first, and after the last (SGD
    with momentum) the parameters, the running statistics and an inference pass's outputs. For
    each (n, width) of ``shapes`` the network is 48-width-width-10 and the batch n rows."""
    from ..optim import SGD

    checks: List[Check] = []
    rng = np.random.default_rng(seed)
    for (n, width), dtype in ((s, d) for s in shapes for d in dtypes):
        tol = TOLERANCES[dtype]
        for case in LAYER_TRAINING_CASES:
            loss = case[3]
            X = rng.normal(0.5, 2.0, size=(n, 48))
            Y = _targets("cross_entropy:labels" if loss == "cross_entropy" else loss, n, 10, "float64", rng)
            results = []
            for backend in (candidate, reference):
                with use_backend("numpy"):
                    net = _layer_case_network(case, width, dtype, seed)
                net.to(backend)
                opt = SGD(0.05, momentum=0.9)
                Xb, Yb = backend.asarray(X), backend.asarray(Y)
                losses = [float(net.train_step(Xb, Yb, opt))]
                grads = backend.to_numpy(net.grads).copy()
                losses += [float(net.train_step(Xb, Yb, opt)) for _ in range(steps - 1)]
                outputs = backend.to_numpy(net.forward(Xb))
                results.append((losses, grads, backend.to_numpy(net.params), backend.to_numpy(net.state), outputs))
            label = _layer_case_label(case)
            for what, got, want in zip((f"loss of {steps} steps", "gradients", "parameters", "running statistics",
                                        "inference outputs"), *results):
                if np.size(want):
                    checks.append(Check(f"{label}: {what}", dtype, rel_err(got, want), tol, f"{n}x{width}"))
    return checks
