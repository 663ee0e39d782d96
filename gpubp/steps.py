"""One training step of a network, checked and unchecked: the backward pass
(:meth:`gpubp.network.MLP.backprop`), the all-reduce of a distributed step, the L2 penalty,
gradient clipping and the optimizer's update (MATH.md: averaging, L2 penalty, update).

:class:`~gpubp.network.MLP`'s ``loss_and_grads``, ``train_step``, ``train_batch`` and ``add_l2``
are these functions; ``fit`` calls :func:`train_batch` once per mini-batch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np

from . import distributed, memory, sparse, validation
from .layers import Dense, Pass

if TYPE_CHECKING:  # for annotations only
    from .network import MLP
    from .optim import Optimizer


def step_rows(net: "MLP", n: int, comm: Any) -> Tuple[int, int]:
    """(rows of the step over all ranks, rows of the ranks before this one): one small
    collective where a layer couples the rows (BatchNorm statistics, Dropout's stream)."""
    if comm is None or comm.size == 1 or not net.couples_rows:
        return n, 0
    counts = comm.allgather(int(n))
    return sum(counts), sum(counts[: comm.rank])


def add_l2(net: "MLP", C: Any, n: Any) -> Any:
    """C + (lambda/2n) sum_l ||W^(l)||^2, and dC/dW^(l) += (lambda/n) W^(l) in the gradient buffer
    (MATH.md, L2 penalty; biases and BatchNorm's parameters are not penalised). ``n``: the rows
    the step averages over."""
    if not net.l2:
        return C
    ops = net.backend.ops
    scale = net.l2 / n
    for dense in net.dense_layers:
        C = C + ops.l2_penalty(dense.W, dense.dW, scale)
    return net.backend.xp.asarray(C)


def collectives_only(net: "MLP", run: Pass) -> None:
    """This rank's part in a distributed step in which it has no rows (its shard has run out)."""
    for layer in net.layers[1:]:
        layer.forward_collectives(run)
    for layer in reversed(net.layers[1:]):
        layer.backward_collectives(run)


def loss_and_grads(net: "MLP", X: Any, Y: Any, comm: Any = None,
                   training: bool = True) -> Tuple[float, List[Tuple[Any, Optional[Any]]]]:
    """:meth:`gpubp.network.MLP.loss_and_grads`: C and copies of the gradients, one tuple per layer
    with parameters, averaged over the n rows (of every rank with ``comm``)."""
    comm = distributed.check_comm(comm, "loss_and_grads")
    training = validation.check_bool(training, "training")
    X, Y = validation.check_XY(net, X, Y)
    if comm is not None:
        distributed.ensure_synchronized(net, comm, "loss_and_grads")
    rows, offset = step_rows(net, X.shape[0], comm)
    run = net.make_pass(training, rows, comm, offset)
    with memory.translated_out_of_memory(net.backend, f"in loss_and_grads on {X.shape[0]} rows",
                                         memory.batch_hint(X.shape[0], "batch")):
        C = net.backprop(X, Y, run)
        if comm is not None:
            C = distributed.allreduce_gradients(net, C, X.shape[0], comm)
        C = add_l2(net, C, distributed.step_rows(net, X, comm))
    grads = []
    for layer in net.layers[1:]:
        names = [spec.name for spec in layer.param_specs()]
        if isinstance(layer, Dense):
            grads.append((layer.dW.copy(), None if layer.db is None else layer.db.copy()))
        elif names:
            grads.append(tuple(getattr(layer, "d" + name).copy() for name in names))
    return float(C), grads


def train_step(net: "MLP", X: Any, Y: Any, optimizer: "Optimizer", comm: Any = None,
               clip_norm: Optional[float] = None) -> Any:
    """:meth:`gpubp.network.MLP.train_step`: every argument checked before anything changes, then
    :func:`train_batch`; returns C as a 0-d backend array."""
    comm = distributed.check_comm(comm, "train_step")
    validation.check_optimizer(optimizer, net)
    if clip_norm is not None:
        clip_norm = validation.check_positive_float(clip_norm, "clip_norm")
    X, Y = validation.check_XY(net, X, Y)
    if comm is not None:
        distributed.ensure_synchronized(net, comm, "train_step", optimizer)
    rows, offset = step_rows(net, X.shape[0], comm)
    net.make_pass(True, rows)  # checked before anything changes
    with memory.translated_out_of_memory(net.backend, f"in train_step on {X.shape[0]} rows",
                                         memory.batch_hint(X.shape[0], "batch")):
        return net.train_batch(X, Y, optimizer, comm, rows, offset, clip_norm=clip_norm)


def train_batch(net: "MLP", X: Any, Y: Any, optimizer: Any, comm: Any = None, rows: Optional[int] = None,
                row_offset: int = 0, clip_norm: Optional[float] = None) -> Any:
    """One step on arguments already checked (``fit``'s inner loop): backprop, the all-reduce
    with ``comm``, the L2 penalty, clipping to ``clip_norm``, the update; returns C (0-d).

    ``X is None`` is this rank's empty share of a distributed step (its shard has run out);
    ``rows`` and ``row_offset`` place this rank's rows in the step (default: alone).
    """
    if X is None:
        collectives_only(net, Pass(net.backend.ops, True, rows or 0, comm=comm))
        C = distributed.allreduce_gradients(net, None, 0, comm)
    else:
        run = Pass(net.backend.ops, True, X.shape[0] if rows is None else rows, comm=comm, row_offset=row_offset)
        C = net.backprop(X, Y, run)
        if comm is not None:
            C = distributed.allreduce_gradients(net, C, X.shape[0], comm)
    C = add_l2(net, C, distributed.step_rows(net, X, comm))  # part of the gradient that clipping sees
    if clip_norm is not None:
        net.backend.ops.clip_grad_norm(net.grads, clip_norm)
    optimizer.step(net)
    return C


def sparse_full_batch(net: "MLP", X: Any, Y: Any, chunk: int = 4096) -> Any:
    """C over all rows of a checked CSR X (host) and backend Y, with dC/dW^(l), dC/db^(l) left in
    ``net.grads``, as one training pass over the dense X computes them, without densifying it:
    the rows go in chunks of at most ``chunk`` (fewer for a wide X, :func:`gpubp.sparse.chunk_rows`),
    each chunk's C and gradients weighted by its rows, summed in float64 and divided by n (MATH.md:
    averaging), then the L2 penalty of n rows added once. A network whose layers couple the rows
    (BatchNorm, Dropout) takes them as one batch, densified, since that is what its pass is."""
    n = X.shape[0]
    if net.couples_rows:
        dense = net.backend.asarray(sparse.densify(X))
        return add_l2(net, net.backprop(dense, Y), n)
    xp = net.backend.xp
    rows = sparse.chunk_rows(X.shape[1], X.dtype, chunk)
    staged = np.empty((min(rows, n), X.shape[1]), dtype=X.dtype)
    total = xp.zeros((), dtype=np.float64)
    grads = xp.zeros(net.grads.shape, dtype=np.float64)
    for s in range(0, n, rows):
        e = min(s + rows, n)
        Xb = net.backend.asarray(sparse.densify_rows(X, slice(s, e), staged[: e - s]))
        total += net.backprop(Xb, Y[s:e]).astype(np.float64) * (e - s)
        grads += net.grads.astype(np.float64) * (e - s)
    net.grads[...] = grads / n
    return add_l2(net, (total / n).astype(net.dtype), n)
