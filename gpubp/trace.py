"""One batched pass with its inside kept: what :meth:`gpubp.MLP.trace` returns.

The network runs its own forward and backward pass (the same workspace, the same ops, the
same kernels as a training step); :func:`trace` copies the arrays as the pass goes by, through
the hook of :meth:`gpubp.MLP.backprop`, before the in-place backward pass overwrites
them. Nothing is computed a second way: every array of a :class:`Trace` is one the pass
computed, except ``dA`` of a Dense layer whose activation pass also applies a Dropout, which is
the signal at the dropped output times the dropout's mask, as the fused backward pass forms it
(MATH.md, Dropout).

The pass is the one a training step would run next (``training=True``: the dropout masks of the
next step, BatchNorm on the batch's statistics) or an inference pass, and it leaves the network
as it was: no mask is used up, no running statistic moves. Only the gradient buffer holds this
pass's gradients afterwards, as after :meth:`~gpubp.MLP.loss_and_grads`. With an L2 penalty
(``l2 > 0``) ``C`` and the ``dW`` are those of :meth:`~gpubp.MLP.loss_and_grads` too: the
penalty's (lambda/2n) sum ||W||^2 and (lambda/n) W included (MATH.md, L2 penalty).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import memory, steps, validation
from .layers import BatchNorm, Dense, Dropout, Layer

#: The forward arrays kept of each kind of layer (names of its cache's arrays).
FORWARD_ARRAYS = ((Dense, ("Z", "A")), (BatchNorm, ("Xhat", "Y", "A", "mean", "inv_std")), (Dropout, ()))


def _forward_arrays(layer: Layer) -> Tuple[str, ...]:
    for kind, names in FORWARD_ARRAYS:
        if isinstance(layer, kind):
            return names
    raise TypeError(f"no trace of a {type(layer).__name__} layer")


@dataclass(frozen=True)
class Step:
    """One layer object of the traced pass (``net.layers[index]``), all arrays copies.

    Attributes:
        input: the rows the layer read (n, n_in).
        arrays: its forward arrays (Dense: ``Z``, ``A``; BatchNorm: ``Xhat`` (zhat), ``Y`` (y),
            ``A`` (g(y)), ``mean`` (mu), ``inv_std`` (1/sqrt(sigma^2 + eps))) and, where the layer
            applied a dropout (its own, or one fused into its activation pass), ``mask``
            (m / (1 - p)) and ``out`` (the dropped output).
        dout: the error signal at the layer's output before its backward pass (MATH.md: one row
            per sample, n dC/d(output)); None for the last layer, whose head writes Delta^(L).
        after: what the layer's backward pass left in that signal array: Delta for a Dense layer,
            delta = dout * g'(y) for a BatchNorm, the signal at its input for a Dropout.
        grads: its parameter gradients by name (``W``, ``b``; ``gamma``, ``beta``).
        draw: the dropout draw the layer applied (its stream position), or None.
    """

    index: int
    layer: Layer
    input: Any
    arrays: Dict[str, Any]
    dout: Optional[Any]
    after: Any
    grads: Dict[str, Any]
    draw: Any = None


@dataclass(frozen=True)
class DenseTrace:
    """Dense layer l of a traced pass: copies (arrays of the network's backend and dtype).

    ``A_prev`` is A^(l-1) as layer l read it (after any Dropout or BatchNorm below it), ``Z`` and
    ``A`` are Z^(l) and A^(l) = g^(l)(Z^(l)), ``dA`` is dC_0/dA^(l) (the signal at A^(l), one row
    per sample; None for the output layer, whose loss head gives Delta^(L) directly), ``Delta`` is
    Delta^(l) = dC_0/dZ^(l), ``dW`` and ``db`` are dC/dW^(l) and dC/db^(l) (``db`` None without bias).
    """

    l: int
    layer: Dense
    A_prev: Any
    Z: Any
    A: Any
    dA: Optional[Any]
    Delta: Any
    dW: Any
    db: Optional[Any]


class Trace:
    """A traced pass: ``trace[l]`` (l = 1..L) is Dense layer l's :class:`DenseTrace`, ``trace.C`` the
    loss, ``trace.steps`` every layer object's :class:`Step` (``steps[i - 1]`` is ``net.layers[i]``'s),
    ``trace.X`` and ``trace.Y`` the batch (backend arrays), ``trace.n`` its rows."""

    def __init__(self, net: Any, X: Any, Y: Any, C: float, training: bool, steps: List[Step], dense: List[DenseTrace]):
        self.net, self.X, self.Y, self.C = net, X, Y, C
        self.n = int(X.shape[0])
        self.training = training
        self.steps: Tuple[Step, ...] = tuple(steps)
        self.dense: Tuple[DenseTrace, ...] = tuple(dense)

    @property
    def L(self) -> int:
        return len(self.dense)

    def __len__(self) -> int:
        return len(self.dense)

    def __iter__(self) -> Iterator[DenseTrace]:
        return iter(self.dense)

    def __getitem__(self, l: int) -> DenseTrace:
        if isinstance(l, (bool, np.bool_)) or not isinstance(l, (int, np.integer)) or not 1 <= l <= len(self.dense):
            raise IndexError(f"trace[l] takes the layer number l = 1..{len(self.dense)} (1-based, as the tutorial "
                             f"numbers layers; layer 0 is the input); got {l!r}")
        return self.dense[int(l) - 1]

    def step(self, layer: Layer) -> Step:
        """The :class:`Step` of ``layer`` (one of the network's layer objects)."""
        return self.steps[layer.index - 1]

    def __repr__(self) -> str:
        mode = "training" if self.training else "inference"
        return f"Trace(L={self.L}, n={self.n}, C={self.C:.6g}, {mode} pass)"


def _copy(a: Any) -> Any:
    return None if a is None else a.copy()


def dropout_mask(xp: Any, drop_layer: Dropout, draw: Any, rows: int, dtype: Any) -> Any:
    """The mask m / (1 - p) that ``draw`` applied to ``rows`` rows, on the backend: the layer's own
    generator (:meth:`gpubp.layers.Dropout.mask`), which the kernels and the NumPy ops share."""
    mask = drop_layer.mask(rows, call=draw.call, row_offset=draw.offset // drop_layer.units, dtype=dtype)
    return mask if xp is np else xp.asarray(mask)


class _Recorder:
    """The hook of :meth:`MLP.backprop`: copies of the forward arrays once the forward pass
    is done, then each layer's signal before and after its backward pass."""

    def __init__(self, net: Any):
        self.net = net
        self.inputs: Dict[int, Any] = {}
        self.arrays: Dict[int, Dict[str, Any]] = {}
        self.draws: Dict[int, Any] = {}
        self.dout: Dict[int, Any] = {}
        self.after: Dict[int, Any] = {}

    def __call__(self, i: int, ws: Any, inputs: List[Any]) -> None:
        layers = self.net.layers
        k = len(layers) - 1
        if i == k:  # the forward pass is done
            xp = self.net.backend.xp
            for m in range(1, k + 1):
                layer, cache = layers[m], ws.caches[m]
                self.inputs[m] = inputs[m].copy()
                kept = {name: getattr(cache, name).copy() for name in _forward_arrays(layer)}
                drop = cache.drop
                if drop is not None:
                    owner = layer if isinstance(layer, Dropout) else layer.dropout
                    kept["mask"] = dropout_mask(xp, owner, drop, inputs[m].shape[0], self.net.dtype)
                    kept["out"] = drop.out.copy()
                self.arrays[m], self.draws[m] = kept, drop
            return
        if i >= 1:
            self.dout[i] = ws.caches[i].dout.copy()
        self.after[i + 1] = ws.caches[i + 1].dout.copy()


def trace(net: Any, X: Any, Y: Any, training: bool = True) -> Trace:
    """Run one pass of ``net`` over X, Y and keep its inside (see the module docstring)."""
    training = validation.check_bool(training, "training")
    X, Y = validation.check_XY(net, X, Y)
    n = X.shape[0]
    run = net.make_pass(training, n, update=False)  # the next step's masks and statistics, nothing advanced
    rec = _Recorder(net)
    with memory.translated_out_of_memory(net.backend, f"in trace on {n} rows", memory.batch_hint(n, "batch")):
        C = float(steps.add_l2(net, net.backprop(X, Y, run, watch=rec), n))  # C and dC/dW as loss_and_grads has them
    xp = net.backend.xp
    kept: List[Step] = []
    dense: List[DenseTrace] = []
    for i, layer in enumerate(net.layers[1:], start=1):
        grads = {spec.name: getattr(layer, "d" + spec.name).copy() for spec in layer.param_specs()}
        step = Step(i, layer, rec.inputs[i], rec.arrays[i], rec.dout.get(i), rec.after[i], grads, rec.draws[i])
        kept.append(step)
        if isinstance(layer, Dense):
            dA = step.dout
            if dA is not None and step.draw is not None:  # the fused dropout's mask, as its backward pass applies it
                dA = xp.multiply(dA, step.arrays["mask"])
            dense.append(DenseTrace(layer.l, layer, step.input, step.arrays["Z"], step.arrays["A"], dA, step.after,
                                    grads["W"], grads.get("b")))
    return Trace(net, X, Y, C, training, kept, dense)


__all__ = ["DenseTrace", "Step", "Trace", "dropout_mask", "trace"]
