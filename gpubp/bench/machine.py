"""What this machine has, for the benchmarks: CPU, BLAS, threads, PyTorch, the GPU, bandwidths.

:class:`Unavailable` is how a benchmark says it cannot run here (a backend missing, no GPU);
:func:`require_torch` and :func:`require_cupy` raise it with the reason.
"""
from __future__ import annotations

import math
import os
import platform
import time
from typing import Any, Dict

import numpy as np

from .. import _optional


class Unavailable(Exception):
    """This benchmark cannot run here (backend missing, no GPU, size not allowed); says why."""


def require_torch() -> Any:
    """The ``torch`` module, or :class:`Unavailable` (it is a point of comparison only)."""
    try:
        import torch
    except ImportError:
        raise Unavailable("PyTorch is not installed (it is only a point of comparison, never a dependency)") from None
    return torch


def require_cupy() -> Any:
    """The ``cupy`` module when it can run here, or :class:`Unavailable` saying why not."""
    from ..backend import cupy_problem

    problem = cupy_problem()
    if problem is not None:
        raise Unavailable(f"no GPU for the CuPy column: {problem}")
    return _optional.cupy


_COPY_BANDWIDTH: Dict[int, float] = {}


def host_bandwidth(nbytes: int) -> float:
    """The bandwidth in bytes/s that a plain copy of an ``nbytes`` array reaches here (best of 5).

    The attainable memory (or cache, for arrays that fit in it) bandwidth for that size: what
    an elementwise kernel over arrays of that size is compared to on the CPU.
    """
    if nbytes not in _COPY_BANDWIDTH:
        src = np.ones(max(nbytes // 4, 1), np.float32)
        dst = np.empty_like(src)
        best = math.inf
        for _ in range(5):
            t = time.perf_counter()
            np.copyto(dst, src)
            best = min(best, time.perf_counter() - t)
        _COPY_BANDWIDTH[nbytes] = 2 * src.nbytes / best
    return _COPY_BANDWIDTH[nbytes]


def device_bandwidth() -> float:
    """The GPU's peak memory bandwidth in bytes/s, from its memory clock and bus width."""
    cp = require_cupy()
    attrs = cp.cuda.Device().attributes
    return 2.0 * attrs["MemoryClockRate"] * 1e3 * attrs["GlobalMemoryBusWidth"] / 8.0


def machine_info() -> Dict[str, Any]:
    """CPU model, core count, thread counts and the BLAS NumPy uses (and the GPU, if any)."""
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
    }
    from ..ops import _blas

    info["gpubp_blas"] = _blas.describe()
    try:
        import threadpoolctl

        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "threading_layer")}
                        for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = "unknown (install threadpoolctl to report it)"
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    from ..backend import cupy_problem

    if cupy_problem() is None:
        cp = _optional.cupy
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cupy"] = cp.__version__
    else:
        info["gpu"] = None
    return info


def cpu_model() -> str:
    """The CPU's model name (from the kernel's cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def set_threads(threads: int) -> Any:
    """Use ``threads`` threads in NumPy's BLAS and in PyTorch; returns a handle that keeps the limit.

    The BLAS limit needs threadpoolctl; without it the handle is ``None`` and the BLAS keeps
    its own setting (``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` set before starting).
    """
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
