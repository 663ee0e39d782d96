"""``evaluate``: the loss and accuracy of a network over a whole data set, in inference mode; and
the inference pass over a sparse X, chunk by chunk."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import memory, sparse, validation
from .dataset import Dataset, n_correct, upload

#: Rows per inference batch of ``evaluate`` (and of ``fit``'s validation).
EVAL_BATCH = 4096


def evaluate(net: Any, X: Any, Y: Any, batch_size: int = EVAL_BATCH) -> Tuple[float, Optional[float]]:
    """(C, accuracy) of ``net`` on X, Y: C = (1/n) sum_i C_0^(i) over all rows, in batches."""
    batch_size = validation.check_int(batch_size, "batch_size", 1)
    return evaluate_dataset(net, Dataset(net, X, Y), batch_size)


def evaluate_dataset(net: Any, data: Dataset, batch_size: int = EVAL_BATCH) -> Tuple[float, Optional[float]]:
    """:func:`evaluate` on rows already checked (``fit``'s validation set). Each batch's C is
    weighted by its rows and summed in float64 on the device; one read-back at the end."""
    ops = net.backend.ops
    xp = net.backend.xp
    n = data.n
    if data.sparse:
        batch_size = sparse.chunk_rows(net.sizes[0], net.dtype, batch_size)
    total = xp.zeros((), dtype=np.float64)
    correct = xp.zeros((), dtype=np.int64)
    with memory.translated_out_of_memory(net.backend, "in evaluate", memory.batch_hint(batch_size)):
        for s in range(0, n, batch_size):
            Xb, Yb, Cb = data.rows(s, min(s + batch_size, n))
            A = net.infer(Xb)
            Z = net.workspace(Xb.shape[0]).Z[net.L]
            total += ops.loss_value(net.loss, Z, A, Yb).astype(np.float64) * Xb.shape[0]
            if Cb is not None:
                correct += n_correct(A, Cb)
    return float(total) / n, (int(correct) / n if data.classes is not None else None)


def infer_sparse(net: Any, X: Any, batch_size: int = EVAL_BATCH) -> Any:
    """A^(L) (a new backend array of shape (n, n_L)) for the rows of a checked CSR X, by inference
    passes over chunks of ``batch_size`` rows (fewer for a wide X: :func:`gpubp.sparse.chunk_rows`),
    each densified into one reused staging buffer and copied to the backend: the whole X is never
    dense. Inference treats rows independently, so the rows are those of one pass over the dense X."""
    n = X.shape[0]
    xp = net.backend.xp
    out = xp.empty((n, net.sizes[-1]), dtype=net.dtype)
    batch_size = sparse.chunk_rows(X.shape[1], X.dtype, batch_size)
    rows = min(batch_size, n)
    staged = np.empty((rows, X.shape[1]), dtype=X.dtype)
    device = staged if xp is np else xp.empty(staged.shape, dtype=staged.dtype)
    for s in range(0, n, batch_size):
        e = min(s + batch_size, n)
        Xb = sparse.densify_rows(X, slice(s, e), staged[: e - s])
        if device is not staged:
            upload(net.backend, device[: e - s], Xb)
            Xb = device[: e - s]
        out[s:e] = net.infer(Xb)
    return out
