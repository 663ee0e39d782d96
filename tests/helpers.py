"""Helpers shared by the tests (and the MPI worker they start): targets for every loss head,
the relative error, a snapshot of a network and its optimizer, the layer stacks the layer
tests build, and the array layers an update is checked on."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from gpubp.activations import ACTIVATIONS
from gpubp.layers import BatchNorm, Dense, Dropout
from gpubp.losses import LOSSES


def _heads() -> List[Tuple[str, str]]:
    """Every (loss, output activation) pair a network can have, from the two tables; a loss that
    reads integer labels also appears as ``"<loss>:labels"``."""
    heads: List[Tuple[str, str]] = []
    for name, loss in LOSSES.items():
        outputs = [loss.requires_output_activation] if loss.requires_output_activation else list(ACTIVATIONS)
        heads += [(name, act) for act in outputs]
        if loss.accepts_labels:
            heads += [(f"{name}:labels", act) for act in outputs]
    return heads


#: Every output head: (loss key, output activation name); loss keys as :func:`targets` takes them.
HEADS: List[Tuple[str, str]] = _heads()


def targets(loss_key: str, n: int, m: int, rng: np.random.Generator, dtype: Any = "float64",
            soft_first_row: bool = False) -> np.ndarray:
    """Targets Y of n rows for m output nodes that the loss accepts.

    ``"<loss>:labels"``: integer class labels; ``cross_entropy``: one-hot rows (the first one
    soft, summing to other than 1, with ``soft_first_row``); ``binary_cross_entropy``: values in
    [0, 1); the squared errors: standard normal values.
    """
    loss, _, kind = loss_key.partition(":")
    if kind == "labels":
        return rng.integers(0, m, n).astype(np.int64)
    if loss == "cross_entropy":
        Y = np.eye(m)[rng.integers(0, m, n)]
        if soft_first_row:
            Y[0] = rng.uniform(size=m)
        return Y.astype(dtype)
    if loss == "binary_cross_entropy":
        return rng.uniform(size=(n, m)).astype(dtype)
    return rng.normal(size=(n, m)).astype(dtype)


def rel_err(a: Any, b: Any) -> float:
    """max |a - b| / max |b| (normwise relative error of ``a`` against the reference ``b``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@dataclass
class Snapshot:
    """Host copies of a network's parameters and of its optimizer's step count, buffers and
    hyper-parameters (with the base lr of a schedule), with the shuffling generator's state and
    the epoch count; two are equal when every bit is."""

    params: np.ndarray
    state: Dict[str, np.ndarray] = field(default_factory=dict)
    t: Optional[int] = None
    rng: str = ""
    epoch: int = 0
    hyper: str = ""

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, Snapshot) and self.params.tobytes() == other.params.tobytes()
                and self.state.keys() == other.state.keys()
                and all(v.tobytes() == other.state[k].tobytes() for k, v in self.state.items())
                and (self.t, self.rng, self.epoch, self.hyper) == (other.t, other.rng, other.epoch, other.hyper))


def snapshot(net: Any, opt: Any = None) -> Snapshot:
    """A :class:`Snapshot` of ``net`` (and ``opt``) now."""
    to_np = net.backend.to_numpy
    state = {k: to_np(v).copy() for k, v in opt.state.items()} if opt is not None else {}
    hyper = repr((getattr(opt, "hyper", None), getattr(opt, "initial_lr", None)))
    return Snapshot(to_np(net.params).copy(), state, None if opt is None else opt.t,
                    repr(net.rng.bit_generator.state), net.epoch, hyper)


SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 80.0, -80.0, 1e-30, -1e-30, 1e-40, -1e-300]


def special_values(rng, shape, dtype, at_end=False):
    """Normal values with NaN, +-inf, +-0, tiny and large |z| mixed in (first or last in flat order)."""
    Z = rng.normal(scale=3.0, size=shape)
    flat = Z.reshape(-1)
    if at_end:
        flat[-len(SPECIALS):] = SPECIALS
    else:
        flat[: len(SPECIALS)] = SPECIALS
    return Z.astype(dtype)


def assert_same(x, y):
    """Equal values, NaN at the same places and the same sign of every zero."""
    np.testing.assert_array_equal(x, y)
    assert np.array_equal(np.isnan(x), np.isnan(y))
    numbers = ~np.isnan(x)
    assert np.array_equal(np.signbit(x[numbers]), np.signbit(y[numbers])), "a zero of another sign"


def softmax_logits(rng, n, m, dtype):
    """Ordinary rows (scale 3) with, at both ends, rows that take every branch of softmax:
    entries flushed to 0 (exp(z - max) below the smallest normal number), a probability that
    turns denormal only in the division, NaN, +inf, -inf entries and an all -inf row."""
    f = np.finfo(dtype)
    far = 100.0 if dtype == "float32" else 800.0  # exp(-far) underflows below the smallest normal
    near = float(np.log(2.0 * float(f.tiny)))  # exp(near) ~ 2 tiny, normal; divided by 4, denormal
    special = np.zeros((7, m))
    special[0, 1::2] = -far
    special[1, :4] = 0.0
    special[1, 4:] = -far
    special[1, 4 % m] = near
    special[2, 0] = np.nan
    special[3, m // 2] = np.inf
    special[4, ::3] = -np.inf
    special[5] = -np.inf
    special[6] = [0.0, -0.0] * (m // 2) + [1.0] * (m % 2)
    Z = rng.normal(scale=3.0, size=(n, m))
    k = min(len(special), n // 2)
    Z[:k] = special[:k]
    Z[n - k:] = special[:k]
    return Z.astype(dtype)


def dense_sources() -> tuple:
    """The kernel sources a network of Dense layers launches (the Dropout and BatchNorm sources
    are compiled only for a network that has those layers)."""
    from gpubp.ops import cuda_kernels as ck

    return tuple(s for s in ck.SOURCES if s not in ("dropout.cu", "batch_norm.cu"))


#: Layer stacks (``lambda bias: [layers]``) with Dropout and BatchNorm, for the layer tests.
LAYER_ARCHS = {
    # depth 1 hidden: dropout after the activation (fused into its pass)
    "dense-dropout": lambda bias: [Dense(7, "tanh", bias=bias), Dropout(0.3), Dense(3, bias=bias)],
    # the batch_norm shortcut's shape: linear part, BatchNorm with the activation, dropout
    "dense-bn-dropout": lambda bias: [Dense(7, None, bias=bias), BatchNorm(activation="gelu"), Dropout(0.4),
                                      Dense(3, bias=bias)],
    # depth 2: input dropout, BatchNorm without activation then a Dense with one, dropout after
    # a linear part (not fused), two dropouts in a row
    "deep": lambda bias: [Dropout(0.2), Dense(6, None, bias=bias), BatchNorm(momentum=0.3), Dropout(0.25),
                          Dense(5, "silu", bias=bias), Dropout(0.1), Dropout(0.5), Dense(3, bias=bias)],
    # depth 3: BatchNorm first (on the inputs), BatchNorm with relu, dropout everywhere
    "deeper": lambda bias: [BatchNorm(eps=1e-3), Dense(8, "elu", bias=bias), Dropout(0.5),
                            Dense(6, None, bias=bias), BatchNorm(activation="relu"), Dense(5, "softplus", bias=bias),
                            BatchNorm(activation="tanh", momentum=0.0), Dropout(0.3), Dense(3, bias=bias)],
}


def ops_of(kind: str) -> Any:
    """The array layer ``kind`` names: ``reference`` (the Ops written once against NumPy),
    ``kernels`` (CupyOps on the host build of the CUDA kernels; skips without a compiler),
    ``numpy`` (NumpyOps on NumPy's own products) or a BLAS of ``gpubp.ops._blas``."""
    import pytest

    import host_kernels
    from gpubp.ops import _blas
    from gpubp.ops.base import Ops
    from gpubp.ops.numpy_ops import NumpyOps

    if kind == "reference":
        return Ops(np)
    if kind == "kernels":
        if host_kernels.compiler_missing():
            pytest.skip(host_kernels.compiler_missing())
        return host_kernels.host_cupy_ops(host_kernels.build())
    return NumpyOps(blas=None if kind == "numpy" else _blas.load(kind))
