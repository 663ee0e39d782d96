"""The kernels of ``kernels/`` built for the host CPU and called through ctypes.

The very text NVRTC compiles (:func:`gpubp.ops.cuda_kernels.program_source`: the common
header, the functors generated from the activation table, the ``.cu`` file) is compiled by
g++ after a small shim that defines the CUDA keywords away and runs one thread per block:
``__syncthreads`` is a no-op, ``__shared__`` memory is a static array, and the grid's
blocks run one after the other. With one thread per block every grid-stride and row loop
covers the whole array, so the kernel's own arithmetic runs on the CPU and can be compared
with the NumPy path; running the grid as several blocks checks the grid-stride indexing.

Each instantiation gpubp launches gets an ``extern "C"`` wrapper generated from
:data:`gpubp.ops.cuda_kernels.KERNELS`, so g++ also checks that the table's parameter lists
match the kernels' signatures.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from gpubp.ops import cuda_kernels as ck

CXX = os.environ.get("CXX", "g++")

SHIM = r"""
// Host shim: CUDA keywords defined away, one thread per block, blocks run in sequence.
#include <cmath>
#include <cstring>
using std::exp; using std::exp2; using std::expm1; using std::log; using std::log1p; using std::log2;
using std::sqrt; using std::cbrt; using std::pow; using std::sin; using std::cos; using std::tan;
using std::sinh; using std::cosh; using std::tanh; using std::asinh; using std::acosh; using std::atanh;
using std::erf; using std::erfc; using std::fabs; using std::floor; using std::ceil; using std::copysign;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
struct gpubp_host_dim3 { unsigned x, y, z; };
static gpubp_host_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
static gpubp_host_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
static inline void __syncthreads() {}
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
"""

CFLAGS = ["-std=c++17", "-O2", "-shared", "-fPIC", "-fno-fast-math", "-ffp-contract=off", "-w"]

_CTYPES = {"float32": ctypes.c_float, "float64": ctypes.c_double}


def compiler_missing() -> Optional[str]:
    """Why the host build cannot run here, or None."""
    if shutil.which(CXX) is None:
        return f"no C++ compiler ({CXX}) on PATH to build the kernels for the host"
    return None


def _wrapper_name(name: str, dtype: str, act: Optional[str]) -> str:
    return f"gpubp_host_{name}_{dtype}" + (f"_{act}" if act else "")


def _wrappers(source: str) -> str:
    """``extern "C"`` entry points for every instantiation of ``source``, taking the grid size first."""
    out = []
    for spec in ck.KERNELS.values():
        if spec.source != source:
            continue
        for dtype, T in ck.CTYPES.items():
            acts = [a.name for a in ck.elementwise_activations()] if spec.per_activation else [None]
            for act in acts:
                params = ", ".join(f"{p.ctype(T)} {p.name}" for p in spec.params)
                names = ", ".join(p.name for p in spec.params)
                out.append(
                    f'extern "C" void {_wrapper_name(spec.name, dtype, act)}(unsigned grid, {params}) {{\n'
                    f"    gridDim.x = grid;\n"
                    f"    for (unsigned blk = 0; blk < grid; ++blk) {{ blockIdx.x = blk; {spec.instantiation(dtype, act)}({names}); }}\n"
                    f"    blockIdx.x = 0; gridDim.x = 1;\n"
                    f"}}\n"
                )
    return "".join(out)


def host_source(source: str) -> str:
    """The shim, the exact NVRTC program text of ``source``, and the wrappers."""
    return SHIM + ck.program_source(source) + "\n" + _wrappers(source)


class HostKernels:
    """Every kernel of ``kernels/`` as a host function; ``run`` mirrors ``CudaKernels.launch``."""

    def __init__(self, build_dir: Path):
        libs: Dict[str, Path] = {}
        jobs = []
        for source in ck.SOURCES:  # built in parallel, each only once per content
            text = host_source(source)
            digest = hashlib.sha256((text + " ".join(CFLAGS)).encode()).hexdigest()[:16]
            lib = libs[source] = build_dir / f"{Path(source).stem}-{digest}.so"
            if not lib.exists():
                src = build_dir / f"{Path(source).stem}-{digest}.{os.getpid()}.cpp"
                src.write_text(text)
                tmp = lib.with_name(f"{lib.stem}.{os.getpid()}.tmp.so")
                cmd = [CXX, *CFLAGS, "-o", str(tmp), str(src)]
                jobs.append((source, tmp, lib, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)))
        for source, tmp, lib, proc in jobs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{CXX} could not build {source} for the host:\n{err}")
            tmp.replace(lib)
        self._libs = {source: ctypes.CDLL(str(path)) for source, path in libs.items()}

    def run(self, name: str, dtype: Any, *args: Any, act: Optional[str] = None, grid: int = 1) -> None:
        """Run kernel ``name`` on NumPy arrays (checked and converted as on the GPU) with ``grid`` blocks."""
        dtype = np.dtype(dtype).name
        spec = ck.KERNELS[name]
        converted, sizes = ck.prepare_args(spec, dtype, args, np)
        if any(v == 0 for v in sizes.values()):
            return
        fn = getattr(self._libs[spec.source], _wrapper_name(name, dtype, act if spec.per_activation else None))
        cargs = [ctypes.c_uint(grid)]
        for p, a in zip(spec.params, converted):
            if p.is_array:
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            elif p.kind == "index":
                cargs.append(ctypes.c_longlong(int(a)))
            elif p.kind == "scalar":
                cargs.append(_CTYPES[dtype](float(a)))
            elif p.kind == "word":
                cargs.append(ctypes.c_ulonglong(int(a)))
            else:
                cargs.append(ctypes.c_int(int(a)))
        fn(*cargs)
        # inputs that prepare_args copied to contiguous arrays are read-only; outputs are the
        # caller's own arrays (prepare_args refuses non-contiguous ones), so nothing to copy back


    def launch(self, name: str, dtype: Any, *args: Any, act: Optional[str] = None) -> None:
        """``CudaKernels.launch``'s signature, run as three blocks (so grid strides are exercised)."""
        self.run(name, dtype, *args, act=act, grid=3)


def build(cache_root: Optional[Path] = None) -> HostKernels:
    """Build (or reuse from ``cache_root``) the host libraries of every source."""
    root = cache_root or Path(tempfile.gettempdir()) / "gpubp-host-kernels"
    root.mkdir(parents=True, exist_ok=True)
    return HostKernels(root)


def host_cupy_ops(kernels: HostKernels) -> Any:
    """:class:`gpubp.ops.cupy_ops.CupyOps` on NumPy arrays, launching the host build of the
    kernels: it checks that CupyOps picks the right kernel and passes the right arguments.
    Only the cuBLAS GEMM of ``grad_weights`` (which has no host build) is the reference matmul."""
    from gpubp.ops.base import Ops
    from gpubp.ops.cupy_ops import CupyOps

    class HostCupyOps(CupyOps):
        name = "cupy-kernels-on-host"

        def __init__(self) -> None:
            super().__init__()
            self.xp = np  # NumPy arrays, and the host build in place of the compiled GPU kernels
            self.kernels = kernels

        grad_weights = Ops.grad_weights

    return HostCupyOps()


def host_backend(kernels: HostKernels) -> Any:
    """A NumPy :class:`gpubp.backend.Backend` whose ops are :func:`host_cupy_ops`."""
    from gpubp.backend import Backend

    return Backend("numpy", np, host_cupy_ops(kernels), "cpu (CUDA kernels built for the host)")
