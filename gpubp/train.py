"""Mini-batch training: ``fit`` and ``evaluate``.

The data set is checked and moved to the backend once (on a GPU it does not fit, it stays in
host memory and streams batch by batch, see :mod:`gpubp.memory`); each epoch draws one
permutation of the row indices and every mini-batch is gathered from it into a reused buffer
(an index slice, never a per-sample loop, never a copy of the data set). Loss and accuracy
are accumulated on the device and read once per epoch. A divergence guard (:class:`_Guard`)
stops training at the first non-finite step with the weights of the last finite one.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import distributed, memory, validation
from .backend import is_device_array
from .errors import NonFiniteError
from .progress import progress_bar


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
    if m == 1:
        col = Y[:, 0]
        return col.astype("int64") if bool(((col == 0) | (col == 1)).all()) else None
    if bool(((Y == 0) | (Y == 1)).all()) and bool((Y.sum(axis=1) == 1).all()):
        return Y.argmax(axis=1)
    return None


def _n_correct(A: Any, classes: Any) -> Any:
    """How many rows of A^(L) predict their class, as a 0-d backend array."""
    pred = (A[:, 0] > 0.5) if A.shape[1] == 1 else A.argmax(axis=1)
    return (pred == classes).sum()


def _host_nbytes(net: Any, X: Any, Y: Any) -> int:
    """Bytes X, Y (and the class indices) take once on the device, estimated from their shapes
    (0 for what is not a host array yet: it is checked, and refused or converted, afterwards)."""
    x = X.size if isinstance(X, np.ndarray) else 0
    y = Y.size if isinstance(Y, np.ndarray) else 0
    n = X.shape[0] if isinstance(X, np.ndarray) and X.ndim else 0
    return int(x) * net.dtype.itemsize + int(y) * 8 + int(n) * 8


def _upload(backend: Any, dst: Any, src: np.ndarray) -> None:
    """Copy host array ``src`` into the reused backend buffer ``dst``."""
    if backend.name == "cupy":
        dst.set(src)
    else:
        np.copyto(dst, src)


class _Data:
    """The X, Y (and class indices) of one ``fit`` or ``evaluate`` call, checked once.

    Resident (the default): the arrays live on the backend and a mini-batch is gathered from
    them by index into reused buffers. Streaming (a NumPy data set too large for the GPU, see
    :mod:`gpubp.memory`): the arrays stay in host memory; a mini-batch is gathered on the
    host into a reused staging buffer and copied into a reused device buffer.
    """

    def __init__(self, net: Any, X: Any, Y: Any, names: Tuple[str, str] = ("X", "Y")):
        self.backend = net.backend
        self.stream = not is_device_array(X) and memory.should_stream(self.backend, _host_nbytes(net, X, Y))
        self.X, self.Y = validation.check_XY(net, X, Y, names, on_host=self.stream)
        self.classes = _class_targets(self.Y, net.sizes[-1])
        self.n = self.X.shape[0]
        self._buffers: Dict[int, Tuple[Any, ...]] = {}

    def order(self, rng: Optional[np.random.Generator], rank: int = 0, ranks: int = 1, rows: int = 0) -> Any:
        """A permutation of the rows drawn from ``rng`` (or 0..n-1), where the gather needs it.

        In a distributed fit (``ranks`` > 1) every rank holds the same generator (rank 0's,
        broadcast when fit starts) and draws the same ``ranks`` permutations of ``rows`` (the
        largest shard's row count), keeping permutation ``rank`` restricted to its own n rows:
        a uniform permutation of them, independent of the other ranks', while the generators
        of all ranks stay equal. So the one generator state a checkpoint holds resumes every
        rank exactly, whatever the shards' sizes. One process draws ``rng.permutation(n)``.
        """
        if rng is None:
            order = np.arange(self.n)
        elif ranks == 1:
            order = rng.permutation(self.n)
        else:
            for k in range(ranks):
                drawn = rng.permutation(rows)
                if k == rank:
                    order = drawn[drawn < self.n]
        return order if self.stream else self.backend.asarray(order)

    def _buffers_for(self, nb: int) -> Tuple[Any, ...]:
        bufs = self._buffers.get(nb)
        if bufs is None:
            shapes = [(nb, self.X.shape[1]), (nb,) + self.Y.shape[1:]] + ([(nb,)] if self.classes is not None else [])
            dtypes = [self.X.dtype, self.Y.dtype, np.int64]
            xp = self.backend.xp
            device = tuple(xp.empty(sh, dtype=dt) for sh, dt in zip(shapes, dtypes))
            host = tuple(np.empty(sh, dtype=dt) for sh, dt in zip(shapes, dtypes)) if self.stream else ()
            bufs = self._buffers[nb] = (device, host)
        return bufs

    def gather(self, idx: Any) -> Tuple[Any, Any, Optional[Any]]:
        """(X_b, Y_b, class indices or None) of the rows ``idx``, in reused backend buffers."""
        device, host = self._buffers_for(int(idx.shape[0]))
        sources = (self.X, self.Y, self.classes)
        for i, buf in enumerate(device):
            if self.stream:
                np.take(sources[i], idx, axis=0, out=host[i])
                _upload(self.backend, buf, host[i])
            else:
                self.backend.xp.take(sources[i], idx, axis=0, out=buf)
        return device[0], device[1], (device[2] if len(device) > 2 else None)

    def rows(self, s: int, e: int) -> Tuple[Any, Any, Optional[Any]]:
        """(X_b, Y_b, classes) of the contiguous rows s..e-1 (views when resident)."""
        if not self.stream:
            return self.X[s:e], self.Y[s:e], None if self.classes is None else self.classes[s:e]
        device, _ = self._buffers_for(e - s)
        for buf, src in zip(device, (self.X, self.Y, self.classes)):
            _upload(self.backend, buf, np.ascontiguousarray(src[s:e]))
        return device[0], device[1], (device[2] if len(device) > 2 else None)


def evaluate(net: Any, X: Any, Y: Any, batch_size: int = 4096) -> Tuple[float, Optional[float]]:
    """(C, accuracy) of ``net`` on X, Y: C = (1/n) sum_i C_0^(i) over all rows, in batches.

    C is the data's loss alone: the L2 penalty on the weights (``net.l2``) belongs to training.
    """
    batch_size = validation.check_int(batch_size, "batch_size", 1)
    return _evaluate(net, _Data(net, X, Y), batch_size)


def _evaluate(net: Any, data: _Data, batch_size: int) -> Tuple[float, Optional[float]]:
    ops = net.backend.ops
    xp = net.backend.xp
    n = data.n
    total = xp.zeros((), dtype=np.float64)
    correct = xp.zeros((), dtype=np.int64)
    with memory.translated_out_of_memory(net.backend, "in evaluate", memory.batch_hint(batch_size)):
        for s in range(0, n, batch_size):
            Xb, Yb, Cb = data.rows(s, min(s + batch_size, n))
            ws = net._workspace(Xb.shape[0])
            A = net._forward(Xb, ws)
            total += ops.loss_value(net.loss, ws.Z[net.L], A, Yb).astype(np.float64) * Xb.shape[0]
            if Cb is not None:
                correct += _n_correct(A, Cb)
    return float(total) / n, (int(correct) / n if data.classes is not None else None)


#: Mini-batches between two verifications (and snapshots) of the divergence guard in ``fit``.
CHECK_EVERY = 32


class _Snapshot:
    """The weights, layer state (running statistics, dropout streams) and optimizer state before
    batch ``index`` of the epoch, in buffers allocated once."""

    def __init__(self, net: Any, state: Dict[str, Any]):
        xp = net.backend.xp
        self.params = xp.empty_like(net.params)
        self.layer_state = xp.empty_like(net.state)
        self.host: Any = None
        self.state = {k: xp.empty_like(v) for k, v in state.items()}
        self.t: Any = None
        self.index = -1  # -1: holds nothing yet


class _Guard:
    """Stops ``fit`` at the first non-finite loss, gradient or weight and puts back the newest finite state.

    After every step the guard records s = C + sum_w dC/dw, one reduction over the flat
    gradient buffer: s is NaN or inf when the loss or any gradient is (or when the gradients
    sum beyond the dtype's range, which is divergence too). On NumPy s is tested at once (a
    0-d value already on the host; the sum is about 3% of a 784-512-256-10 step at n = 256). On
    the GPU s is written into a small device vector that is read back once every
    ``CHECK_EVERY`` batches and at the end of the epoch: one synchronisation per window, none
    per batch. At the end of every window (and so of every epoch) the weights the window's
    updates left are checked too, sum_w w in the same read-back: an update can overflow the
    weights while the loss and gradients it was computed from are finite (the last update of a
    run, which no later step would see, or weights gone to -inf into a ReLU that then never
    fires); the window is then replayed from the verified state to find the first update that
    did it. So ``fit`` never returns with non-finite weights.

    Restore point: when batch k (of the epoch, from 0) is the first with a NaN or inf, the
    weights P_k it was computed from are useless (their loss or gradient is not finite, at
    any learning rate); the newest useful state is P_{k-1}, the one before batch k-1's update,
    whose loss and gradient were finite: retaking that step with a lower learning rate is how
    training goes on (for k = 0 it is P_0, the state at the start of the epoch). Weights made
    non-finite by batch i's update count as batch k = i + 1 failing (the restore point is P_i,
    before that update). Two snapshots
    make it reachable without a copy per step: ``verified`` holds the state before the last
    batch of the previous window (whose check passed), ``spare`` receives the state before
    the last batch of the current window and replaces ``verified`` when the window passes. On
    failure ``verified`` is restored and the batches from it to k-2 are replayed (failure
    only; bit-identical on NumPy). Cost: 2P extra floats for the weights (plus twice the
    optimizer state: 2P for SGD with momentum, 4P for Adam) and one device-to-device copy of
    them per window and per epoch.
    """

    def __init__(self, net: Any, optimizer: Any, every: int):
        self.net, self.optimizer = net, optimizer
        self.xp = net.backend.xp
        self.on_host = net.backend.name == "numpy"
        self.every = every
        bind = getattr(optimizer, "_bind", None)
        if callable(bind):  # allocate the (zero) state now so the snapshots cover it
            bind(net)
        state = self._opt_state()
        self.verified, self.spare = _Snapshot(net, state), _Snapshot(net, state)
        # the window's s values, and one slot for the weights' sum at the window's end
        self.sums = None if self.on_host else self.xp.empty(every + 1, dtype=net.dtype)
        self.window = 0  # the epoch's batch index where the current window starts
        self.count = 0  # steps recorded in the current window

    def _opt_state(self) -> Dict[str, Any]:
        state = getattr(self.optimizer, "state", None)
        if not isinstance(state, dict):
            return {}
        return {k: v for k, v in state.items() if isinstance(v, type(self.net.params))}

    def _save(self, snap: _Snapshot, index: int) -> None:
        self.xp.copyto(snap.params, self.net.params)
        self.xp.copyto(snap.layer_state, self.net.state)
        snap.host = self.net._host_state()
        for k, v in self._opt_state().items():
            self.xp.copyto(snap.state[k], v)
        snap.t, snap.index = getattr(self.optimizer, "t", None), index

    def restore(self) -> int:
        """Put the verified snapshot back (into the same buffers: the layers' views stay valid);
        returns the batch index it was taken before."""
        snap = self.verified
        self.xp.copyto(self.net.params, snap.params)
        self.xp.copyto(self.net.state, snap.layer_state)
        if snap.host is not None:
            self.net._set_host_state(snap.host)
        for k, v in self._opt_state().items():
            self.xp.copyto(v, snap.state[k])
        if snap.t is not None:
            self.optimizer.t = snap.t
        return snap.index

    def begin_epoch(self, step: Callable[[int], Any]) -> None:
        """Start an epoch whose batch ``i`` is re-run by ``step(i)`` (gather, forward, backward,
        update; returns C) when the guard replays."""
        self.step = step
        self._save(self.verified, 0)
        self.spare.index = -1
        self.window, self.count = 0, 0
        self.weights_failed = False

    def before_step(self, b: int, last: bool) -> None:
        """Called before batch ``b``: keep the state before a window's last batch in ``spare``."""
        if (last or b == self.window + self.every - 1) and b > self.verified.index:
            self._save(self.spare, b)

    def _value(self, C: Any) -> Any:
        return C + self.net.grads.sum()

    def _weights_finite(self) -> bool:
        return bool(self.xp.isfinite(self.net.params.sum()))

    def after_step(self, b: int, C: Any, last: bool) -> Optional[int]:
        """Record batch ``b``'s check; the index k of the first non-finite batch once known (k = i + 1
        when batch i's update made the weights non-finite; ``weights_failed`` says which), else None."""
        s = self._value(C)
        self.count += 1
        if self.on_host:
            if not bool(np.isfinite(s)):
                return b
        else:
            self.sums[self.count - 1] = s
        if self.count < self.every and not last:
            return None
        if self.on_host:
            weights_ok = self._weights_finite()
        else:  # the one synchronisation of the window: every step's s and the weights' sum
            self.sums[self.count] = self.net.params.sum()
            flags = self.xp.isfinite(self.sums[: self.count + 1]).get()
            if not flags[: self.count].all():
                return self.window + int(np.argmin(flags[: self.count]))
            weights_ok = bool(flags[self.count])
        if not weights_ok:
            return self._locate(b)
        if self.spare.index == b:  # the window passed: the state before its last batch is verified
            self.verified, self.spare = self.spare, self.verified
            self.spare.index = -1
        self.window, self.count = b + 1, 0
        return None

    def _first_failure(self, i: int) -> Tuple[Optional[int], bool]:
        """Re-run batch ``i``: (i, False) if its loss or gradient is not finite, (i + 1, True) if its
        update made the weights non-finite, else (None, False)."""
        if not bool(self.xp.isfinite(self._value(self.step(i)))):
            return i, False
        if not self._weights_finite():
            return i + 1, True
        return None, False

    def _locate(self, end: int) -> int:
        """The weights are not finite after batch ``end``: replay from the verified state (whose
        weights are finite) to the first batch that fails, and return its k."""
        start = self.restore()
        for i in range(start, end + 1):
            k, self.weights_failed = self._first_failure(i)
            if k is not None:
                return k
        self.weights_failed = True  # a replay that rounds differently (GPU): blame the last update
        return end + 1

    def rewind(self, k: int) -> int:
        """Batch ``k`` is the first non-finite one: put back the state before batch k-1 (or
        before k = 0); returns the index of the batch the restored state comes before."""
        target = max(k - 1, self.verified.index)
        while True:
            start = self.restore()
            for i in range(start, target):
                failed, _ = self._first_failure(i)
                if failed is not None:
                    target = max(failed - 1, start)  # replay met an earlier failure: go before it
                    break
            else:
                return target


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
    initial_epoch: int = 0,
    comm: Any = None,
) -> History:
    """Train ``net`` on X, Y by mini-batches of ``batch_size`` rows, epochs ``initial_epoch + 1`` to ``epochs``.

    Args:
        epochs: the number of the last epoch (so ``epochs - initial_epoch`` passes over the data).
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
            rank, the progress bar on rank 0 only. A non-finite step is seen alike on every
            rank (the guard checks the all-reduced loss and gradients), so all ranks stop together.
        initial_epoch: the number of epochs already done, for resuming: a network loaded from
            a checkpoint with its optimizer (:func:`gpubp.load_optimizer`) continues with
            ``fit(X, Y, epochs=E, optimizer=opt, initial_epoch=net.epoch)`` exactly as the
            uninterrupted run would have (bit for bit on NumPy; the checkpoint keeps the
            shuffling generator's state).

    Every argument is checked before anything changes. The data set is moved to the backend
    once (or streamed from host memory when it does not fit on the GPU, see
    :mod:`gpubp.memory`).

    Raises:
        gpubp.NonFiniteError: a batch's loss or gradient was NaN or inf; ``epoch`` and
            ``batch`` (from 1) name it, and the weights and optimizer state are restored to the
            last finite step: their values before the previous batch's update, the newest ones
            with a finite loss and gradient, from which a lower learning rate can go on
            (see :class:`_Guard` for the definition and the cost).
        gpubp.OutOfMemoryError: the GPU ran out of memory; the weights and optimizer state
            are restored to the last verified step (at most ``CHECK_EVERY`` batches back) and
            the message suggests a smaller batch. A ``KeyboardInterrupt`` restores them the
            same way, so an interrupted update never leaves them half-written.

    Returns the :class:`History` of loss and accuracy per epoch; an epoch's loss is the mean of
    its batches' C weighted by their rows, so it includes the L2 penalty (``net.l2``) of every
    batch, as scikit-learn's ``loss_curve_`` does.
    """
    from .optim import Adam

    comm = distributed.check_comm(comm, "fit")
    epochs = validation.check_int(epochs, "epochs", 0)
    initial_epoch = validation.check_int(initial_epoch, "initial_epoch", 0)
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch must be <= epochs (the number of the last epoch); got initial_epoch="
                         f"{initial_epoch} and epochs={epochs}")
    batch_size = validation.check_int(batch_size, "batch_size", 1)
    shuffle = validation.check_bool(shuffle, "shuffle")
    progress = validation.check_bool(progress, "progress")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(epoch, logs); got {type(callback).__name__}")
    if optimizer is None:
        optimizer = Adam()
    validation.check_optimizer(optimizer, net)
    data = _Data(net, X, Y)
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(f"validation_data must be a pair (X_val, Y_val); got {type(validation_data).__name__}")
        val = _Data(net, *validation_data, names=("validation_data[0]", "validation_data[1]"))

    history = History(loss=[], accuracy=[], val_loss=[], val_accuracy=[])
    if epochs == initial_epoch:
        return history
    backend = net.backend
    xp = backend.xp
    n = data.n
    n_batches = -(-n // batch_size)
    n_total, step_rows = n, None
    shuffling = (0, 1, n)  # (this rank, ranks, rows of the largest shard): see _Data.order
    if comm is not None and comm.size > 1:
        # checked before the first collective that depends on them: ranks that disagree on the
        # network, the optimizer or the loop's shape would otherwise hang or abort inside MPI
        counts, n_total = distributed.global_rows(
            comm, n, entry="fit", batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch, shuffle=shuffle,
            validation=val is not None, optimizer=distributed.optimizer_config(optimizer),
            network=distributed.network_config(net))
        shuffling = (comm.rank, comm.size, max(counts))
        n_batches = max(-(-c // batch_size) for c in counts)
        # rows of all ranks in step k (a rank whose shard has run out adds none), and of the ranks
        # before this one (where a layer's rows continue those of the previous ranks)
        shares = [[min(batch_size, max(0, c - k * batch_size)) for c in counts] for k in range(n_batches)]
        step_rows = [sum(share) for share in shares]
        offsets = [sum(share[: comm.rank]) for share in shares]
    else:
        step_rows = [min(batch_size, n - k * batch_size) for k in range(n_batches)]
        offsets = [0] * n_batches
    if net._batch_norm and min(step_rows) < 2:
        raise ValueError(f"BatchNorm in training mode needs at least 2 rows per step; batch_size={batch_size} over "
                         f"{n_total} rows makes a step of {min(step_rows)} row: choose another batch_size")
    if comm is not None and comm.size > 1:
        distributed.broadcast_parameters(net, comm, optimizer)
    else:
        step_rows = None
    guard = _Guard(net, optimizer, CHECK_EVERY)
    epoch, b = initial_epoch + 1, 0

    for epoch in range(initial_epoch + 1, epochs + 1):
        order = data.order(net._rng if shuffle else None, *shuffling)

        def step(i: int, order: Any = order) -> Tuple[Any, Optional[Any], Optional[Any]]:
            """Batch i of the epoch: (C, this rank's X_b or None when its shard has run out, classes)."""
            if i * batch_size >= n:  # an empty share of a distributed step
                return net._train_step(None, None, optimizer, comm, step_rows[i]), None, None
            Xb, Yb, Cb = data.gather(order[i * batch_size : (i + 1) * batch_size])
            if step_rows is None:
                return net._train_step(Xb, Yb, optimizer, comm), Xb, Cb
            return net._train_step(Xb, Yb, optimizer, comm, step_rows[i], offsets[i]), Xb, Cb

        loss_sum = xp.zeros((), dtype=np.float64)  # bookkeeping only, summed like evaluate's
        correct = xp.zeros((), dtype=xp.int64)
        bar = progress_bar(n_batches, f"epoch {epoch}/{epochs}", progress and (comm is None or comm.rank == 0))
        guard.begin_epoch(lambda i, step=step: step(i)[0])
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the guard reports NaN/inf
                for b in range(n_batches):
                    last = b == n_batches - 1
                    guard.before_step(b, last)
                    C, Xb, Cb = step(b)
                    bad = guard.after_step(b, C, last)
                    if bad is not None:
                        restored = guard.rewind(bad)
                        what = (f"the update of batch {bad} of {n_batches} made the weights NaN or inf"
                                if guard.weights_failed else
                                f"batch {bad + 1} of {n_batches}: its loss or a gradient is NaN or inf")
                        raise NonFiniteError(
                            f"training diverged at epoch {epoch}, {what}. The weights and optimizer state are "
                            f"restored to their values before batch {restored + 1}, the newest ones with a finite loss "
                            f"and gradient: lower the learning rate and call fit again (initial_epoch={epoch - 1} "
                            f"keeps the epoch numbers).", epoch=epoch, batch=bad if guard.weights_failed else bad + 1)
                    loss_sum += C * (Xb.shape[0] if step_rows is None else step_rows[b])
                    if Cb is not None:
                        # the outputs of this batch's forward pass, before the update
                        correct += _n_correct(net._workspace(Xb.shape[0]).A[net.L], Cb)
                    bar.update(1)
        except KeyboardInterrupt:
            guard.restore()
            raise
        except Exception as exc:
            if not memory.is_out_of_memory(exc):
                raise
            restored = guard.restore()
            raise memory.out_of_memory_error(
                exc, backend, "in fit",
                memory.batch_hint(batch_size) + f"; the weights and optimizer state are restored to their values "
                f"before batch {restored + 1} of epoch {epoch}", epoch=epoch, batch=b + 1) from exc
        finally:
            bar.close()
        net.epoch = epoch
        n_correct = int(correct) if step_rows is None else comm.sum(int(correct))
        logs: Dict[str, Optional[float]] = {
            "loss": float(loss_sum) / n_total,
            "accuracy": n_correct / n_total if data.classes is not None else None,
        }
        if val is not None:
            logs["val_loss"], logs["val_accuracy"] = _evaluate(net, val, 4096)
            if step_rows is not None:  # weighted by each rank's validation rows
                acc = logs["val_accuracy"]
                sums = comm.sum((logs["val_loss"] * val.n, (acc or 0.0) * val.n, float(val.n)))
                logs["val_loss"] = sums[0] / sums[2]
                logs["val_accuracy"] = sums[1] / sums[2] if acc is not None else None
        for key in history:
            history[key].append(logs.get(key))
        if callback is not None:
            callback(epoch, logs)
    return history
