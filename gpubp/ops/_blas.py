"""Direct calls into a BLAS for the NumPy backend: Intel MKL where the ``mkl`` extra is installed,
else the OpenBLAS NumPy itself ships.

NumPy's ``matmul`` cannot scale a product or add it to an array (GEMM's alpha and beta), and
NumPy has no fused ``y += a x`` (AXPY); each is one BLAS call. Every matrix product of a NumPy
training step goes through the one library chosen here, so that only one thread pool is busy
(two pools on the same cores, OpenBLAS's and MKL's, slow each other down several times).

The library is chosen once, at import, by ``GPUBP_BLAS``:

* ``auto`` (default): MKL (``libmkl_rt`` of the ``mkl`` wheel, its 64-bit-index ``*_64``
  entry points) where it is installed, else NumPy's OpenBLAS (the ``scipy_``-prefixed symbols
  of the NumPy wheels, the copy NumPy already loaded, so its threads are NumPy's), else none;
* ``mkl`` or ``openblas``: that library, or :class:`BlasUnavailableError` saying why not;
* ``numpy``: no direct calls; NumPy's own ``matmul`` does the products.

A :class:`Blas` offers :meth:`~Blas.gemm`, :meth:`~Blas.gemv_t`, :meth:`~Blas.axpy`,
:meth:`~Blas.axpby`, :meth:`~Blas.dot` and :meth:`~Blas.scal` on
float32/float64 arrays whose rows are contiguous (C-ordered arrays, their transposes and
row-strided views such as ``W[:, :k]``); each returns False and does nothing where the arrays
do not allow the call, and the caller falls back to NumPy.
"""
from __future__ import annotations

import ctypes
import glob
import os
import site
import sys
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..errors import GpubpError

CHOICES = ("auto", "mkl", "openblas", "numpy")
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


class BlasUnavailableError(GpubpError, ImportError):
    """``GPUBP_BLAS`` (or ``NumpyOps(blas=...)``) named a library that cannot be loaded here."""


def _mkl_paths() -> List[str]:
    """libmkl_rt where the ``mkl`` wheel puts it (the environment's lib/), then the loader's search."""
    roots = [sys.prefix, sys.base_prefix, getattr(site, "USER_BASE", None) or ""]
    found: List[str] = []
    for root in dict.fromkeys(r for r in roots if r):
        for pattern in ("lib/libmkl_rt.so*", "lib/libmkl_rt*.dylib", "Library/bin/mkl_rt*.dll"):
            found.extend(sorted(glob.glob(os.path.join(root, pattern)), reverse=True))
    import ctypes.util

    system = ctypes.util.find_library("mkl_rt")
    return found + ([system] if system else [])


def _openblas_paths() -> List[str]:
    """The OpenBLAS bundled with the NumPy wheel (the copy NumPy has loaded)."""
    root = os.path.dirname(np.__file__)
    found: List[str] = []
    for pattern in (os.path.join(root + ".libs", "*openblas*"), os.path.join(root, ".dylibs", "*openblas*")):
        found.extend(sorted(glob.glob(pattern)))
    return found


# One table for every library and precision: where to look, how its C BLAS symbols are named
# (``{}`` is sgemm, dgemm, ...) and the integer type of its sizes. 64-bit indices first: a
# 32-bit BLAS is used only where no 64-bit one is found, and is refused sizes beyond 2^31 - 1.
LIBRARIES: Dict[str, Tuple[Callable[[], List[str]], Tuple[Tuple[str, Any], ...]]] = {
    "mkl": (_mkl_paths, (("cblas_{}_64", ctypes.c_int64),)),
    "openblas": (_openblas_paths, (("scipy_cblas_{}64_", ctypes.c_int64), ("scipy_cblas_{}", ctypes.c_int32))),
}
_ROUTINES = ("gemm", "gemv", "axpy", "dot", "scal")
_OPTIONAL_ROUTINES = ("axpby",)  # y = alpha x + beta y: an extension both libraries have


def _signature(routine: str, index: Any, real: Any) -> List[Any]:
    layout = ctypes.c_int
    if routine == "gemm":  # layout, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc
        return [layout, layout, layout, index, index, index, real, ctypes.c_void_p, index, ctypes.c_void_p, index,
                real, ctypes.c_void_p, index]
    if routine == "gemv":  # layout, trans, m, n, alpha, A, lda, x, incx, beta, y, incy
        return [layout, layout, index, index, real, ctypes.c_void_p, index, ctypes.c_void_p, index, real,
                ctypes.c_void_p, index]
    if routine == "axpby":  # n, alpha, x, incx, beta, y, incy
        return [index, real, ctypes.c_void_p, index, real, ctypes.c_void_p, index]
    if routine == "dot":  # n, x, incx, y, incy (returns the dot product)
        return [index, ctypes.c_void_p, index, ctypes.c_void_p, index]
    if routine == "scal":  # n, alpha, x, incx
        return [index, real, ctypes.c_void_p, index]
    return [index, real, ctypes.c_void_p, index, ctypes.c_void_p, index]  # axpy: n, alpha, x, incx, y, incy


def _version(name: str, lib: Any) -> str:
    try:
        if name == "mkl":
            buf = ctypes.create_string_buffer(256)
            lib.mkl_get_version_string(buf, len(buf))
            return buf.value.decode(errors="replace").strip()
        fn = lib.scipy_openblas_get_config64_ if hasattr(lib, "scipy_openblas_get_config64_") else lib.scipy_openblas_get_config
        fn.restype = ctypes.c_char_p
        return fn().decode(errors="replace").strip()
    except (AttributeError, OSError):
        return name


# Data addresses of the arrays last handed to the BLAS. Reading ``a.ctypes.data`` costs about a
# microsecond, as much as a small GEMM's own arithmetic; the arrays of a training step (the
# parameters, the workspace) are the same objects call after call. An entry is used only
# while its array is alive and has the same shape and strides.
_ADDRESSES: Dict[int, Tuple[Any, Tuple[int, ...], Tuple[int, ...], int]] = {}
_MAX_ADDRESSES = 256
# Calls already checked and converted, per Blas (see Blas._plan): at most this many.
_MAX_PLANS = 256


def _address(a: np.ndarray) -> int:
    entry = _ADDRESSES.get(id(a))
    if entry is not None and entry[0]() is a and entry[1] == a.shape and entry[2] == a.strides:
        return entry[3]
    ptr = a.ctypes.data
    if len(_ADDRESSES) >= _MAX_ADDRESSES:
        _ADDRESSES.clear()
    _ADDRESSES[id(a)] = (weakref.ref(a), a.shape, a.strides, ptr)
    return ptr


def _vector(x: np.ndarray) -> bool:
    """Whether the library can take ``x`` as a vector with increment 1: aligned, and each element
    one element size after the last (NumPy's contiguity flag, which a length-1 array always has)."""
    return x.flags.aligned and x.flags.c_contiguous


class Blas:
    """GEMM, GEMV, AXPY, AXPBY, DOT and SCAL of one loaded BLAS library, float32 and float64."""

    def __init__(self, name: str, path: str, lib: Any, symbol: str, index: Any) -> None:
        self.name = name
        self.path = path
        self.version = _version(name, lib)
        # the largest size or leading dimension the library's index type holds
        self.index_max = 2 ** (8 * ctypes.sizeof(index) - 1) - 1
        self._fns: Dict[Tuple[str, np.dtype], Any] = {}
        # (routine, ids of its arrays, scalars) -> the checked call (see _plan)
        self._plans: Dict[Tuple[Any, ...], Tuple[Any, ...]] = {}
        self._seen: Dict[Tuple[Any, ...], Tuple[Any, ...]] = {}  # calls made once so far
        for routine in _ROUTINES + _OPTIONAL_ROUTINES:
            for dtype, prefix, real in ((_F32, "s", ctypes.c_float), (_F64, "d", ctypes.c_double)):
                fn = getattr(lib, symbol.format(prefix + routine), None)
                if fn is None:  # only an optional routine can be missing (load checked the others)
                    continue
                fn.restype = real if routine == "dot" else None
                fn.argtypes = _signature(routine, index, real)
                self._fns[(routine, dtype)] = fn

    def __repr__(self) -> str:
        return f"Blas({self.name!r}, {self.version!r})"

    def has(self, routine: str, dtype: Any) -> bool:
        """Whether this library has ``routine`` (``gemm``, ``gemv``, ``axpy``, ``axpby``, ``dot``, ``scal``) for ``dtype``."""
        return (routine, np.dtype(dtype)) in self._fns

    # ---- calls made again with the same arrays ------------------------------------------
    # A training step hands the library the same arrays (the parameters, the workspace) with
    # the same scalars call after call. Checking them (_rows and friends) and converting the
    # arguments to C types costs several microseconds per call, more than a small product's
    # arithmetic; so each call that passed its checks is remembered with its converted
    # arguments, and made again directly while its arrays are the very same objects (alive,
    # with the same shapes and strides), the written one still writeable, and the index limit
    # it was checked against unchanged.

    def _plan(self, key: Tuple[Any, ...], arrays: Tuple[np.ndarray, ...], fn: Any, args: Tuple[Any, ...]) -> None:
        """Note the checked call ``fn(*args)`` on ``arrays`` under ``key``; the second time the very
        same call is made, remember it with its arguments converted (calls made once, such as
        those on fresh slices or with a scalar that changes every time, cost only the note)."""
        layout = tuple((a.shape, a.strides) for a in arrays)
        seen = self._seen.get(key)
        if seen is not None and seen[1] == layout and all(ref() is a for ref, a in zip(seen[0], arrays)):
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            converted = tuple(t(a) for t, a in zip(fn.argtypes, args))
            self._plans[key] = (seen[0], layout, self.index_max, fn, converted)
            return
        if len(self._seen) >= _MAX_PLANS:
            self._seen.clear()
        self._seen[key] = (tuple(weakref.ref(a) for a in arrays), layout)

    def _planned(self, key: Tuple[Any, ...], x: np.ndarray, y: np.ndarray) -> Optional[Tuple[Any, Tuple[Any, ...]]]:
        """(function, arguments) of the call remembered under ``key`` for the arrays x and y (the
        one written), where it still applies; None otherwise."""
        plan = self._plans.get(key)
        if (plan is None or plan[0][0]() is not x or plan[0][1]() is not y or plan[2] != self.index_max
                or plan[1] != ((x.shape, x.strides), (y.shape, y.strides))):
            return None
        return plan[3], plan[4]

    def _rows(self, a: np.ndarray, dtype: np.dtype) -> Optional[Tuple[bool, int]]:
        """(transposed, leading dimension ld) of a 2-D ``a`` whose element [i, j] the library can
        address from its first one: stored by rows (at i ld + j) or by columns (at j ld + i),
        with ld >= the row (column) length; None otherwise. An empty array addresses nothing.

        Read from the strides alone, axis by axis: NumPy calls an array with one row or one
        column contiguous whatever the stride of its other axis, so its flags cannot tell a
        column vector from a reversed, broadcast or strided one. The stride of a length-1 axis
        is never used (it addresses nothing); every other stride must be a positive multiple
        of the element size. Unaligned arrays are refused (BLAS kernels may assume alignment).
        """
        if (a.dtype != dtype or a.ndim != 2 or dtype not in (_F32, _F64) or a.size > self.index_max
                or not a.flags.aligned):
            return None
        rows, cols = a.shape
        if a.size == 0:  # addresses nothing
            return False, max(1, cols)
        item = dtype.itemsize
        s0, s1 = a.strides
        if (cols <= 1 or s1 == item) and (rows <= 1 or (s0 % item == 0 and s0 // item >= max(1, cols))):
            return False, (s0 // item if rows > 1 else max(1, cols))
        if (rows <= 1 or s0 == item) and (cols <= 1 or (s1 % item == 0 and s1 // item >= max(1, rows))):
            return True, (s1 // item if cols > 1 else max(1, rows))  # a transposed view: stored by columns
        return None

    def gemm(self, alpha: float, A: np.ndarray, B: np.ndarray, beta: float, C: np.ndarray,
             trans_a: bool = False, trans_b: bool = False) -> bool:
        """C = alpha op(A) op(B) + beta C in one call; op(X) is X, or X^T where ``trans_x``.

        C is stored by rows; A and B by rows or by columns (a transposed view is passed as it is).
        """
        key = ("gemm", id(A), id(B), id(C), trans_a, trans_b, alpha, beta)
        plan = self._plans.get(key)
        if (plan is not None and plan[0][0]() is A and plan[0][1]() is B and plan[0][2]() is C
                and plan[1] == ((A.shape, A.strides), (B.shape, B.strides), (C.shape, C.strides))
                and plan[2] == self.index_max and C.flags.writeable):
            plan[3](*plan[4])
            return True
        dtype = C.dtype
        a, b, c = self._rows(A, dtype), self._rows(B, dtype), self._rows(C, dtype)
        if a is None or b is None or c is None or c[0] or not C.flags.writeable:
            return False
        m, k = A.shape[::-1] if trans_a else A.shape
        k2, n = B.shape[::-1] if trans_b else B.shape
        if k != k2 or C.shape != (m, n) or max(m, n, k, a[1], b[1], c[1]) > self.index_max:
            return False
        if m == 0 or n == 0:
            return True
        if k == 0:
            C *= beta
            return True
        fn = self._fns[("gemm", dtype)]
        args = (_ROW_MAJOR, _TRANS if a[0] != trans_a else _NO_TRANS, _TRANS if b[0] != trans_b else _NO_TRANS,
                m, n, k, alpha, _address(A), a[1], _address(B), b[1], beta, _address(C), c[1])
        fn(*args)
        self._plan(key, (A, B, C), fn, args)
        return True

    def gemv_t(self, alpha: float, A: np.ndarray, x: np.ndarray, beta: float, y: np.ndarray) -> bool:
        """y = alpha A^T x + beta y in one call (A stored by rows; x and y contiguous vectors)."""
        dtype = y.dtype
        a = self._rows(A, dtype)
        if (a is None or a[0] or x.dtype != dtype or x.ndim != 1 or y.ndim != 1 or not _vector(x) or not _vector(y)
                or not y.flags.writeable or (x.size, y.size) != A.shape):
            return False
        m, n = A.shape
        if m == 0 or n == 0:
            y *= beta
            return True
        self._fns[("gemv", dtype)](_ROW_MAJOR, _TRANS, m, n, alpha, _address(A), a[1], _address(x), 1, beta,
                                   _address(y), 1)
        return True

    def _vector_routine(self, routine: str, x: np.ndarray, y: np.ndarray) -> Any:
        """``routine`` for the dtype of x and y where both are contiguous, of one dtype and size
        within the index type; None otherwise (or where the library lacks it)."""
        if (x.dtype != y.dtype or x.size != y.size or x.size > self.index_max or not (_vector(x) and _vector(y))
                or not y.flags.writeable):
            return None
        return self._fns.get((routine, y.dtype))

    def axpby(self, alpha: float, x: np.ndarray, beta: float, y: np.ndarray) -> bool:
        """y = alpha x + beta y in one pass (contiguous arrays of one dtype and size)."""
        key = ("axpby", id(x), id(y), alpha, beta)
        planned = self._planned(key, x, y)
        if planned is not None and y.flags.writeable:
            planned[0](*planned[1])
            return True
        fn = self._vector_routine("axpby", x, y)
        if fn is None:
            return False
        args = (x.size, alpha, _address(x), 1, beta, _address(y), 1)
        fn(*args)
        self._plan(key, (x, y), fn, args)
        return True

    def axpy(self, alpha: float, x: np.ndarray, y: np.ndarray) -> bool:
        """y += alpha x in one pass (contiguous arrays of one dtype and size)."""
        key = ("axpy", id(x), id(y), alpha)
        planned = self._planned(key, x, y)
        if planned is not None and y.flags.writeable:
            planned[0](*planned[1])
            return True
        fn = self._vector_routine("axpy", x, y)
        if fn is None:
            return False
        args = (x.size, alpha, _address(x), 1, _address(y), 1)
        fn(*args)
        self._plan(key, (x, y), fn, args)
        return True

    def _vector(self, routine: str, x: np.ndarray) -> Any:
        """``routine`` for a contiguous float vector within the index type; None otherwise."""
        if x.ndim != 1 or not x.flags.c_contiguous or x.size > self.index_max:
            return None
        return self._fns.get((routine, x.dtype))

    def dot(self, x: np.ndarray, y: np.ndarray) -> Optional[float]:
        """x . y in one pass (contiguous vectors of one dtype and size); None where the call cannot be
        made. (MKL's NRM2 is not used for norms: its result depends on the vector's address, so
        two replicas of a distributed run would round differently; its DOT does not.)"""
        key = ("dot", id(x), id(y))
        planned = self._planned(key, x, y)
        if planned is not None:
            return float(planned[0](*planned[1]))
        fn = self._vector("dot", x)
        if fn is None or y.dtype != x.dtype or y.shape != x.shape or not y.flags.c_contiguous:
            return None
        if not x.size:
            return 0.0
        args = (x.size, _address(x), 1, _address(y), 1)
        self._plan(key, (x, y), fn, args)
        return float(fn(*args))

    def scal(self, alpha: float, x: np.ndarray) -> bool:
        """x *= alpha in one pass (a contiguous vector)."""
        fn = self._vector("scal", x)
        if fn is None:
            return False
        if x.size:
            fn(x.size, alpha, _address(x), 1)
        return True


_LOADED: Dict[str, Any] = {}


def load(name: str) -> Blas:
    """The library ``name`` (``mkl`` or ``openblas``), loaded once; BlasUnavailableError if it cannot be."""
    if name not in LIBRARIES:
        raise ValueError(f"unknown BLAS {name!r}: expected one of {', '.join(LIBRARIES)}")
    if name in _LOADED:
        result = _LOADED[name]
        if isinstance(result, Exception):
            raise result
        return result
    find, symbols = LIBRARIES[name]
    tried: List[str] = []
    for path in find():
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            tried.append(f"{path}: {exc}")
            continue
        for symbol, index in symbols:
            if all(hasattr(lib, symbol.format(p + r)) for p in "sd" for r in _ROUTINES):
                _LOADED[name] = blas = Blas(name, path, lib, symbol, index)
                return blas
        tried.append(f"{path}: no {symbols[0][0].format('sgemm')} entry point")
    hint = "install the 'mkl' extra (pip install gpubp[mkl])" if name == "mkl" else "NumPy's wheel bundles it"
    err = BlasUnavailableError(f"BLAS {name!r} cannot be loaded ({hint}); "
                               + ("tried " + "; ".join(tried) if tried else "no library file found"))
    _LOADED[name] = err
    raise err


def available() -> Tuple[str, ...]:
    """The names of the libraries that load here, in the order ``auto`` prefers them."""
    names = []
    for name in LIBRARIES:
        try:
            load(name)
        except BlasUnavailableError:
            continue
        names.append(name)
    return tuple(names)


def select(choice: str) -> Optional[Blas]:
    """The library for ``choice`` (one of CHOICES); None for ``numpy``, or ``auto`` with none found."""
    if choice not in CHOICES:
        raise ValueError(f"GPUBP_BLAS must be one of {', '.join(CHOICES)}; got {choice!r}")
    if choice == "numpy":
        return None
    if choice != "auto":
        return load(choice)
    names = available()
    return load(names[0]) if names else None


SELECTED = os.environ.get("GPUBP_BLAS", "auto").strip().lower() or "auto"
DEFAULT: Optional[Blas] = select(SELECTED)


def describe(blas: Optional[Blas] = DEFAULT, path: bool = False) -> str:
    """One line naming the library the NumPy backend's products go to (and its file, with ``path``)."""
    if blas is None:
        return "NumPy's matmul (no direct BLAS calls)"
    return f"{blas.name}: {blas.version}" + (f" ({blas.path})" if path else "")

