"""Mini-batch training: ``fit`` and ``evaluate``.

The data set is moved to the backend once; each epoch draws one permutation of the row
indices and every mini-batch is gathered from it into a reused buffer (an index slice, never
a per-sample loop). Loss and accuracy are accumulated on the device and read once per epoch.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from tqdm.auto import tqdm

from . import validation


class History(dict):
    """Per-epoch metrics: ``history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ``["val_accuracy"]``.

    Accuracy entries are ``None`` when the targets are not classes (regression).
    """

    def __getattr__(self, name: str) -> List[Optional[float]]:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _class_targets(Y: Any, m: int) -> Optional[Any]:
    """Class index per row when Y holds classes (labels, one-hot rows, or 0/1 for one output)."""
    if Y.ndim == 1:
        return Y
    xp_sum = Y.sum(axis=1)
    if m == 1:
        col = Y[:, 0]
        return col.astype("int64") if bool(((col == 0) | (col == 1)).all()) else None
    if bool(((Y == 0) | (Y == 1)).all()) and bool((xp_sum == 1).all()):
        return Y.argmax(axis=1)
    return None


def _n_correct(A: Any, classes: Any) -> Any:
    """How many rows of A^(L) predict their class, as a 0-d backend array."""
    pred = (A[:, 0] > 0.5) if A.shape[1] == 1 else A.argmax(axis=1)
    return (pred == classes).sum()


def evaluate(net: Any, X: Any, Y: Any, batch_size: int = 4096) -> Tuple[float, Optional[float]]:
    """(C, accuracy) of ``net`` on X, Y: C = (1/n) sum_i C_0^(i) over all rows, in batches."""
    batch_size = validation.check_int(batch_size, "batch_size", 1)
    X, Y = validation.check_XY(net, X, Y)
    classes = _class_targets(Y, net.sizes[-1])
    ops = net.backend.ops
    n = X.shape[0]
    total = 0.0
    correct = 0
    for s in range(0, n, batch_size):
        Xb, Yb = X[s : s + batch_size], Y[s : s + batch_size]
        ws = net._workspace(Xb.shape[0])
        A = net._forward(Xb, ws)
        total += float(ops.loss_value(net.loss, ws.Z[net.L], A, Yb)) * Xb.shape[0]
        if classes is not None:
            correct += int(_n_correct(A, classes[s : s + batch_size]))
    return total / n, (correct / n if classes is not None else None)


def fit(
    net: Any,
    X: Any,
    Y: Any,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: Any = None,
    validation_data: Optional[Tuple[Any, Any]] = None,
    shuffle: bool = True,
    progress: bool = True,
    callback: Optional[Callable[[int, Dict[str, Optional[float]]], None]] = None,
    comm: Any = None,
) -> History:
    """Train ``net`` on X, Y for ``epochs`` passes of mini-batches of ``batch_size`` rows.

    Args:
        optimizer: a :class:`gpubp.SGD` or :class:`gpubp.Adam` (default ``Adam()``).
        validation_data: ``(X_val, Y_val)`` evaluated after every epoch.
        shuffle: draw a new permutation of the rows every epoch (from the network's seed).
        progress: show a progress bar (on a terminal only).
        callback: called as ``callback(epoch, logs)`` after every epoch (epochs count from 1).
        comm: a communicator from :func:`gpubp.distributed.init` for data-parallel training:
            every rank passes its own shard X, Y (at least one row; sizes may differ), rank
            0's parameters and optimizer state are broadcast first, and step k averages the
            gradients over the k-th batch of every rank, so the replicas stay identical. A
            rank whose shard has fewer batches joins the remaining steps of the epoch with an
            empty batch. The logs (loss, accuracy, validation on each rank's validation rows)
            are over all ranks' rows and the same on every rank; the callback runs on every
            rank, the progress bar on rank 0 only.

    Returns the :class:`History` of loss and accuracy per epoch.
    """
    from . import distributed
    from .optim import Adam

    comm = distributed.check_comm(comm)
    epochs = validation.check_int(epochs, "epochs", 0)
    batch_size = validation.check_int(batch_size, "batch_size", 1)
    if optimizer is None:
        optimizer = Adam()
    validation.check_optimizer(optimizer)
    X, Y = validation.check_XY(net, X, Y)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (X_val, Y_val)")
        validation_data = validation.check_XY(net, *validation_data)

    backend = net.backend
    xp = backend.xp
    n = X.shape[0]
    classes = _class_targets(Y, net.sizes[-1])
    history = History(loss=[], accuracy=[], val_loss=[], val_accuracy=[])
    buffers: Dict[int, Tuple[Any, Any, Any]] = {}
    n_batches = -(-n // batch_size)
    n_total, step_rows = n, None
    if comm is not None and comm.size > 1:
        distributed.broadcast_parameters(net, comm, optimizer)
        counts, n_total = distributed.global_rows(comm, n, batch_size=batch_size, epochs=epochs, shuffle=bool(shuffle))
        n_batches = max(-(-c // batch_size) for c in counts)
        step_rows = [sum(min(batch_size, max(0, c - s)) for c in counts) for s in range(0, n_batches * batch_size, batch_size)]

    for epoch in range(1, epochs + 1):
        order = net._rng.permutation(n) if shuffle else np.arange(n)
        order = backend.asarray(order)
        loss_sum = xp.zeros((), dtype=net.dtype)
        correct = xp.zeros((), dtype=xp.int64)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False,
                   disable=None if progress and (comm is None or comm.rank == 0) else True)
        with validation.check_finite(False):  # X and Y were scanned once above
            for k, s in enumerate(range(0, n_batches * batch_size, batch_size)):
                if s >= n:  # this rank's shard has run out: an empty share of a distributed step
                    C = distributed.allreduce_gradients(net, None, 0, comm)
                    optimizer.step(net)
                    loss_sum += C * step_rows[k]
                    bar.update(1)
                    continue
                idx = order[s : s + batch_size]
                nb = idx.shape[0]
                if nb not in buffers:
                    buffers[nb] = (xp.empty((nb, X.shape[1]), dtype=X.dtype),
                                   xp.empty((nb,) + Y.shape[1:], dtype=Y.dtype),
                                   xp.empty((nb,), dtype=xp.int64) if classes is not None else None)
                Xb, Yb, Cb = buffers[nb]
                xp.take(X, idx, axis=0, out=Xb)
                xp.take(Y, idx, axis=0, out=Yb)
                C = net.train_step(Xb, Yb, optimizer, comm=comm)
                loss_sum += C * (nb if step_rows is None else step_rows[k])
                if classes is not None:
                    xp.take(classes, idx, axis=0, out=Cb)
                    # the outputs of this batch's forward pass, before the update
                    correct += _n_correct(net._workspace(nb).A[net.L], Cb)
                bar.update(1)
        bar.close()
        n_correct = int(correct) if step_rows is None else comm.sum(int(correct))
        logs: Dict[str, Optional[float]] = {
            "loss": float(loss_sum) / n_total,
            "accuracy": n_correct / n_total if classes is not None else None,
        }
        if validation_data is not None:
            logs["val_loss"], logs["val_accuracy"] = evaluate(net, *validation_data)
            if step_rows is not None:  # weighted by each rank's validation rows
                n_val = validation_data[0].shape[0]
                acc = logs["val_accuracy"]
                sums = comm.sum((logs["val_loss"] * n_val, (acc or 0.0) * n_val, float(n_val)))
                logs["val_loss"] = sums[0] / sums[2]
                logs["val_accuracy"] = sums[1] / sums[2] if acc is not None else None
        for key in history:
            history[key].append(logs.get(key))
        if callback is not None:
            callback(epoch, logs)
    return history
