"""Optional imports, gathered in one place.

Each name is the imported module, or ``None`` when it is not installed; the
``*_IMPORT_ERROR`` strings say why, so error messages can be precise. Importing this
module never touches a GPU: importing CuPy initialises nothing on a device.
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Optional, Tuple


def _try_import(name: str) -> Tuple[Optional[ModuleType], str]:
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # ImportError, or a broken install raising anything else
        return None, f"{type(exc).__name__}: {exc}"


cupy, CUPY_IMPORT_ERROR = _try_import("cupy")


@functools.lru_cache(maxsize=None)
def scipy_special() -> Optional[ModuleType]:
    """``scipy.special`` (imported on first call, it is slow to import), or ``None``.

    SciPy gives a fast exact erf for the NumPy path of ``gelu``; without it ``math.erf`` is
    mapped elementwise.
    """
    module, _ = _try_import("scipy.special")
    return module
