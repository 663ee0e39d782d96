"""Hypothesis strategies for arrays in every memory layout NumPy can make, each with its contiguous copy.

``laid_out(shape, dtype)`` draws values and a layout and gives ``(array, contiguous_copy)``:
the same numbers, once as a plain C-contiguous array and once as a Fortran-ordered,
transposed, reversed (negative strides), strided, embedded, broadcast or zero-stride,
overlapping (``as_strided``), read-only, memory-mapped, unaligned or big-endian array, or one
whose length-1 axis has an arbitrary stride (1-row and 1-column views).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any, Tuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.lib.stride_tricks import as_strided

# layouts that hold any values, and those whose values repeat along an axis
FREE = ("contiguous", "fortran", "transposed", "reversed rows", "reversed columns", "reversed both",
        "row-strided", "column-strided", "negative-strided", "embedded", "read-only", "memmap",
        "read-only memmap", "unaligned", "big-endian", "odd strides on length-1 axes")
REPEATING = ("broadcast row", "broadcast scalar", "zero-stride columns", "overlapping windows")
LAYOUTS_2D = FREE + REPEATING
FREE_1D = ("contiguous", "reversed", "strided", "negative-strided", "read-only", "memmap", "unaligned", "big-endian")
LAYOUTS_1D = FREE_1D + ("broadcast scalar",)
_MEMMAP_DIR = tempfile.mkdtemp(prefix="gpubp-layouts-")
atexit.register(shutil.rmtree, _MEMMAP_DIR, True)


def _memmap(values: np.ndarray, mode: str) -> np.ndarray:
    fd, path = tempfile.mkstemp(dir=_MEMMAP_DIR, suffix=".dat")
    os.close(fd)
    mm = np.memmap(path, dtype=values.dtype, mode="w+", shape=values.shape)
    mm[...] = values
    mm.flush()
    if mode == "r":
        mm = np.memmap(path, dtype=values.dtype, mode="r", shape=values.shape)
    return mm


def _unaligned(values: np.ndarray) -> np.ndarray:
    buf = np.zeros(values.nbytes + 1, dtype=np.uint8)
    out = np.ndarray(values.shape, dtype=values.dtype, buffer=buf, offset=1)
    out[...] = values
    return out


def arrange(values: np.ndarray, layout: str) -> np.ndarray:
    """``values`` in ``layout`` (of FREE for 2-D, FREE_1D for 1-D): equal numbers, other memory."""
    v = values
    if layout == "contiguous":
        return v.copy()
    if layout == "fortran":
        return np.asfortranarray(v)
    if layout == "transposed":
        return np.ascontiguousarray(v.T).T
    if layout in ("reversed rows", "reversed"):
        return v[::-1].copy()[::-1]
    if layout == "reversed columns":
        return v[:, ::-1].copy()[:, ::-1]
    if layout == "reversed both":
        return v[::-1, ::-1].copy()[::-1, ::-1]
    if layout in ("row-strided", "strided"):
        big = np.zeros((2 * v.shape[0],) + v.shape[1:], dtype=v.dtype)
        big[::2] = v
        return big[::2]
    if layout == "column-strided":
        big = np.zeros((v.shape[0], 3 * v.shape[1]), dtype=v.dtype)
        big[:, ::3] = v
        return big[:, ::3]
    if layout == "negative-strided":
        big = np.zeros(tuple(2 * s for s in v.shape), dtype=v.dtype)
        index = tuple(slice(None, None, -2) for _ in v.shape)
        big[index] = v
        return big[index]
    if layout == "embedded":
        big = np.zeros((v.shape[0] + 2, v.shape[1] + 3), dtype=v.dtype)
        big[1:-1, 2:-1] = v
        return big[1:-1, 2:-1]
    if layout == "read-only":
        out = v.copy()
        out.flags.writeable = False
        return out
    if layout == "memmap":
        return _memmap(v, "w+")
    if layout == "read-only memmap":
        return _memmap(v, "r")
    if layout == "unaligned":
        return _unaligned(v)
    if layout == "big-endian":
        return v.astype(v.dtype.newbyteorder(">"))
    if layout == "odd strides on length-1 axes":
        out = v.copy()
        strides = tuple(s if n > 1 else odd for n, s, odd in zip(out.shape, out.strides, (-8, 0, 12345)))
        return as_strided(out, out.shape, strides, writeable=False)
    raise ValueError(layout)


@st.composite
def laid_out(draw: Any, shape: Tuple[int, ...], dtype: Any = np.float64, elements: Any = None,
             layouts: Tuple[str, ...] = ()) -> Tuple[np.ndarray, np.ndarray]:
    """(array in a drawn layout, its contiguous copy) of ``shape`` (1-D or 2-D) and ``dtype``."""
    dtype = np.dtype(dtype)
    elements = elements if elements is not None else st.floats(-2, 2, width=32)
    layout = draw(st.sampled_from(layouts or (LAYOUTS_2D if len(shape) == 2 else LAYOUTS_1D)))
    if layout == "broadcast scalar":
        value = draw(hnp.arrays(dtype, (), elements=elements))
        a = np.broadcast_to(value, shape)
    elif layout == "broadcast row":
        a = np.broadcast_to(draw(hnp.arrays(dtype, (1, shape[1]), elements=elements)), shape)
    elif layout == "zero-stride columns":
        column = draw(hnp.arrays(dtype, (shape[0],), elements=elements))
        a = as_strided(column, shape, (column.strides[0], 0), writeable=False)
    elif layout == "overlapping windows":  # row i is base[i : i + k]
        base = draw(hnp.arrays(dtype, (shape[0] + shape[1] - 1,), elements=elements))
        a = as_strided(base, shape, (base.strides[0], base.strides[0]), writeable=False)
    else:
        a = arrange(draw(hnp.arrays(dtype, shape, elements=elements)), layout)
    return a, np.ascontiguousarray(a, dtype=dtype.newbyteorder("="))
