"""``evaluate``: the loss and accuracy of a network over a whole data set, in inference mode."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import memory, validation
from .dataset import Dataset, n_correct

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
