"""Checks at the public boundary: a clear ``ValueError``/``TypeError`` naming the argument,
what was expected and what came, before anything is changed.

Checks run once per call on shapes and dtypes; the scan for NaN/inf is one vectorised
reduction per array (switch it off with ``gpubp.validation.CHECK_FINITE = False`` or the
``check_finite`` context manager when data are known to be clean).
"""
from __future__ import annotations

import contextlib
import numbers
from typing import Any, Iterator, List, Sequence, Tuple, Union

import numpy as np

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


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(value).__name__} {value!r}"[:200]


def check_int(value: Any, argument: str, minimum: int) -> int:
    """An integer >= minimum (bools and floats such as 2.5 rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be an integer >= {minimum}; got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}; got {value}")
    return int(value)


def check_positive_float(value: Any, argument: str, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a real number; got {_describe(value)}")
    v = float(value)
    bound = ">= 0" if allow_zero else "> 0"
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{argument} must be finite and {bound}; got {value!r}")
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


def check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64'; got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dt.name!r}")
    return dt


def check_seed(seed: Any) -> Any:
    if seed is None:
        return None
    return check_int(seed, "seed", 0)


def _as_backend_array(net: Any, value: Any, argument: str, dtype: Any) -> Any:
    """``value`` on the network's backend (moved once if it came from the other backend)."""
    backend = net.backend
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{argument} must be a numeric array; got {_describe(value)}")
    raw_dtype = getattr(value, "dtype", None)
    if raw_dtype is None:
        try:
            raw_dtype = np.asarray(value).dtype
        except Exception:
            raise TypeError(f"{argument} must be a numeric array; got {_describe(value)}") from None
    raw_dtype = np.dtype(raw_dtype)
    if raw_dtype.kind not in "biuf":
        raise TypeError(f"{argument} must hold real numbers; got dtype {raw_dtype} ({_describe(value)})")
    return backend.asarray(value, dtype=dtype)


def _check_finite(net: Any, arr: Any, argument: str) -> None:
    if CHECK_FINITE and arr.dtype.kind == "f" and not bool(net.backend.xp.isfinite(arr).all()):
        raise ValueError(f"{argument} must be finite; it holds NaN or inf")


def check_X(net: Any, X: Any, argument: str = "X") -> Any:
    """X as a (n, n_0) array of the network's dtype on its backend."""
    X = _as_backend_array(net, X, argument, net.dtype)
    if X.ndim != 2 or X.shape[1] != net.sizes[0]:
        raise ValueError(f"{argument} must have shape (n, {net.sizes[0]}) (n samples by n_0 inputs); got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{argument} must have at least one row; got shape {tuple(X.shape)}")
    _check_finite(net, X, argument)
    return X


def check_Y(net: Any, Y: Any, n: int, argument: str = "Y") -> Any:
    """Targets in the form the loss head reads: float (n, n_L) rows, or int64 labels (n,)."""
    m = net.sizes[-1]
    raw = np.dtype(getattr(Y, "dtype", None) or np.asarray(Y).dtype) if Y is not None and not isinstance(Y, (str, bytes)) else None
    labels = net.loss.accepts_labels and raw is not None and raw.kind in "biuf" and np.ndim(Y) == 1
    if labels:
        Yl = _as_backend_array(net, Y, argument, None)
        if Yl.shape[0] != n:
            raise ValueError(f"{argument} has {Yl.shape[0]} labels but X has {n} rows")
        xp = net.backend.xp
        if Yl.dtype.kind == "f":
            if not bool(xp.isfinite(Yl).all()) or not bool((Yl == xp.floor(Yl)).all()):
                raise ValueError(f"{argument}: class labels must be whole numbers in [0, {m}); got fractional or non-finite values")
        if Yl.size and (int(Yl.min()) < 0 or int(Yl.max()) >= m):
            raise ValueError(
                f"{argument}: class labels must lie in [0, {m}) for {m} output nodes; got values in [{int(Yl.min())}, {int(Yl.max())}]"
            )
        return Yl.astype(xp.int64, copy=False)
    Yf = _as_backend_array(net, Y, argument, net.dtype)
    if Yf.ndim == 1 and m == 1:
        Yf = Yf.reshape(-1, 1)
    if Yf.ndim != 2 or Yf.shape[1] != m:
        hint = " or integer labels of shape (n,)" if net.loss.accepts_labels else ""
        raise ValueError(f"{argument} must have shape ({n}, {m}){hint}; got shape {tuple(Yf.shape)}")
    if Yf.shape[0] != n:
        raise ValueError(f"{argument} has {Yf.shape[0]} rows but X has {n}")
    _check_finite(net, Yf, argument)
    if net.loss.name == "binary_cross_entropy" and (bool((Yf < 0).any()) or bool((Yf > 1).any())):
        raise ValueError(f"{argument}: binary_cross_entropy targets must lie in [0, 1]")
    return Yf


def check_XY(net: Any, X: Any, Y: Any) -> Tuple[Any, Any]:
    X = check_X(net, X)
    return X, check_Y(net, Y, X.shape[0])


def check_optimizer(optimizer: Any) -> None:
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer must be a gpubp optimizer such as gpubp.SGD(...) or gpubp.Adam(...); got {_describe(optimizer)}")
