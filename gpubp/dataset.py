"""The rows of one ``fit`` or ``evaluate`` call, checked once and served by mini-batch.

The data set is checked and moved to the backend once (on a GPU it does not fit, it stays in
host memory and streams batch by batch, see :mod:`gpubp.memory`); each epoch draws one
permutation of the row indices and every mini-batch is gathered from it into a reused buffer
(an index slice, never a per-sample loop, never a copy of the data set). A SciPy sparse X is
a host data set too: each mini-batch is its CSR rows densified into the staging buffer
(:mod:`gpubp.sparse`), so the whole X is never dense.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import memory, sparse, validation
from .backend import is_device_array


def class_targets(Y: Any, m: int) -> Optional[Any]:
    """Class index per row when Y holds classes (labels, one-hot rows, or 0/1 for one output)."""
    if Y.ndim == 1:
        return Y
    if m == 1:
        col = Y[:, 0]
        return col.astype("int64") if bool(((col == 0) | (col == 1)).all()) else None
    if bool(((Y == 0) | (Y == 1)).all()) and bool((Y.sum(axis=1) == 1).all()):
        return Y.argmax(axis=1)
    return None


def n_correct(A: Any, classes: Any) -> Any:
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


def upload(backend: Any, dst: Any, src: np.ndarray) -> None:
    """Copy host array ``src`` into the reused backend buffer ``dst`` (nothing when they are one:
    on NumPy a sparse X's batch is densified into the backend's buffer itself)."""
    if dst is src:
        return
    if backend.name == "cupy":
        dst.set(src)
    else:
        np.copyto(dst, src)


def _stage(src: Any, rows: Any, out: np.ndarray) -> np.ndarray:
    """The rows ``rows`` (indices or a slice) of host array ``src``: a sparse X's rows densified
    into ``out``, a dense array's gathered into it (see NumpyOps.take_rows), or their slice
    itself (contiguous rows, copied once by the upload)."""
    if sparse.is_sparse(src):
        return sparse.densify_rows(src, rows, out)
    if isinstance(rows, slice):
        return np.ascontiguousarray(src[rows])
    return src.take(rows, 0, out, "clip")


class Dataset:
    """The X, Y (and class indices) of one ``fit`` or ``evaluate`` call, checked once.

    Resident (the default): the arrays live on the backend and a mini-batch is gathered from
    them by index into reused buffers. Streaming (a NumPy data set too large for the GPU, see
    :mod:`gpubp.memory`): the arrays stay in host memory; a mini-batch is gathered on the
    host into a reused staging buffer and copied into a reused device buffer. A SciPy sparse X
    always streams (on either backend): it stays CSR in host memory and each mini-batch is its
    rows densified into the staging buffer (on NumPy, the batch buffer itself).
    """

    def __init__(self, net: Any, X: Any, Y: Any, names: Tuple[str, str] = ("X", "Y")):
        self.backend = net.backend
        self.sparse = sparse.is_sparse(X)
        self.stream = self.sparse or (not is_device_array(X) and memory.should_stream(self.backend,
                                                                                       _host_nbytes(net, X, Y)))
        self.X, self.Y = validation.check_XY(net, X, Y, names, on_host=self.stream, keep_sparse=True)
        self.classes = class_targets(self.Y, net.sizes[-1])
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

    def _sources(self) -> Tuple[Any, ...]:
        """The arrays a mini-batch is gathered from: X, Y and the class indices where they are not
        Y itself (integer labels are their own class indices: one gather serves both)."""
        if self.classes is None or self.classes is self.Y:
            return (self.X, self.Y)
        return (self.X, self.Y, self.classes)

    def _batch(self, device: Tuple[Any, ...]) -> Tuple[Any, Any, Optional[Any]]:
        """(X_b, Y_b, class indices or None) from the gathered buffers."""
        if len(device) > 2:
            return device[0], device[1], device[2]
        return device[0], device[1], (device[1] if self.classes is not None else None)

    def _buffers_for(self, nb: int) -> Tuple[Any, ...]:
        bufs = self._buffers.get(nb)
        if bufs is None:
            sources = self._sources()
            shapes = [(nb,) + src.shape[1:] for src in sources]
            xp = self.backend.xp
            device = tuple(xp.empty(sh, dtype=src.dtype) for sh, src in zip(shapes, sources))
            if not self.stream:
                host: Tuple[Any, ...] = ()
            elif xp is np:  # host memory already: gathered straight into the batch buffers
                host = device
            else:
                host = tuple(np.empty(sh, dtype=src.dtype) for sh, src in zip(shapes, sources))
            bufs = self._buffers[nb] = (device, host)
        return bufs

    def gather(self, idx: Any) -> Tuple[Any, Any, Optional[Any]]:
        """(X_b, Y_b, class indices or None) of the rows ``idx`` (indices of a permutation of the
        rows: each in range), in reused backend buffers."""
        device, host = self._buffers_for(int(idx.shape[0]))
        sources = self._sources()
        if self.stream:
            for src, buf, staged in zip(sources, device, host):
                upload(self.backend, buf, _stage(src, idx, staged))
        else:
            take = self.backend.ops.take_rows
            for src, buf in zip(sources, device):
                take(src, idx, buf)
        return self._batch(device)

    def rows(self, s: int, e: int) -> Tuple[Any, Any, Optional[Any]]:
        """(X_b, Y_b, classes) of the contiguous rows s..e-1 (views when resident)."""
        if not self.stream:
            return self.X[s:e], self.Y[s:e], None if self.classes is None else self.classes[s:e]
        device, host = self._buffers_for(e - s)
        for buf, src, staged in zip(device, self._sources(), host):
            upload(self.backend, buf, _stage(src, slice(s, e), staged))
        return self._batch(device)
