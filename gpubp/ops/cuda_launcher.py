"""Launching gpubp's CUDA kernels and cuBLAS products on a device.

:class:`CudaKernels` is what ``CupyOps`` calls: ``launch(name, dtype, *args)`` runs a kernel
of :data:`gpubp.ops.cuda_kernels.KERNELS`, ``gemm(...)`` a matrix product. It takes its
programs from the process-wide :data:`gpubp.ops.kernel_cache.PROGRAMS` (compiled once per
process, dtype and device; binaries also kept on disk), checks the arguments against the
kernel's parameters, sizes the grid from the device and hands the launch to a device:

* :class:`CupyDevice`, the CUDA GPU of CuPy's current context (modules loaded by the
  driver, kernels launched on the current stream, products through ``cupy.cublas``);
* or a stand-in with the same methods: :class:`gpubp.ops.standin.StandInDevice` (launches
  checked, counted and skipped: the host side measured without a GPU), or the test suite's
  host build of the kernels.

A compiler has ``version()``, ``supported_archs()`` and ``compile(text, name, arch,
name_expressions, options)``: :class:`NvrtcCompiler`, or a stand-in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np

from .. import _optional
from ..activations import ACTIVATIONS
from . import kernel_cache
from .cuda_kernels import (
    CTYPES,
    KERNELS,
    NVRTC_OPTIONS,
    CompiledProgram,
    column_chunks,
    instantiations,
    launch_shape,
    nvrtc_compile,
    nvrtc_module,
    prepare_args,
    program_source,
    runtime_arch,
)


@dataclass(frozen=True)
class DeviceProperties:
    """What the launcher needs to know of a device."""

    compute_capability: int  # e.g. 90 for 9.0
    multiprocessors: int
    threads_per_multiprocessor: int


class NvrtcCompiler:
    """NVRTC through CuPy's binding (needs the NVRTC library, not a GPU)."""

    name = "nvrtc"

    def version(self) -> str:
        return ".".join(str(v) for v in nvrtc_module().getVersion())

    def supported_archs(self) -> Sequence[int]:
        return tuple(nvrtc_module().getSupportedArchs())

    def compile(self, text: str, name: str, arch: str, name_expressions: Sequence[str],
                options: Sequence[str]) -> CompiledProgram:
        return nvrtc_compile(text, name, arch, name_expressions, options)


class CupyDevice:
    """The CUDA GPU of CuPy's current context."""

    @property
    def xp(self) -> Any:
        return _optional.cupy

    def current(self) -> int:
        return int(_optional.cupy.cuda.runtime.getDevice())

    def key(self, device: int) -> Hashable:
        """What tells this device's loaded programs apart from every other device's."""
        return ("cuda", device)

    def properties(self, device: int) -> DeviceProperties:
        dev = _optional.cupy.cuda.Device(device)
        attrs = dev.attributes
        return DeviceProperties(int(dev.compute_capability), int(attrs["MultiProcessorCount"]),
                                int(attrs["MaxThreadsPerMultiProcessor"]))

    def load(self, program: CompiledProgram, device: int) -> Any:
        module = _optional.cupy.cuda.function.Module()
        # the driver reads PTX as a NUL-terminated string
        binary = program.binary if program.arch.startswith("sm_") else program.binary.rstrip(b"\0") + b"\0"
        module.load(binary)
        return module

    def function(self, module: Any, lowered: str) -> Any:
        return module.get_function(lowered)

    def launch(self, function: Any, grid: Tuple[int, ...], block: Tuple[int, ...], args: Tuple[Any, ...]) -> None:
        function(grid, block, args)

    def gemm(self, transa: str, transb: str, a: Any, b: Any, out: Any, alpha: float, beta: float) -> None:
        from cupy import cublas  # loads cuBLAS on first use only

        cublas.gemm(transa, transb, a, b, out=out, alpha=alpha, beta=beta)


class CudaKernels:
    """Launches gpubp's kernels and products on ``device`` (default: the CuPy GPU).

    Creating it touches no GPU; each program is compiled (or read from the disk cache) and
    loaded on first launch, once per process, dtype and device, whatever the number of
    ``CudaKernels`` made. ``disk`` is the on-disk cache (default: as the environment says,
    see :mod:`gpubp.ops.kernel_cache`; ``None`` for none).
    """

    _DEFAULT = object()

    def __init__(self, device: Any = None, compiler: Any = None, disk: Any = _DEFAULT,
                 options: Sequence[str] = NVRTC_OPTIONS) -> None:
        self.device = device if device is not None else CupyDevice()
        self.compiler = compiler if compiler is not None else NvrtcCompiler()
        self._disk = disk
        self.options: Tuple[str, ...] = tuple(options)
        self._functions: Dict[Tuple[str, str, Optional[str], int], Any] = {}
        self._properties: Dict[int, DeviceProperties] = {}
        self._texts: Dict[str, str] = {}
        self._used: set = set()
        self._plans: Dict[Tuple[Any, ...], _Plan] = {}
        self._gemms: set = set()
        self._chunks: Dict[Tuple[int, int, int], int] = {}

    # ---- programs ----------------------------------------------------------------------
    @property
    def compiled(self) -> List[Tuple[str, str, int]]:
        """The (source, dtype, device) programs this launcher has used so far (each compiled,
        or read from disk, once per process: see :data:`gpubp.ops.kernel_cache.PROGRAMS`)."""
        return sorted(self._used)

    def _text(self, source: str) -> str:
        text = self._texts.get(source)
        if text is None:
            text = self._texts[source] = program_source(source)
        return text

    def properties(self, device: int) -> DeviceProperties:
        props = self._properties.get(device)
        if props is None:
            props = self._properties[device] = self.device.properties(device)
        return props

    def disk(self) -> Optional[kernel_cache.DiskCache]:
        return kernel_cache.default_disk_cache() if self._disk is CudaKernels._DEFAULT else self._disk

    def program(self, source: str, dtype: str, device: int) -> Tuple[Any, Dict[str, str]]:
        """(loaded module, lowered names) of ``source`` for ``dtype`` on ``device``."""
        text = self._text(source)
        key = kernel_cache.program_key(text, dtype, self.device.key(device), self.options)

        def build() -> Tuple[Any, Dict[str, str]]:
            arch = runtime_arch(self.properties(device).compute_capability, self.compiler.supported_archs())
            names = instantiations(source, [dtype])
            program = kernel_cache.compile_with_disk_cache(
                lambda: self.compiler.compile(text, source, arch, names, self.options), text, names, self.options,
                f"{getattr(self.compiler, 'name', type(self.compiler).__name__)} {self.compiler.version()}", arch,
                self.disk())
            return self.device.load(program, device), dict(program.lowered)

        entry = kernel_cache.PROGRAMS.get(key, build)
        self._used.add((source, dtype, device))
        return entry

    def function(self, name: str, dtype: str, act: Optional[str] = None, device: Optional[int] = None) -> Any:
        """The loaded kernel ``name`` for ``dtype`` (and activation ``act``) on ``device`` (default: current)."""
        if device is None:
            device = self.device.current()
        key = (name, dtype, act, device)
        fn = self._functions.get(key)
        if fn is None:
            spec = KERNELS[name]
            module, lowered = self.program(spec.source, dtype, device)
            fn = self._functions[key] = self.device.function(module, lowered[spec.instantiation(dtype, act)])
        return fn

    # ---- launches ----------------------------------------------------------------------
    def launch(self, name: str, dtype: Any, *args: Any, act: Optional[str] = None) -> None:
        """Run kernel ``name`` on ``args`` (in the order of its parameters) on the current stream.

        The arguments are checked in full (:func:`gpubp.ops.cuda_kernels.prepare_args`) once
        per signature: kernel, dtype, activation, device, and each array's type, dtype,
        shape and strides and each size. The check's outcome (the loaded function, the grid
        and block, the sizes as 64-bit integers, which inputs need a contiguous copy) is kept,
        so a launch of a known signature only converts its scalars and launches.
        """
        device = self.device.current()
        kinds = _KINDS.get(name)
        try:
            sig = tuple([(type(a), a.dtype, a.shape, a.strides) if k is _ARRAY else (a if k is _INDEX else None)
                         for k, a in zip(kinds, args)]) if kinds is not None else None
        except AttributeError:  # an array argument that is no array: the full check says so
            sig = None
        key = (name, dtype, act, device, len(args), sig)
        plan = self._plans.get(key) if sig is not None else None
        if plan is None:
            plan = self._plan(name, dtype, act, args, device)
            if sig is not None:
                if len(self._plans) >= _MAX_PLANS:
                    self._plans.clear()
                self._plans[key] = plan
        if plan.skip:
            return
        if plan.fixed or plan.convert:
            args = list(args)  # type: ignore[assignment]
            for i, v in plan.fixed:
                args[i] = v  # type: ignore[index]
            for i, f in plan.convert:
                args[i] = f(args[i])  # type: ignore[index]
            args = tuple(args)
        self.device.launch(plan.fn, plan.grid, plan.block, args)

    def _plan(self, name: str, dtype: Any, act: Optional[str], args: Tuple[Any, ...], device: int) -> "_Plan":
        """Check a launch in full and work out everything about it that its signature fixes."""
        dtype = np.dtype(dtype).name
        if dtype not in CTYPES:
            raise TypeError(f"gpubp's kernels run on float32 or float64 arrays; got {dtype}")
        if name not in KERNELS:
            raise ValueError(f"unknown kernel {name!r}: expected one of {', '.join(KERNELS)}")
        spec = KERNELS[name]
        if spec.per_activation and act not in ACTIVATIONS:
            raise ValueError(f"kernel {name} needs an elementwise activation; got {act!r}")
        xp = self.device.xp
        converted, sizes = prepare_args(spec, dtype, args, xp)
        if any(v == 0 for v in sizes.values()):
            return _Plan(None, (), (), (), (), skip=True)
        T = np.dtype(dtype)
        fixed: List[Tuple[int, Any]] = []
        convert: List[Tuple[int, Any]] = []
        for i, (p, a, c) in enumerate(zip(spec.params, args, converted)):
            if p.is_array:
                if c is not a:  # an input read through a contiguous (int64, for labels) copy
                    want = np.int64 if p.kind == "labels" else T
                    convert.append((i, lambda x, want=want: xp.ascontiguousarray(x, dtype=want)))
            elif p.kind == "index":
                fixed.append((i, c))
            elif p.kind == "scalar":
                convert.append((i, T.type))
            elif p.kind == "word":
                convert.append((i, _word))
            else:
                convert.append((i, _flag))
        fn = self.function(name, dtype, act if spec.per_activation else None, device)
        props = self.properties(device)
        grid, block = launch_shape(spec.shape, sizes, props.multiprocessors, props.threads_per_multiprocessor)
        return _Plan(fn, grid, block, tuple(fixed), tuple(convert))

    def column_chunks(self, rows: int, cols: int) -> int:
        """The chunks of rows a column reduction of a (rows, cols) matrix is split into on the
        current device (:func:`gpubp.ops.cuda_kernels.column_chunks`)."""
        device = self.device.current()
        key = (rows, cols, device)
        chunks = self._chunks.get(key)
        if chunks is None:
            props = self.properties(device)
            if len(self._chunks) >= _MAX_PLANS:
                self._chunks.clear()
            chunks = self._chunks[key] = column_chunks(rows, cols, props.multiprocessors,
                                                       props.threads_per_multiprocessor)
        return chunks

    def gemm(self, transa: str, transb: str, a: Any, b: Any, out: Any, alpha: float = 1.0, beta: float = 0.0) -> None:
        """out = alpha op(a) op(b) + beta out (op is ``N`` or ``T``), one product written into ``out``.

        The operands are checked (:func:`check_gemm`) once per signature (transposes, and each
        operand's type, dtype, shape and strides).
        """
        try:
            key = (transa, transb, type(a), a.dtype, a.shape, a.strides, type(b), b.dtype, b.shape, b.strides,
                   type(out), out.dtype, out.shape, out.strides)
        except AttributeError:
            key = None
        if key is None or key not in self._gemms:
            check_gemm(transa, transb, a, b, out, self.device.xp)
            if key is not None:
                if len(self._gemms) >= _MAX_PLANS:
                    self._gemms.clear()
                self._gemms.add(key)
        self.device.gemm(transa, transb, a, b, out, float(alpha), float(beta))


@dataclass(frozen=True)
class _Plan:
    """What a launch signature fixes: function, grid, block, the index arguments' values,
    and the conversions the other arguments need (scalars to the kernel's type)."""

    fn: Any
    grid: Tuple[int, ...]
    block: Tuple[int, ...]
    fixed: Tuple[Tuple[int, Any], ...]
    convert: Tuple[Tuple[int, Any], ...]
    skip: bool = False


def _flag(x: Any) -> np.int32:
    return np.int32(bool(x))


def _word(x: Any) -> np.uint64:
    """A 64-bit word of the dropout generator (its key, pass or element offset), checked."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or not 0 <= int(x) < 2**64:
        raise TypeError(f"a generator word must be an integer in [0, 2^64); got {x!r}")
    return np.uint64(int(x))


_ARRAY, _INDEX, _VALUE = "array", "index", "value"
_KINDS: Dict[str, Tuple[str, ...]] = {
    name: tuple(_ARRAY if p.is_array else (_INDEX if p.kind == "index" else _VALUE) for p in spec.params)
    for name, spec in KERNELS.items()
}
# Signatures remembered per launcher (a handful per kernel and batch size in practice).
_MAX_PLANS = 4096


def check_gemm(transa: str, transb: str, a: Any, b: Any, out: Any, xp: Any) -> Tuple[int, int, int]:
    """Check the operands of out = op(a) op(b); returns (m, n, k).

    Matrices of ``xp`` of one float dtype; op(a) is m x k, op(b) k x n, ``out`` m x n and
    C-contiguous (the product is written into it, not into a copy).
    """
    if transa not in ("N", "T") or transb not in ("N", "T"):
        raise ValueError(f"gemm: transa and transb must be 'N' or 'T'; got {transa!r}, {transb!r}")
    for what, x in (("a", a), ("b", b), ("out", out)):
        if not isinstance(x, xp.ndarray) or x.ndim != 2:
            got = f"{x.ndim}-d array" if isinstance(x, xp.ndarray) else type(x).__name__
            raise TypeError(f"gemm: {what} must be a 2-d {xp.__name__} array; got {got}")
    if not (a.dtype == b.dtype == out.dtype) or a.dtype.name not in CTYPES:
        raise TypeError(f"gemm: a, b and out must share a dtype, float32 or float64; got {a.dtype}, {b.dtype}, "
                        f"{out.dtype}")
    m, k = a.shape if transa == "N" else a.shape[::-1]
    kb, n = b.shape if transb == "N" else b.shape[::-1]
    if kb != k or out.shape != (m, n):
        raise ValueError(f"gemm: op(a) is {m}x{k} and op(b) {kb}x{n}: out must be ({m}, {n}) and the inner sizes "
                         f"equal; got out {tuple(out.shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"gemm: out must be C-contiguous; got strides {out.strides}")
    return m, n, k
