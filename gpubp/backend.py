"""Backend selection: which array module (NumPy or CuPy) runs the math.

``GPUBP_BACKEND`` = ``numpy`` | ``cupy`` | ``auto`` (default ``auto``) is read once, when
gpubp is imported; an unknown name is a ``ValueError`` naming the variable and the valid
names when the backend it would choose is first needed (so importing gpubp, or a command
line that reports errors in one line, still works; :func:`set_backend` with a valid name
overrides it). The backend itself is resolved lazily on first use, so importing gpubp
initialises nothing on a GPU.

``auto`` means CuPy when ``cupy.is_available()`` and NumPy otherwise, quietly. ``cupy``
asked for by name never falls back: it raises :class:`BackendUnavailableError` saying
whether CuPy is missing or no GPU is visible, and how to install the right wheel.

This is the only module that decides between NumPy and CuPy; CuPy itself is imported in
``gpubp._optional``.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, Optional, Union

import numpy as np

from . import _optional
from .errors import BackendUnavailableError
from .names import lookup

ENV_VAR = "GPUBP_BACKEND"

_INSTALL_HINT = (
    'install the CuPy wheel that matches your CUDA driver: pip install "gpubp[cuda12]" '
    '(CUDA 12.x) or pip install "gpubp[cuda13]" (CUDA 13.x); `nvidia-smi` shows the '
    "driver's CUDA version"
)


def check_backend_name(name: Any, argument: str = "backend") -> str:
    """Return ``name`` normalised to lower case, or raise a ValueError listing valid names."""
    lookup(BACKENDS, name, argument, "backend", fold_case=True)
    return name.strip().lower()


def is_device_array(a: Any) -> bool:
    """Whether ``a`` is a CuPy (GPU) array."""
    cp = _optional.cupy
    return cp is not None and isinstance(a, cp.ndarray)


@dataclass
class Backend:
    """One array backend: ``name`` ("numpy" or "cupy"), ``xp`` (the array module) and ``ops``.

    ``ops`` is the backend's :class:`gpubp.ops.Ops`, through which every hot operation of
    the forward and backward pass goes.
    """

    name: str
    xp: Any
    ops: Any = field(repr=False)
    device: str = "cpu"

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` as an array of this backend, moved (once) from the other backend if needed."""
        if self.name == "numpy":
            if is_device_array(a):
                a = a.get()
            return np.asarray(a, dtype=dtype)
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """A NumPy copy (or view, on the NumPy backend) of a backend array."""
        if self.name == "cupy" and isinstance(a, self.xp.ndarray):
            return a.get()
        return np.asarray(a)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on NumPy)."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()


def cupy_problem() -> Optional[str]:
    """Why the CuPy backend cannot run here, or ``None`` when it can."""
    cp = _optional.cupy
    if cp is None:
        return f"CuPy is not installed ({_optional.CUPY_IMPORT_ERROR}); {_INSTALL_HINT}"
    try:
        available = bool(cp.is_available())
    except Exception as exc:  # a driver/runtime mismatch can raise here
        return f"CuPy is installed but could not query the GPU ({type(exc).__name__}: {exc}); {_INSTALL_HINT}"
    if not available:
        return (
            "CuPy is installed but no CUDA GPU is visible (cupy.is_available() is False: no device, "
            "no driver, or CUDA_VISIBLE_DEVICES hides it); if a GPU is present, check `nvidia-smi` and "
            f"{_INSTALL_HINT}"
        )
    return None


def _make_numpy() -> Backend:
    from .ops.numpy_ops import NumpyOps

    return Backend("numpy", np, NumpyOps(), "cpu")


def _make_auto() -> Backend:
    return _make_cupy() if cupy_problem() is None else _make_numpy()


def _make_cupy() -> Backend:
    problem = cupy_problem()
    if problem is not None:
        raise BackendUnavailableError(f"backend 'cupy' was requested but cannot run: {problem}")
    cp = _optional.cupy
    from .ops.cupy_ops import CupyOps

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return Backend("cupy", cp, CupyOps(), f"cuda:{dev.id} ({gpu})")


#: The backend names and what makes each: ``auto`` is CuPy where it can run, NumPy otherwise.
BACKENDS: Dict[str, Callable[[], Backend]] = {"numpy": _make_numpy, "cupy": _make_cupy, "auto": _make_auto}
BACKEND_NAMES = tuple(BACKENDS)


def _make(name: str) -> Backend:
    return BACKENDS[name]()


def _from_environment() -> str:
    """GPUBP_BACKEND normalised, or a marker that holds its error until the backend is needed."""
    try:
        return check_backend_name(os.environ.get(ENV_VAR, "auto") or "auto", argument=ENV_VAR)
    except (TypeError, ValueError) as exc:
        global _environment_error
        _environment_error = exc
        return "invalid"


_environment_error: Optional[Exception] = None
_requested: str = _from_environment()
_current: Optional[Backend] = None


def set_backend(name: Union[str, Backend]) -> Backend:
    """Select the backend by name (``numpy``, ``cupy`` or ``auto``), or a :class:`Backend`
    already made (a network's ``net.backend``), and return it."""
    global _current, _requested
    if isinstance(name, Backend):
        _requested, _current = name.name, name
        return name
    key = check_backend_name(name)
    backend = _make(key)
    _requested, _current = key, backend
    return backend


def get_backend() -> Backend:
    """The active backend (resolved from ``GPUBP_BACKEND`` on first use)."""
    global _current
    if _current is None:
        if _requested == "invalid" and _environment_error is not None:
            raise ValueError(str(_environment_error))
        _current = _make(_requested)
    return _current


@contextlib.contextmanager
def use_backend(name: Union[str, Backend]) -> Iterator[Backend]:
    """Context manager: run the block on backend ``name`` (or a :class:`Backend`), then restore the previous one."""
    global _current, _requested
    saved = (_requested, _current)
    try:
        yield set_backend(name)
    finally:
        _requested, _current = saved
