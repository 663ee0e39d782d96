"""Sparse input: a SciPy sparse X (any format) as a host data set densified batch by batch.

A sparse X is checked once and converted once to CSR in the network's dtype; it stays in host
memory, and each mini-batch (or inference chunk) is the CSR rows of its indices densified into
a reused staging buffer, ``X[idx].toarray(out=buffer)``, then copied to the backend as a
streaming data set's batch is (:mod:`gpubp.dataset`). The whole X is never densified: one
batch of rows at a time is. The numbers are those of the dense copy of X: a densified row is
that row of ``X.toarray()``, bit for bit.

SciPy is not a dependency of gpubp: a SciPy sparse object is recognised through
``sys.modules`` (there is none unless ``scipy.sparse`` was imported), so ``import gpubp``
still needs NumPy alone.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: The most bytes one densified chunk of an inference pass (``predict``, ``evaluate``) takes: its
#: rows are capped to fit, so a wide X (a TF-IDF of 100,000 terms) is never densified 4096 rows
#: at a time.
CHUNK_BYTES = 32 * 2**20


def is_sparse(value: Any) -> bool:
    """Whether ``value`` is a SciPy sparse matrix or array (any format)."""
    module = sys.modules.get("scipy.sparse")
    return module is not None and bool(module.issparse(value))


def describe(value: Any) -> str:
    """``value`` in an error message: its format, shape, dtype and stored values."""
    return (f"a sparse {type(value).__name__} of shape {tuple(value.shape)}, dtype {value.dtype} and "
            f"{value.nnz} stored values")


def to_csr(value: Any, dtype: Any, argument: str) -> Any:
    """``value`` as a 2-D CSR matrix of ``dtype`` (the object itself when it already is one; never
    changed in place), or a TypeError / ValueError naming ``argument``."""
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold real numbers (bool, int or float); got {describe(value)}")
    if len(value.shape) != 2:
        raise ValueError(f"{argument} must be 2-D (n samples by n_0 inputs); got {describe(value)}")
    csr = value.tocsr()
    if csr.dtype != dtype:
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by the finite scan
            csr = csr.astype(dtype)
    return csr


def finite(csr: Any) -> bool:
    """Whether every stored value of ``csr`` is finite (the implicit zeros are)."""
    return bool(np.isfinite(csr.data).all())


def chunk_rows(n_0: int, dtype: Any, batch_size: int) -> int:
    """Rows per densified inference chunk: ``batch_size``, or fewer where that many rows of
    ``n_0`` values exceed :data:`CHUNK_BYTES` (at least one)."""
    return max(1, min(int(batch_size), CHUNK_BYTES // (int(n_0) * np.dtype(dtype).itemsize)))


def densify_rows(csr: Any, rows: Any, out: np.ndarray) -> np.ndarray:
    """The rows ``rows`` of ``csr`` (an index array, or a slice) written densely into ``out``
    (C-contiguous, shape (len(rows), n_0), ``csr``'s dtype); returns ``out``. Allocates the
    batch's stored values only, never a dense array beside ``out``."""
    return csr[rows].toarray(out=out)


def densify(csr: Any) -> np.ndarray:
    """All of ``csr`` as a dense C-contiguous host array: for a single batch (a training step over
    X, ``loss_and_grads``), whose dense rows the pass needs at once anyway."""
    return csr.toarray(order="C")
