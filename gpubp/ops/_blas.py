"""Direct calls into the BLAS that NumPy itself ships, where it ships one (the scipy-openblas wheels).

NumPy's ``matmul`` cannot scale a product (GEMM's alpha) and NumPy has no fused ``y += a x``
(AXPY); both are one BLAS call. The NumPy wheels bundle OpenBLAS with ``scipy_``-prefixed
symbols; this module finds that library (the copy NumPy already loaded, so its thread pool is
shared), and offers :func:`gemm_tn` and :func:`axpy` for contiguous float32/float64 arrays.
Where no such library is found, :data:`AVAILABLE` is False and the callers use NumPy alone.
"""
from __future__ import annotations

import ctypes
import glob
import os
from typing import Any, Optional, Tuple

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# (symbol pattern, integer type): the 64-bit-index scipy-openblas of NumPy >= 2, then the 32-bit one
_SYMBOLS = (("scipy_cblas_{}64_", ctypes.c_int64), ("scipy_cblas_{}", ctypes.c_int32))


def _candidate_libraries() -> list:
    root = os.path.dirname(np.__file__)
    patterns = [os.path.join(root + ".libs", "*openblas*"), os.path.join(root, ".dylibs", "*openblas*"),
                os.path.join(root + ".libs", "*openblas*.dll")]
    found = []
    for pattern in patterns:
        found.extend(sorted(glob.glob(pattern)))
    return found


def _load() -> Optional[Tuple[Any, Any, Any, Any, Any, int]]:
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, index in _SYMBOLS:
            try:
                fns = [getattr(lib, pattern.format(name)) for name in ("sgemm", "dgemm", "saxpy", "daxpy")]
            except AttributeError:
                continue
            for fn, real in zip(fns[:2], (ctypes.c_float, ctypes.c_double)):
                fn.restype = None
                fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index, index, index, real, ctypes.c_void_p,
                               index, ctypes.c_void_p, index, real, ctypes.c_void_p, index]
            for fn, real in zip(fns[2:], (ctypes.c_float, ctypes.c_double)):
                fn.restype = None
                fn.argtypes = [index, real, ctypes.c_void_p, index, ctypes.c_void_p, index]
            # the largest size or dimension the library's index type holds
            index_max = 2 ** (8 * ctypes.sizeof(index) - 1) - 1
            return fns[0], fns[1], fns[2], fns[3], path, index_max
    return None


_FUNCS = None if os.environ.get("GPUBP_NUMPY_BLAS", "1") == "0" else _load()
AVAILABLE = _FUNCS is not None
LIBRARY = _FUNCS[4] if _FUNCS is not None else None
_INDEX_MAX = _FUNCS[5] if _FUNCS is not None else 0
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _ok(*arrays: Any) -> bool:
    """Same float dtype, C-contiguous, and every size within the BLAS's index type (a 32-bit
    BLAS would otherwise see wrapped-around sizes)."""
    dtype = arrays[0].dtype
    return dtype in (_F32, _F64) and all(
        a.dtype == dtype and a.flags.c_contiguous and a.size <= _INDEX_MAX for a in arrays)


def gemm_tn(alpha: float, Delta: np.ndarray, A_prev: np.ndarray, out: np.ndarray) -> bool:
    """out = alpha Delta^T A_prev in one GEMM; False (nothing done) where the arrays do not allow it."""
    if _FUNCS is None or not _ok(Delta, A_prev, out):
        return False
    n, m = Delta.shape
    k = A_prev.shape[1]
    gemm = _FUNCS[0] if Delta.dtype == _F32 else _FUNCS[1]
    gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, m, k, n, alpha, Delta.ctypes.data, m, A_prev.ctypes.data, k, 0.0,
         out.ctypes.data, k)
    return True


def axpy(alpha: float, x: np.ndarray, y: np.ndarray) -> bool:
    """y += alpha x in one pass; False (nothing done) where the arrays do not allow it."""
    if _FUNCS is None or not _ok(x, y) or x.size != y.size:
        return False
    (_FUNCS[2] if x.dtype == _F32 else _FUNCS[3])(x.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)
    return True
