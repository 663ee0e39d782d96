"""A stand-in CUDA device and compiler: the CuPy path's host side, run without a GPU.

:class:`StandInDevice` has the methods of :class:`gpubp.ops.cuda_launcher.CupyDevice`, with
NumPy arrays standing for device memory. Every kernel launch and matrix product is checked
as the driver and cuBLAS would need it (grid and block within CUDA's limits, one argument
per kernel parameter with the C type the kernel takes, arrays C-contiguous and long enough,
conforming product shapes), counted, and then skipped: nothing is computed. What remains
is exactly the Python gpubp runs per step on a GPU, which is what
:mod:`gpubp.bench.launch_overhead` measures. :class:`StandInCompiler` gives each name expression
a name without compiling anything.

Build a CuPy-path backend on it with :func:`standin_backend`.
"""
from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, Hashable, Optional, Sequence, Tuple

import numpy as np

from .cuda_kernels import KERNELS, CompiledProgram, KernelSpec
from .cuda_launcher import CudaKernels, DeviceProperties, check_gemm

MAX_THREADS_PER_BLOCK = 1024
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_BLOCK_DIMS = (1024, 1024, 64)


class StandInCompiler:
    """Names every instantiation without compiling; ``compiles`` counts the calls."""

    name = "stand-in"

    def __init__(self, archs: Sequence[int] = (75, 80, 86, 89, 90)):
        self.archs = tuple(archs)
        self.compiles = 0
        self.calls: Counter = Counter()  # (program name, first name expression) -> calls

    def version(self) -> str:
        return "1"

    def supported_archs(self) -> Sequence[int]:
        return self.archs

    def compile(self, text: str, name: str, arch: str, name_expressions: Sequence[str],
                options: Sequence[str]) -> CompiledProgram:
        self.compiles += 1
        self.calls[(name, name_expressions[0] if name_expressions else "")] += 1
        digest = hashlib.sha256("\0".join([text, *name_expressions, *options, arch]).encode()).digest()
        lowered = {expr: f"_gpubp_standin_{i}_{digest[:4].hex()}" for i, expr in enumerate(name_expressions)}
        return CompiledProgram(b"stand-in program " + digest, arch, lowered)


@dataclass(frozen=True)
class StandInFunction:
    """A loaded kernel: its table entry and dtype."""

    spec: KernelSpec
    dtype: np.dtype
    lowered: str


_KIND_TYPES = {"index": np.int64, "flag": np.int32, "word": np.uint64}


class StandInDevice:
    """A device that checks, counts and skips every launch and product (see the module doc).

    ``launches`` counts kernel launches and products together, ``kernels`` per kernel name
    (products as ``gemm``); ``seconds`` is the time spent in the stand-in's own checks, so
    a measurement can leave it out.
    """

    xp = np

    def __init__(self, name: str = "stand-in", compute_capability: int = 90, multiprocessors: int = 132,
                 threads_per_multiprocessor: int = 2048):
        self.name = name
        self._properties = DeviceProperties(compute_capability, multiprocessors, threads_per_multiprocessor)
        self.launches = 0
        self.kernels: Counter = Counter()
        self.seconds = 0.0
        self.loaded: Dict[str, CompiledProgram] = {}

    def current(self) -> int:
        return 0

    def key(self, device: int) -> Hashable:
        return ("stand-in", self.name, device)

    def properties(self, device: int) -> DeviceProperties:
        return self._properties

    def load(self, program: CompiledProgram, device: int) -> Dict[str, str]:
        names = {lowered: expr for expr, lowered in program.lowered.items()}
        for lowered in names:
            self.loaded[lowered] = program
        return names

    def function(self, module: Dict[str, str], lowered: str) -> StandInFunction:
        expr = module[lowered]  # KeyError: a name the program does not define
        name, targs = expr.split("<", 1)
        ctype = targs.split(",")[0].rstrip(">").strip()
        dtype = np.dtype({"float": np.float32, "double": np.float64}[ctype])
        return StandInFunction(KERNELS[name], dtype, lowered)

    def reset(self) -> None:
        self.launches = 0
        self.kernels.clear()
        self.seconds = 0.0

    def launch(self, function: StandInFunction, grid: Tuple[int, ...], block: Tuple[int, ...],
               args: Tuple[Any, ...]) -> None:
        t0 = time.perf_counter()
        check_launch(function, grid, block, args)
        self.launches += 1
        self.kernels[function.spec.name] += 1
        self.seconds += time.perf_counter() - t0

    def gemm(self, transa: str, transb: str, a: Any, b: Any, out: Any, alpha: float, beta: float) -> None:
        t0 = time.perf_counter()
        check_gemm(transa, transb, a, b, out, np)
        if not (a.flags.c_contiguous or a.flags.f_contiguous) or not (b.flags.c_contiguous or b.flags.f_contiguous):
            raise ValueError("gemm: cuBLAS reads a and b as dense C- or F-ordered matrices")
        if type(alpha) is not float or type(beta) is not float:
            raise TypeError(f"gemm: alpha and beta must be floats; got {type(alpha).__name__}, {type(beta).__name__}")
        self.launches += 1
        self.kernels["gemm"] += 1
        self.seconds += time.perf_counter() - t0


def check_launch(function: StandInFunction, grid: Tuple[int, ...], block: Tuple[int, ...],
                 args: Tuple[Any, ...]) -> None:
    """What the driver needs of a launch of ``function``: a valid grid and block, and one
    argument of the kernel's C type per parameter (arrays C-contiguous and long enough)."""
    spec, T = function.spec, function.dtype
    for what, dims, limits in (("grid", grid, MAX_GRID), ("block", block, MAX_BLOCK_DIMS)):
        if not isinstance(dims, tuple) or not 1 <= len(dims) <= 3 or \
                any(type(d) is not int or not 1 <= d <= lim for d, lim in zip(dims, limits)):
            raise ValueError(f"launch of {spec.name}: {what} {dims!r} is not 1 to 3 positive sizes within {limits}")
    if math.prod(block) > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"launch of {spec.name}: block {block} has more than {MAX_THREADS_PER_BLOCK} threads")
    if not isinstance(args, tuple) or len(args) != len(spec.params):
        raise TypeError(f"launch of {spec.name}: {len(spec.params)} arguments expected; got {len(args)}")
    sizes = {}
    for p, a in zip(spec.params, args):
        if p.kind in _KIND_TYPES:
            if type(a) is not _KIND_TYPES[p.kind]:
                raise TypeError(f"launch of {spec.name}: {p.name} must be {_KIND_TYPES[p.kind].__name__}; got "
                                f"{type(a).__name__}")
            sizes[p.name] = int(a)
        elif p.kind == "scalar" and type(a) is not T.type:
            raise TypeError(f"launch of {spec.name}: {p.name} must be {T.type.__name__}; got {type(a).__name__}")
    for p, a in zip(spec.params, args):
        if not p.is_array:
            continue
        want = np.dtype(np.int64) if p.kind == "labels" else T
        if type(a) is not np.ndarray or a.dtype != want or not a.flags.c_contiguous:
            raise TypeError(f"launch of {spec.name}: {p.name} must be a C-contiguous {want} device array; got "
                            f"{type(a).__name__} {getattr(a, 'dtype', '')}")
        need = p.length(sizes)
        if a.size < need:
            raise ValueError(f"launch of {spec.name}: {p.name} holds {a.size} elements; the kernel reads {need}")
        if p.kind == "out" and not a.flags.writeable:
            raise ValueError(f"launch of {spec.name}: output {p.name} is read-only")


def standin_kernels(device: Optional[StandInDevice] = None, compiler: Optional[StandInCompiler] = None,
                    disk: Any = None) -> CudaKernels:
    """A launcher on a stand-in device (a new one unless given), compiling with the stand-in compiler."""
    return CudaKernels(device or StandInDevice(), compiler or StandInCompiler(), disk=disk)


def standin_backend(kernels: Optional[CudaKernels] = None) -> Any:
    """A :class:`gpubp.backend.Backend` running ``CupyOps`` on a stand-in device.

    Its arrays are NumPy arrays, so it is a NumPy backend to everything but the ops.
    """
    from ..backend import Backend
    from .cupy_ops import CupyOps

    kernels = kernels if kernels is not None else standin_kernels()
    return Backend("numpy", np, CupyOps(kernels), f"stand-in device ({kernels.device.name}, launches skipped)")
