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
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    """``extern "C"`` entry points for every instantiation of ``source``, taking the grid (x, y) first."""
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
                    f'extern "C" void {_wrapper_name(spec.name, dtype, act)}(unsigned gx, unsigned gy, {params}) {{\n'
                    f"    gridDim.x = gx; gridDim.y = gy;\n"
                    f"    for (unsigned by = 0; by < gy; ++by)\n"
                    f"        for (unsigned bx = 0; bx < gx; ++bx) {{\n"
                    f"            blockIdx.x = bx; blockIdx.y = by; {spec.instantiation(dtype, act)}({names});\n"
                    f"        }}\n"
                    f"    blockIdx.x = blockIdx.y = 0; gridDim.x = gridDim.y = 1;\n"
                    f"}}\n"
                )
    return "".join(out)


def _build_library(source: str, text: str, build_dir: Path) -> Tuple[Path, Optional[subprocess.Popen], Path]:
    """(library path, the g++ process building it or None when built already, its temporary path)."""
    full = SHIM + text + "\n" + _wrappers(source)
    digest = hashlib.sha256((full + " ".join(CFLAGS)).encode()).hexdigest()[:16]
    lib = build_dir / f"{Path(source).stem}-{digest}.so"
    tmp = lib.with_name(f"{lib.stem}.{os.getpid()}.tmp.so")
    if lib.exists():
        return lib, None, tmp
    src = build_dir / f"{Path(source).stem}-{digest}.{os.getpid()}.cpp"
    src.write_text(full)
    cmd = [CXX, *CFLAGS, "-o", str(tmp), str(src)]
    return lib, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True), tmp


def _finish(source: str, lib: Path, proc: Optional[subprocess.Popen], tmp: Path) -> Path:
    if proc is not None:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{CXX} could not build {source} for the host:\n{err}")
        tmp.replace(lib)
    return lib


def _cargs(spec: ck.KernelSpec, dtype: str, grid: Tuple[int, int], converted: Sequence[Any]) -> List[Any]:
    cargs: List[Any] = [ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1])]
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
    return cargs


def _grid2(grid: Any) -> Tuple[int, int]:
    return (int(grid), 1) if isinstance(grid, (int, np.integer)) else (int(grid[0]), int(grid[1]) if len(grid) > 1 else 1)


class HostKernels:
    """Every kernel of ``kernels/`` as a host function, called directly with a chosen grid."""

    def __init__(self, build_dir: Path):
        self.build_dir = build_dir
        jobs = [(source, *_build_library(source, ck.program_source(source), build_dir)) for source in ck.SOURCES]
        self._libs = {source: ctypes.CDLL(str(_finish(source, lib, proc, tmp))) for source, lib, proc, tmp in jobs}

    def run(self, name: str, dtype: Any, *args: Any, act: Optional[str] = None, grid: Any = 1) -> None:
        """Run kernel ``name`` on NumPy arrays (checked and converted as on the GPU) with ``grid``
        blocks (``(x, y)`` for a two-dimensional grid)."""
        dtype = np.dtype(dtype).name
        spec = ck.KERNELS[name]
        converted, sizes = ck.prepare_args(spec, dtype, args, np)
        if any(v == 0 for v in sizes.values()):
            return
        fn = getattr(self._libs[spec.source], _wrapper_name(name, dtype, act if spec.per_activation else None))
        fn(*_cargs(spec, dtype, _grid2(grid), converted))
        # inputs that prepare_args copied to contiguous arrays are read-only; outputs are the
        # caller's own arrays (prepare_args refuses non-contiguous ones), so nothing to copy back


class HostCompiler:
    """The launcher's compiler for the host: g++ on the very program text NVRTC gets, plus the
    wrappers; ``compiles`` counts the calls (the libraries themselves are cached on disk by
    content, so a second dtype of one source reuses the first one's build)."""

    name = "g++ (host build)"

    def __init__(self, build_dir: Path):
        self.build_dir = build_dir
        self.compiles = 0
        self.calls: Dict[Tuple[str, str], int] = {}

    def version(self) -> str:
        return "host"

    def supported_archs(self) -> Sequence[int]:
        return (80, 90)

    def compile(self, text: str, name: str, arch: str, name_expressions: Sequence[str],
                options: Sequence[str]) -> ck.CompiledProgram:
        self.compiles += 1
        dtype = next(d for d, T in ck.CTYPES.items() if f"<{T}" in name_expressions[0])
        self.calls[(name, dtype)] = self.calls.get((name, dtype), 0) + 1
        lib = _finish(name, *_build_library(name, text, self.build_dir))
        lowered = {}
        for spec in ck.KERNELS.values():
            if spec.source != name:
                continue
            for act in ([a.name for a in ck.elementwise_activations()] if spec.per_activation else [None]):
                lowered[spec.instantiation(dtype, act)] = _wrapper_name(spec.name, dtype, act)
        assert set(name_expressions) == set(lowered), "the launcher asks for exactly the table's instantiations"
        return ck.CompiledProgram(str(lib).encode(), arch, lowered)


class HostDevice:
    """The launcher's device on the host: NumPy arrays, kernels from the host build (run with
    the launcher's grid, one thread per block), products by NumPy's matmul (cuBLAS has no
    host build). ``launches`` counts kernels and products. A device of 3 multiprocessors
    of 256 threads, so grids are small and every grid-stride loop wraps. Devices of one
    ``name`` share their loaded programs (the process-wide cache tells devices apart by it)."""

    xp = np

    def __init__(self, multiprocessors: int = 3, threads_per_multiprocessor: int = 256, name: str = "host"):
        from gpubp.ops.cuda_launcher import DeviceProperties

        self.name = name
        self._properties = DeviceProperties(90, multiprocessors, threads_per_multiprocessor)
        self.launches = 0
        self.grids: List[Tuple[str, Tuple[int, ...]]] = []

    def current(self) -> int:
        return 0

    def key(self, device: int) -> Any:
        return ("host", self.name, device)

    def properties(self, device: int) -> Any:
        return self._properties

    def load(self, program: ck.CompiledProgram, device: int) -> Any:
        kernels = {}
        for expr, lowered in program.lowered.items():
            name, targs = expr.split("<", 1)
            ctype = targs.split(",")[0].rstrip(">").strip()
            kernels[lowered] = (ck.KERNELS[name], next(d for d, T in ck.CTYPES.items() if T == ctype))
        return ctypes.CDLL(program.binary.decode()), kernels

    def function(self, module: Any, lowered: str) -> Any:
        lib, kernels = module
        spec, dtype = kernels[lowered]
        return getattr(lib, lowered), spec, dtype

    def launch(self, function: Any, grid: Tuple[int, ...], block: Tuple[int, ...], args: Tuple[Any, ...]) -> None:
        fn, spec, dtype = function
        self.launches += 1
        self.grids.append((spec.name, grid))
        fn(*_cargs(spec, dtype, _grid2(grid), args))

    def gemm(self, transa: str, transb: str, a: Any, b: Any, out: Any, alpha: float, beta: float) -> None:
        self.launches += 1
        prod = np.matmul(a if transa == "N" else a.T, b if transb == "N" else b.T)
        if beta == 0.0:
            np.multiply(prod, alpha, out=out)
        else:
            out *= beta
            out += alpha * prod


def build(cache_root: Optional[Path] = None) -> HostKernels:
    """Build (or reuse from ``cache_root``) the host libraries of every source."""
    return HostKernels(build_dir(cache_root))


def build_dir(cache_root: Optional[Path] = None) -> Path:
    root = cache_root or Path(tempfile.gettempdir()) / "gpubp-host-kernels"
    root.mkdir(parents=True, exist_ok=True)
    return root


def host_launcher(device: Optional[HostDevice] = None, compiler: Optional[HostCompiler] = None) -> Any:
    """gpubp's real launcher (:class:`gpubp.ops.cuda_launcher.CudaKernels`) on the host device."""
    from gpubp.ops.cuda_launcher import CudaKernels

    return CudaKernels(device or HostDevice(), compiler or HostCompiler(build_dir()), disk=None)


def host_cupy_ops(kernels: Optional[HostKernels] = None, launcher: Any = None) -> Any:
    """:class:`gpubp.ops.cupy_ops.CupyOps` on NumPy arrays, launching the host build of the
    kernels through gpubp's own launcher (argument checks, launch shapes, the process-wide
    program cache): it checks that CupyOps picks the right kernel and passes the right
    arguments. Only the cuBLAS products are NumPy's matmul. (``kernels``: a prebuilt
    :class:`HostKernels`, whose build the launcher then reuses.)"""
    from gpubp.ops.cupy_ops import CupyOps

    class HostCupyOps(CupyOps):
        name = "cupy-kernels-on-host"

    return HostCupyOps(launcher if launcher is not None else host_launcher())


def host_backend(kernels: Optional[HostKernels] = None, launcher: Any = None) -> Any:
    """A NumPy :class:`gpubp.backend.Backend` whose ops are :func:`host_cupy_ops`."""
    from gpubp.backend import Backend

    return Backend("numpy", np, host_cupy_ops(kernels, launcher), "cpu (CUDA kernels built for the host)")


# ---- comparing a kernel with the NumPy path ---------------------------------------------
def z_grid(dtype: str) -> np.ndarray:
    """Zeros, denormals, the smallest normal, moderate and huge |z|, +-inf, NaN, and a fine
    sweep of [-12, 12]."""
    f = np.finfo(dtype)
    tiny_denormal = 1e-40 if dtype == "float32" else 1e-310
    special = [0.0, float(f.smallest_subnormal), tiny_denormal, float(f.tiny), 1e-7, 1e-3, 0.5, 1, 2, 5, 10, 20,
               30, 50, 88, 89, 100, 700, 710, 1e3, 1e4, 1e30, float(f.max), np.inf]
    values = special + [-v for v in special] + [np.nan]
    return np.concatenate([np.array(values, dtype=dtype), np.linspace(-12, 12, 481, dtype=dtype)])

def as_matrix(v: np.ndarray, cols: int = 7) -> np.ndarray:
    """``v`` padded with zeros to a (rows, cols) matrix."""
    rows = -(-v.size // cols)
    out = np.zeros(rows * cols, dtype=v.dtype)
    out[: v.size] = v
    return out.reshape(rows, cols)

def assert_close(got, want, dtype: str, scale=None, rtol_eps: float = 16, atol_eps: float = 4, what: str = ""):
    """NaN exactly where the reference has NaN, equal infinities, and elsewhere
    |got - want| <= rtol |want| + atol, with atol = atol_eps eps * scale (per element).

    ``scale`` is the magnitude of the terms the result is made of (default: none, so results
    of denormal size are compared at denormal precision); it absorbs the rounding that
    cancellation near a function's zeros leaves in both implementations alike.
    """
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    eps = float(np.finfo(dtype).eps)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), (f"{what}: NaN at {np.argwhere(nan_g != nan_w)[:5].tolist()} "
                                          f"(got {got[nan_g != nan_w][:5]}, want {want[nan_g != nan_w][:5]})")
    inf = np.isinf(got) | np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), f"{what}: infinities differ: {got[inf]} vs {want[inf]}"
    fin = ~(nan_w | inf)
    scale = np.zeros_like(want) if scale is None else np.broadcast_to(np.asarray(scale, dtype=float), want.shape)
    tol = rtol_eps * eps * np.abs(want[fin].astype(float)) + atol_eps * eps * scale[fin]
    err = np.abs(got[fin].astype(float) - want[fin].astype(float))
    bad = err > tol
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} values differ beyond tolerance, e.g. got {got[fin][bad][:4]} want {want[fin][bad][:4]}"
    )

def z_scale(Z: np.ndarray) -> np.ndarray:
    """The size of the terms of g(z) and g'(z) where they can cancel: min(|z|, 1) for
    |z| <= 16 (the zeros of gelu', silu', ... lie there), and 0 beyond, where every table
    entry is dominated by one term and is compared to full relative precision (so a
    sigmoid that underflows to 0 instead of a denormal is caught)."""
    a = np.abs(np.nan_to_num(Z.astype(float), nan=0.0, posinf=np.inf, neginf=np.inf))
    return np.where(a <= 16.0, np.minimum(a, 1.0), 0.0)

def logits(dtype: str, regime: str, rows: int = 6, cols: int = 5) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(regime)) % 2**32)
    big = {"float32": 1e30, "float64": 1e300}[dtype]
    Z = rng.normal(0.0, 3.0, (rows, cols))
    if regime == "large":
        Z = Z * 300.0
        Z[1] = [big, -big, 0.0, 1.0, big][:cols]
    elif regime == "tiny":
        Z = Z * float(np.finfo(dtype).smallest_subnormal) * 4
    elif regime == "nan":
        Z[2, 1] = np.nan
    return Z.astype(dtype)

REGIMES = ["normal", "large", "tiny", "nan"]


def run_head(kernels, loss_name: str, act_name: str, Z, A, Y, grid: int = 1):
    """Delta and C_0 per row from the head kernel gpubp's CuPy ops launch for this pair."""
    dtype = Z.dtype.name
    rows, cols = Z.shape
    Delta, C0 = np.full_like(Z, 7.0), np.full(rows, 7.0, dtype=Z.dtype)
    if loss_name in ("sse", "mse"):
        scale, div = (2.0, 1.0) if loss_name == "sse" else (2.0 / cols, float(cols))
        if act_name == "softmax":
            kernels.run("head_squared_softmax", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div, grid=grid)
        else:
            kernels.run("head_squared", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div, act=act_name, grid=grid)
    elif loss_name == "cross_entropy":
        if Y.ndim == 1:
            kernels.run("head_xent_labels", dtype, Z, A, Y, Delta, C0, rows, cols, grid=grid)
        else:
            kernels.run("head_xent_dense", dtype, Z, A, Y, Delta, C0, rows, cols, grid=grid)
    else:
        kernels.run("head_bce", dtype, Z, A, Y, Delta, C0, rows, cols, grid=grid)
    return Delta, C0
