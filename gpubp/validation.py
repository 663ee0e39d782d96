"""Checks at the public boundary: a clear ``ValueError``/``TypeError`` naming the argument,
what was expected and what came, before anything is changed.

Checks run once per call on shapes and dtypes; the scan for NaN/inf is one vectorised
reduction per array (switch it off with ``gpubp.validation.CHECK_FINITE = False`` or the
``check_finite`` context manager when data are known to be clean). On the GPU every value
check of a call (NaN scan, label range, target range) is read back in one transfer, so a
checked call costs one device synchronisation; ``fit`` checks the whole data set once and
then runs its mini-batches unchecked.

A SciPy sparse X (any format) is converted once to CSR in the network's dtype and its stored
values scanned (:mod:`gpubp.sparse`); it stays sparse where the caller serves it batch by batch
(``keep_sparse``), else it is one batch and is densified.
"""
from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import sparse
from .backend import is_device_array
from .activations import Activation, get_activation

CHECK_FINITE = True


@contextlib.contextmanager
def check_finite(enabled: bool) -> Iterator[None]:
    """Turn the NaN/inf scan of inputs on or off inside a ``with`` block."""
    global CHECK_FINITE
    saved, CHECK_FINITE = CHECK_FINITE, bool(enabled)
    try:
        yield
    finally:
        CHECK_FINITE = saved


def _repr(value: Any) -> str:
    """repr(value), shortened; an integer too long to print whole is described by its length."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**30:
        digits = int(abs(int(value)).bit_length() * 0.30103) + 1
        return f"{'a negative' if value < 0 else 'an'} integer of about {digits} digits"
    return repr(value)[:200]


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(value).__name__} {_repr(value)}"[:200]


def check_int(value: Any, argument: str, minimum: int, maximum: Optional[int] = None) -> int:
    """An integer >= minimum (and < maximum where given; bools and floats such as 2.5 rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an integer >= {minimum}; got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}; got {_repr(value)}")
    if maximum is not None and value >= maximum:
        bound = "2^63 (a checkpoint stores it in 64 bits)" if maximum == 2**63 else str(maximum)
        raise ValueError(f"{argument} must be an integer below {bound}; got {_repr(value)}")
    return int(value)


#: The counters a checkpoint stores (epochs, update steps) as 64-bit integers lie below this.
COUNTER_LIMIT = 2**63


def as_float(value: Any, argument: str) -> float:
    """``float(value)`` of a real number; an integer beyond the float range (such as 10**400) is a
    ValueError naming ``argument``, not a bare OverflowError."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{argument} must be a finite number; got {_repr(value)}, beyond the float range") from None


def check_positive_float(value: Any, argument: str, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a real number; got {_describe(value)}")
    bound = ">= 0" if allow_zero else "> 0"
    try:
        v = float(value)
    except OverflowError:  # an integer beyond the float range, such as 10**400
        raise ValueError(f"{argument} must be finite and {bound}; got {_repr(value)}, beyond the float range") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{argument} must be finite and {bound}; got {_repr(value)}")
    return v


def check_sizes(sizes: Any) -> Tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, (Sequence, np.ndarray)):
        raise TypeError(f"sizes must be a sequence of layer widths [n_0, ..., n_L]; got {_describe(sizes)}")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least two layer widths (input and output); got {sizes}")
    return tuple(check_int(s, f"sizes[{i}]", 1) for i, s in enumerate(sizes))


def check_activations(activation: Union[str, Sequence[str]], hidden: int) -> List[Activation]:
    """One activation per hidden layer, from one name or a list of ``hidden`` names."""
    if isinstance(activation, (str, Activation)):
        return [get_activation(activation)] * hidden
    if not isinstance(activation, Sequence):
        raise TypeError(f"activation must be a name or a list of names; got {_describe(activation)}")
    if len(activation) != hidden:
        raise ValueError(
            f"activation lists {len(activation)} names but the network has {hidden} hidden layers; "
            "give one name, or one per hidden layer"
        )
    return [get_activation(a, f"activation[{i}]") for i, a in enumerate(activation)]


#: The dtypes a network computes in.
DTYPES = ("float32", "float64")


def check_dtype(dtype: Any) -> np.dtype:
    """float32 or float64 in the machine's byte order, from any spelling NumPy accepts
    (``"float32"``, ``"f4"``, ``">f4"``, ``np.float32``...): a network computes, saves and loads
    in native byte order whatever order it was asked for."""
    expected = " or ".join(repr(d) for d in DTYPES)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be {expected}; got {dtype!r}") from None
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be {expected}; got {dt.name!r}")
    return np.dtype(dt.name)


#: Seeds lie in [0, SEED_LIMIT): as wide as the shuffling generator's state, and short enough
#: to be stored in (and read back from) a checkpoint's metadata.
SEED_LIMIT = 2**128


def check_seed(seed: Any) -> Any:
    if seed is None:
        return None
    seed = check_int(seed, "seed", 0)
    if seed >= SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**128); got {_repr(seed)}")
    return seed


def _as_array(net: Any, value: Any, argument: str, dtype: Any, on_host: bool = False) -> Any:
    """``value`` as an array on the network's backend (moved once if it came from the other
    backend), or as a NumPy array when ``on_host``; only real numbers (bool, int, float) pass."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{argument} must be a numeric array; got {_describe(value)}")
    if sparse.is_sparse(value):  # np.asarray would make a 0-d object array of it
        raise TypeError(f"{argument} must be a dense numeric array; got {sparse.describe(value)}: pass "
                        f"{argument}.toarray()")
    if isinstance(value, (Mapping, AbstractSet, Iterator, type)):
        # np.asarray would make a 0-d object array of it; a generator or iterator would be consumed
        raise TypeError(f"{argument} must be a numeric array (a NumPy or CuPy array, or nested lists of numbers); got "
                        f"{_describe(value)}" + (": make a list or an array of it first" if isinstance(value, Iterator)
                                                 else ""))
    if not isinstance(value, np.ndarray) and not is_device_array(value):
        try:
            value = np.asarray(value)
        except Exception:  # ragged nested lists, objects that refuse conversion
            raise TypeError(f"{argument} must be a numeric array; got {_describe(value)}") from None
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold real numbers (bool, int or float); got {_describe(value)}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported by the finite scan
        if on_host:
            return _plain(np, np.asarray(value.get() if is_device_array(value) else value, dtype=dtype))
        return _plain(net.backend.xp, net.backend.asarray(value, dtype=dtype))


def _plain(xp: Any, a: Any) -> Any:
    """``a`` itself when it is C-contiguous (and, on the host, aligned and in native byte order),
    else a copy that is.

    Every kernel and every direct BLAS call then reads its inputs the same way, so the numbers
    of every entry do not depend on the input's memory layout (Fortran order, negative, zero
    or overlapping strides, broadcasts, unaligned or big-endian data): they are those of the
    contiguous copy, bit for bit. Arrays that are already plain (the usual case) are not
    copied; for the others the copy is one pass over the input, less than any product reading it.
    """
    flags = a.flags
    if flags.c_contiguous and (xp is not np or (flags.aligned and a.dtype.isnative)):
        return a
    if xp is np:
        return np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
    return xp.ascontiguousarray(a)


class _Pending:
    """Value checks of one call, gathered so a GPU reads them all back in one transfer.

    ``require(ok, message)`` takes a 0-d boolean array (on the device or the host) and the
    message (or a function making it, evaluated only on failure); :meth:`verify` raises the
    ValueError of the first failed check.
    """

    def __init__(self, xp: Any):
        self.xp = xp
        self.flags: List[Any] = []
        self.messages: List[Any] = []

    def require(self, ok: Any, message: Any) -> None:
        self.flags.append(ok)
        self.messages.append(message)

    def verify(self) -> None:
        if not self.flags:
            return
        if self.xp is np:
            results = [bool(f) for f in self.flags]
        else:  # one device-to-host transfer for every check of the call
            results = self.xp.stack([self.xp.asarray(f) for f in self.flags]).get().tolist()
        for ok, message in zip(results, self.messages):
            if not ok:
                raise ValueError(message() if callable(message) else message)


def _xp(net: Any, on_host: bool) -> Any:
    return np if on_host else net.backend.xp


def _require_finite(pending: _Pending, arr: Any, argument: str) -> None:
    if CHECK_FINITE and arr.dtype.kind == "f":
        pending.require(pending.xp.isfinite(arr).all(),
                        f"{argument} must be finite; it holds NaN or inf (as {arr.dtype}: values beyond "
                        f"+-{np.finfo(arr.dtype).max:.3g} overflow)")


def _check_X_shape(net: Any, shape: Tuple[int, ...], argument: str) -> None:
    if len(shape) != 2 or shape[1] != net.sizes[0]:
        raise ValueError(f"{argument} must have shape (n, {net.sizes[0]}) (n samples by n_0 inputs); got shape {tuple(shape)}")
    if shape[0] == 0:
        raise ValueError(f"{argument} must have at least one row; got shape {tuple(shape)}")


def _X(net: Any, X: Any, argument: str, pending: _Pending, on_host: bool, keep_sparse: bool = False) -> Any:
    if sparse.is_sparse(X):
        return _sparse_X(net, X, argument, on_host, keep_sparse)
    X = _as_array(net, X, argument, net.dtype, on_host)
    _check_X_shape(net, X.shape, argument)
    _require_finite(pending, X, argument)
    return X


def _sparse_X(net: Any, X: Any, argument: str, on_host: bool, keep_sparse: bool) -> Any:
    """A SciPy sparse X as CSR of the network's dtype in host memory (``keep_sparse``), else
    densified as one batch (on the host when ``on_host``, else on the backend). Its stored
    values are scanned at once, on the host: they never were on the device."""
    X = sparse.to_csr(X, net.dtype, argument)
    _check_X_shape(net, X.shape, argument)
    if CHECK_FINITE and not sparse.finite(X):
        raise ValueError(f"{argument} must be finite; its stored values hold NaN or inf (as {X.dtype}: values beyond "
                         f"+-{np.finfo(X.dtype).max:.3g} overflow)")
    if keep_sparse:
        return X
    dense = sparse.densify(X)
    return dense if on_host else net.backend.asarray(dense)


def _Y(net: Any, Y: Any, n: int, argument: str, pending: _Pending, on_host: bool) -> Any:
    m = net.sizes[-1]
    xp = pending.xp
    Y = _as_array(net, Y, argument, None, on_host)  # dtype kept: labels stay integers
    if net.loss.accepts_labels and Y.ndim == 1:
        if Y.shape[0] != n:
            raise ValueError(f"{argument} has {Y.shape[0]} labels but X has {n} rows")
        lo, hi = Y.min(), Y.max()
        if Y.dtype.kind == "f":
            pending.require(xp.isfinite(Y).all() & (Y == xp.floor(Y)).all(),
                            f"{argument}: class labels must be whole numbers in [0, {m}); got fractional or non-finite values")
        pending.require((lo >= 0) & (hi < m), lambda: (
            f"{argument}: class labels must lie in [0, {m}) for {m} output nodes; got values in [{lo.item()}, {hi.item()}]"))
        with np.errstate(invalid="ignore"):
            return Y.astype(xp.int64, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        Y = Y.astype(net.dtype, copy=False)
    if Y.ndim == 1 and m == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2 or Y.shape[1] != m:
        hint = " or integer labels of shape (n,)" if net.loss.accepts_labels else ""
        raise ValueError(f"{argument} must have shape ({n}, {m}){hint}; got shape {tuple(Y.shape)}")
    if Y.shape[0] != n:
        raise ValueError(f"{argument} has {Y.shape[0]} rows but X has {n}")
    _require_finite(pending, Y, argument)
    if net.loss.target_range is not None:
        lo, hi = net.loss.target_range
        pending.require(((Y >= lo) & (Y <= hi)).all(), f"{argument}: {net.loss.name} targets must lie in [{lo}, {hi}]")
    return Y


def check_X(net: Any, X: Any, argument: str = "X", on_host: bool = False, keep_sparse: bool = False) -> Any:
    """X as a (n, n_0) array of the network's dtype on its backend (on the host if ``on_host``);
    a sparse X as CSR in host memory with ``keep_sparse``, else densified."""
    pending = _Pending(_xp(net, on_host))
    X = _X(net, X, argument, pending, on_host, keep_sparse)
    pending.verify()
    return X


def check_XY(net: Any, X: Any, Y: Any, names: Tuple[str, str] = ("X", "Y"), on_host: bool = False,
             keep_sparse: bool = False) -> Tuple[Any, Any]:
    """X and Y checked together: shapes at once, every value check in one host read-back (a
    sparse X as in :func:`check_X`)."""
    pending = _Pending(_xp(net, on_host))
    X = _X(net, X, names[0], pending, on_host, keep_sparse)
    Y = _Y(net, Y, X.shape[0], names[1], pending, on_host)
    pending.verify()
    return X, Y


def check_bool(value: Any, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be True or False; got {_describe(value)}")
    return bool(value)


def check_optimizer(optimizer: Any, net: Any = None) -> None:
    """A gpubp optimizer (anything with ``step(net)``) that, if it holds state, holds it for ``net``."""
    if isinstance(optimizer, type):
        raise TypeError(f"optimizer must be an optimizer instance such as gpubp.{optimizer.__name__}(...); got the "
                        f"class {optimizer.__name__} itself: call it to make one")
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer must be a gpubp optimizer such as gpubp.SGD(...) or gpubp.Adam(...); got {_describe(optimizer)}")
    check = getattr(optimizer, "check_network", None)
    if net is not None and callable(check):
        check(net)
