"""Device memory policy: whether a data set lives on the device or streams from the host,
and how running out of memory is reported.

``fit`` and ``evaluate`` move a NumPy data set to the GPU once when it fits in
``DATA_FRACTION`` of the free device memory (the rest is left for the parameters, the
optimizer state and the per-batch workspaces); otherwise the data stay in host memory and
each mini-batch is gathered on the host and copied into a reused device buffer. On NumPy
everything is host memory and nothing streams.

CuPy signals exhaustion with ``cupy.cuda.memory.OutOfMemoryError`` (a ``MemoryError``), or,
from inside cuBLAS or the CUDA runtime, with an error whose text names the allocation
failure; :func:`is_out_of_memory` recognises all three and :func:`out_of_memory_error`
turns them into :class:`gpubp.OutOfMemoryError` with a message that suggests a smaller batch.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

from .errors import OutOfMemoryError

#: Share of the free device memory a data set may occupy before fit streams it from the host.
DATA_FRACTION = 0.5

_OOM_MARKERS = ("cudaErrorMemoryAllocation", "CUBLAS_STATUS_ALLOC_FAILED", "CUDA_ERROR_OUT_OF_MEMORY",
                "out of memory")
# NumPy's (and CuPy's) refusals of an array larger than any address space: no allocation can succeed
_TOO_BIG_MARKERS = ("array is too big", "Maximum allowed dimension exceeded", "Maximum allowed size exceeded")


def data_fits(nbytes: int, free_bytes: int, fraction: float = DATA_FRACTION) -> bool:
    """Whether ``nbytes`` of data fit in ``fraction`` of ``free_bytes`` of device memory."""
    return int(nbytes) <= fraction * int(free_bytes)


def device_free_bytes(backend: Any) -> Optional[int]:
    """Free memory of the backend's device in bytes (driver-free plus CuPy's pooled free blocks),
    or ``None`` for the NumPy backend (host memory: the data set is already there)."""
    if backend.name != "cupy":
        return None
    cp = backend.xp
    free, _total = cp.cuda.runtime.memGetInfo()
    return int(free) + int(cp.get_default_memory_pool().free_bytes())


def should_stream(backend: Any, nbytes: int) -> bool:
    """True when a host data set of ``nbytes`` should stay on the host and stream to the device."""
    free = device_free_bytes(backend)
    return free is not None and not data_fits(nbytes, free)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that an allocation failed (host or device)."""
    if isinstance(exc, OutOfMemoryError):
        return False  # already translated
    if isinstance(exc, MemoryError):  # numpy's and cupy.cuda.memory.OutOfMemoryError
        return True
    if isinstance(exc, ValueError):
        return any(m in str(exc) for m in _TOO_BIG_MARKERS)
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MARKERS)


def batch_hint(batch_size: int, argument: str = "batch_size") -> str:
    """The advice of an out-of-memory message: a smaller batch."""
    return f"try a smaller {argument} (got {batch_size}, e.g. {max(1, int(batch_size) // 2)})"


def out_of_memory_error(exc: BaseException, backend: Any, what: str, hint: str = "",
                        epoch: Optional[int] = None, batch: Optional[int] = None) -> OutOfMemoryError:
    """The :class:`gpubp.OutOfMemoryError` that replaces ``exc``, saying where and what to shrink."""
    where = "GPU" if backend.name == "cupy" else "host"
    text = f"out of {where} memory {what}"
    if epoch is not None:
        text += f" (epoch {epoch}, batch {batch})"
    if hint:
        text += f"; {hint}"
    return OutOfMemoryError(f"{text} [{type(exc).__name__}: {exc}]", epoch=epoch, batch=batch)


@contextlib.contextmanager
def translated_out_of_memory(backend: Any, what: str, hint: str = "") -> Iterator[None]:
    """Run the block; an allocation failure inside becomes :class:`gpubp.OutOfMemoryError`."""
    try:
        yield
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory_error(exc, backend, what, hint) from exc
        raise
