"""gpubp's CUDA kernels: their table, where their sources live, how they are assembled and compiled.

The kernels are CUDA C++ templates over the element type ``T`` in the ``kernels/`` folder
(shipped in the wheel as ``gpubp.kernels``). Each source file is compiled as one NVRTC
program made of

1. ``#define GPUBP_MAX_BLOCK``, then ``gpubp_common.cuh`` (NaN-preserving helpers, block
   reductions, grid-stride macros);
2. one functor per elementwise activation of :data:`gpubp.activations.ACTIVATIONS`,
   generated from the table's ``cuda_forward`` / ``cuda_grad`` bodies
   (``struct gpubp_act_<name> { forward(z); grad(z, a); }``), so an activation added to the
   table gets its forward, backward and output-head kernels with no edit here;
3. the ``.cu`` file itself,

with ``#line`` directives, so compiler messages name the real file and line. The
:data:`KERNELS` table describes every kernel's parameters once; from it come the template
instantiations compiled (for every dtype, and every activation where the kernel takes one),
the argument checks at launch, and the host-side wrappers of the test suite.

Compilation is lazy: nothing is compiled or allocated on a device until a kernel is first
launched (:mod:`gpubp.ops.cuda_launcher`), then each source is compiled once per process,
dtype and device with NVRTC, the compiler CuPy itself uses (:mod:`gpubp.ops.kernel_cache`
keeps the programs in memory and the binaries on disk). The program is compiled here rather
than through ``cupy.RawModule`` because CuPy forces ``-ftz=true`` (denormals flushed to
zero), which would make float32 results differ from NumPy's; the options used are
:data:`NVRTC_OPTIONS`, and the very same :func:`nvrtc_compile` is what the test suite runs
for ``sm_80`` and ``sm_90`` without a GPU.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..activations import ACTIVATIONS, Activation
from ..errors import GpubpError
from .kernel_cache import CompiledProgram

COMMON_HEADER = "gpubp_common.cuh"
SOURCES = ("activation.cu", "dropout.cu", "loss_heads.cu", "gradients.cu", "optimizers.cu", "batch_norm.cu")
CTYPES = {"float32": "float", "float64": "double"}
DTYPES = tuple(CTYPES)

# Threads per block of the row and column kernels (the size of their shared-memory buffer).
MAX_BLOCK = 256
# Threads per block of the flat (grid-stride) kernels.
FLAT_BLOCK = 256
# Resident threads per multiprocessor aimed at when sizing grids (2048 on sm_80 and sm_90).
THREADS_PER_SM = 2048
# A column reduction splits its rows across blocks only beyond this many rows (below, one
# launch with no partial sums costs less than two), into chunks of at least MIN_CHUNK_ROWS.
COLUMN_CHUNK_ROWS = 256
MIN_CHUNK_ROWS = 32
# CUDA's limit on gridDim.y.
MAX_GRID_Y = 65535

# IEEE semantics on the GPU as on the CPU: denormals kept, division and sqrt correctly
# rounded. Multiply-adds may be fused (one rounding instead of two).
NVRTC_OPTIONS: Tuple[str, ...] = ("--std=c++17", "--ftz=false", "--prec-div=true", "--prec-sqrt=true")
# The architectures every source is checked against without a GPU (A100 and H100 class).
CHECK_ARCHS: Tuple[str, ...] = ("sm_80", "sm_90")


class KernelCompileError(GpubpError, RuntimeError):
    """NVRTC rejected a kernel source; ``log`` holds the compiler's messages."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


# ---- the kernel table ------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One kernel parameter.

    ``kind`` is ``in`` (``const T*``), ``out`` (``T*``, written; may alias an ``in`` array
    where the kernel says so), ``labels`` (``const long long*``), ``index`` (64-bit size),
    ``scalar`` (a ``T``), ``flag`` (an ``int``) or ``word`` (an ``unsigned long long``: the
    dropout generator's key and counter words). For arrays, ``size`` names the ``index``
    parameters (or gives numbers) whose product is the array's length.
    """

    name: str
    kind: str
    size: Tuple[str, ...] = ()

    @property
    def is_array(self) -> bool:
        return self.kind in ("in", "out", "labels")

    def length(self, sizes: Dict[str, int]) -> int:
        """The number of elements of an array parameter, from the launch's index sizes."""
        return math.prod(sizes[s] if s in sizes else int(s) for s in self.size)

    def ctype(self, T: str) -> str:
        return {"in": f"const {T}*", "out": f"{T}*", "labels": "const long long*", "index": "long long",
                "scalar": T, "flag": "int", "word": "unsigned long long"}[self.kind]


@dataclass(frozen=True)
class KernelSpec:
    """One ``__global__`` template of ``kernels/``.

    ``shape`` is how it is launched: ``flat`` (grid-stride over every element), ``rows``
    (a block per row, threads over the columns) or ``columns`` (threads over columns and
    rows, reduced along the rows; a two-dimensional grid, column tiles along x and chunks of
    rows along y, see :func:`column_chunks`). ``per_activation`` kernels take the activation functor
    as their second template argument.
    """

    name: str
    source: str
    shape: str
    params: Tuple[Param, ...]
    per_activation: bool = False

    def instantiation(self, dtype: str, act: Optional[str] = None) -> str:
        """The name expression of one instantiation, e.g. ``act_backward<float, gpubp_act_relu>``."""
        args = [CTYPES[dtype]] + ([functor_name(act)] if self.per_activation else [])
        return f"{self.name}<{', '.join(args)}>"


def _p(spec: str) -> Param:
    """``"Z:out:rows*cols"`` -> Param("Z", "out", ("rows", "cols"))."""
    name, kind, *size = spec.split(":")
    return Param(name, kind, tuple(size[0].split("*")) if size else ())


def _kernel(name: str, source: str, shape: str, params: str, per_activation: bool = False) -> KernelSpec:
    return KernelSpec(name, source, shape, tuple(_p(s) for s in params.split()), per_activation)


_ROWS = "rows:index cols:index"
# one training pass's dropout (gpubp/philox.py): p, 1/(1 - p), the stream's key words, the pass
# number and the element offset of this rank's rows
_DROP = " p:scalar scale:scalar seed:word stream:word call:word offset:word"
_HEAD = "Z:in:rows*cols A:in:rows*cols Y:in:rows*cols Delta:out:rows*cols C0:out:rows " + _ROWS
_BN_FORWARD = ("X:in:rows*cols mean:in:cols inv_std:in:cols gamma:in:cols beta:in:cols Xhat:out:rows*cols "
               "Y:out:rows*cols A:out:rows*cols")
_BN_SUMS = ("dA:out:rows*cols Y:in:rows*cols A:in:rows*cols Xhat:in:rows*cols s1:out:chunks*cols "
            "s2:out:chunks*cols " + _ROWS + " chunks:index")
KERNELS: Dict[str, KernelSpec] = {
    k.name: k
    for k in (
        _kernel("bias_act_forward", "activation.cu", "flat", "Z:out:rows*cols b:in:cols A:out:rows*cols " + _ROWS, True),
        _kernel("act_forward", "activation.cu", "flat", "Z:out:rows*cols A:out:rows*cols " + _ROWS, True),
        _kernel("act_backward", "activation.cu", "flat", "dA:in:size Z:in:size A:in:size Delta:out:size size:index", True),
        _kernel("bias_act_dropout_forward", "dropout.cu", "flat",
                "Z:out:rows*cols b:in:cols A:out:rows*cols D:out:rows*cols " + _ROWS + _DROP, True),
        _kernel("act_dropout_forward", "dropout.cu", "flat",
                "Z:out:rows*cols A:out:rows*cols D:out:rows*cols " + _ROWS + _DROP, True),
        _kernel("act_dropout_backward", "dropout.cu", "flat",
                "dA:in:size Z:in:size A:in:size Delta:out:size size:index" + _DROP, True),
        _kernel("dropout_forward", "dropout.cu", "flat", "X:in:size out:out:size size:index" + _DROP),
        _kernel("dropout_backward", "dropout.cu", "flat", "dY:in:size out:out:size size:index" + _DROP),
        _kernel("bias_softmax_forward", "activation.cu", "rows", "Z:out:rows*cols b:in:cols A:out:rows*cols " + _ROWS),
        _kernel("softmax_forward", "activation.cu", "rows", "Z:out:rows*cols A:out:rows*cols " + _ROWS),
        _kernel("softmax_backward", "activation.cu", "rows", "dA:in:rows*cols A:in:rows*cols Delta:out:rows*cols " + _ROWS),
        _kernel("head_squared", "loss_heads.cu", "rows", _HEAD + " scale:scalar div:scalar", True),
        _kernel("head_squared_softmax", "loss_heads.cu", "rows", _HEAD + " scale:scalar div:scalar"),
        _kernel("head_xent_dense", "loss_heads.cu", "rows", _HEAD),
        _kernel("head_xent_labels", "loss_heads.cu", "rows",
                "Z:in:rows*cols A:in:rows*cols labels:labels:rows Delta:out:rows*cols C0:out:rows " + _ROWS),
        _kernel("head_bce", "loss_heads.cu", "rows", _HEAD),
        _kernel("bias_grad", "gradients.cu", "columns",
                "Delta:in:rows*cols out:out:chunks*cols " + _ROWS + " chunks:index scale:scalar"),
        _kernel("grad_sq_norm_parts", "gradients.cu", "rows", "x:in:size partial:out:rows size:index " + _ROWS),
        _kernel("grad_clip_factor", "gradients.cu", "rows", "partial:in:rows*cols clip:out:2 " + _ROWS + " max_norm:scalar"),
        _kernel("grad_scale", "gradients.cu", "flat", "x:out:size clip:in:2 size:index"),
        _kernel("bn_sums", "batch_norm.cu", "columns",
                "X:in:rows*cols shift:in:cols s1:out:chunks*cols s2:out:chunks*cols " + _ROWS + " chunks:index"),
        _kernel("bn_stats", "batch_norm.cu", "flat",
                "s1:in:cols s2:in:cols shift:in:cols running_mean:out:cols running_var:out:cols mean:out:cols "
                "inv_std:out:cols cols:index count:scalar momentum:scalar eps:scalar training:flag update:flag"),
        _kernel("bn_forward", "batch_norm.cu", "flat",
                _BN_FORWARD + " " + _ROWS, True),
        _kernel("bn_dropout_forward", "batch_norm.cu", "flat",
                _BN_FORWARD + " D:out:rows*cols " + _ROWS + _DROP, True),
        _kernel("bn_backward_sums", "batch_norm.cu", "columns", _BN_SUMS, True),
        _kernel("bn_dropout_backward_sums", "batch_norm.cu", "columns", _BN_SUMS + _DROP, True),
        _kernel("bn_param_grads", "batch_norm.cu", "flat",
                "s1:in:cols s2:in:cols dgamma:out:cols dbeta:out:cols cols:index count:scalar"),
        _kernel("bn_backward", "batch_norm.cu", "flat",
                "Delta:in:rows*cols Xhat:in:rows*cols dgamma:in:cols dbeta:in:cols gamma:in:cols inv_std:in:cols "
                "out:out:rows*cols " + _ROWS + " training:flag"),
        _kernel("sgd", "optimizers.cu", "flat", "params:out:size grads:in:size size:index lr:scalar wd:scalar"),
        _kernel("sgd_momentum", "optimizers.cu", "flat",
                "params:out:size grads:in:size velocity:out:size size:index lr:scalar momentum:scalar wd:scalar "
                "nesterov:flag"),
        _kernel("adam", "optimizers.cu", "flat",
                "params:out:size grads:in:size m:out:size v:out:size size:index step_size:scalar b1:scalar "
                "one_minus_b1:scalar b2:scalar one_minus_b2:scalar sqrt_bias2:scalar eps:scalar wd:scalar"),
        _kernel("adamw", "optimizers.cu", "flat",
                "params:out:size grads:in:size m:out:size v:out:size size:index step_size:scalar b1:scalar "
                "one_minus_b1:scalar b2:scalar one_minus_b2:scalar sqrt_bias2:scalar eps:scalar decay:scalar"),
    )
}


def elementwise_activations() -> List[Activation]:
    """The table's activations that get a functor (every elementwise one)."""
    return [a for a in ACTIVATIONS.values() if a.elementwise]


def functor_name(act: Optional[str]) -> str:
    if act is None:
        raise ValueError("this kernel takes an activation; none was given")
    return f"gpubp_act_{act}"


def instantiations(source: str, dtypes: Iterable[str] = DTYPES) -> List[str]:
    """Every template instantiation of ``source`` that gpubp launches, for ``dtypes``."""
    out = []
    for dtype in dtypes:
        for spec in KERNELS.values():
            if spec.source != source:
                continue
            if spec.per_activation:
                out.extend(spec.instantiation(dtype, a.name) for a in elementwise_activations())
            else:
                out.append(spec.instantiation(dtype))
    return out


# ---- the sources -----------------------------------------------------------------------
def kernel_dir() -> Path:
    """The folder holding the ``.cu`` / ``.cuh`` sources.

    In an installed wheel it is the package ``gpubp.kernels``; in a source checkout it is the
    top-level ``kernels/`` folder beside ``gpubp/``. The folders beside the imported package
    come first, so a checkout run as ``PYTHONPATH=. python ...`` compiles its own sources even
    where another checkout is installed (editable) and its finder answers for ``gpubp.kernels``.
    """
    here = Path(__file__).resolve().parents[1]  # the imported gpubp package
    candidates: List[Path] = [here / "kernels", here.parent / "kernels"]
    try:
        spec = importlib.util.find_spec("gpubp.kernels")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) for p in spec.submodule_search_locations)
    for path in candidates:
        if (path / COMMON_HEADER).is_file():
            return path
    raise FileNotFoundError(
        f"gpubp's CUDA sources ({COMMON_HEADER} and {', '.join(SOURCES)}) were not found; looked in "
        f"{', '.join(str(p) for p in candidates)}. Reinstall gpubp: the wheel ships them as gpubp/kernels/."
    )


def activation_functors(acts: Optional[Sequence[Activation]] = None) -> str:
    """CUDA C++ of one functor per elementwise activation, from the table's CUDA bodies."""
    parts = []
    for act in acts if acts is not None else elementwise_activations():
        parts.append(
            f"struct {functor_name(act.name)} {{\n"
            f"    template <typename T>\n"
            f"    static __device__ __forceinline__ T forward(const T z) {{\n{_indent(act.cuda_forward)}\n    }}\n"
            f"    template <typename T>\n"
            f"    static __device__ __forceinline__ T grad(const T z, const T a) {{\n{_indent(act.cuda_grad)}\n    }}\n"
            f"}};\n"
        )
    return "".join(parts)


def _indent(body: str) -> str:
    return "\n".join("        " + line for line in body.strip().splitlines())


def program_source(source: str, text: Optional[str] = None, acts: Optional[Sequence[Activation]] = None) -> str:
    """The full text NVRTC compiles for ``source`` (one of :data:`SOURCES`).

    ``text`` replaces the file's content (the tests use it to check that a broken source is
    reported); ``acts`` replaces the activation table.
    """
    folder = kernel_dir()
    if text is None:
        text = (folder / source).read_text()
    common = (folder / COMMON_HEADER).read_text()
    return (
        f"#define GPUBP_MAX_BLOCK {MAX_BLOCK}\n"
        f'#line 1 "{COMMON_HEADER}"\n{common}\n'
        f'#line 1 "activations (generated from gpubp/activations.py)"\n{activation_functors(acts)}\n'
        f'#line 1 "{source}"\n{text}\n'
    )


# ---- NVRTC -----------------------------------------------------------------------------
def nvrtc_module() -> Any:
    """CuPy's binding of NVRTC (``cupy_backends.cuda.libs.nvrtc``); ImportError if unavailable."""
    from cupy_backends.cuda.libs import nvrtc  # NVRTC needs no GPU, only its library

    nvrtc.getVersion()  # loads libnvrtc: fails here, clearly, when the library is missing
    return nvrtc


def nvrtc_compile(source_text: str, name: str, arch: str, name_expressions: Sequence[str],
                  options: Sequence[str] = NVRTC_OPTIONS) -> CompiledProgram:
    """Compile ``source_text`` with NVRTC for ``arch`` (``sm_90`` -> cubin, ``compute_90`` -> PTX).

    Every name expression is instantiated and its mangled name returned. A compilation error
    raises :class:`KernelCompileError` carrying the compiler's log. Needs no GPU.
    """
    nvrtc = nvrtc_module()
    prog = nvrtc.createProgram(source_text, name, (), ())
    try:
        for expr in name_expressions:
            nvrtc.addNameExpression(prog, expr)
        try:
            nvrtc.compileProgram(prog, tuple(options) + (f"--gpu-architecture={arch}",))
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(prog)
            raise KernelCompileError(f"NVRTC could not compile {name} for {arch} ({exc}):\n{log}", log) from None
        log = nvrtc.getProgramLog(prog)
        lowered = {expr: nvrtc.getLoweredName(prog, expr) for expr in name_expressions}
        binary = nvrtc.getCUBIN(prog) if arch.startswith("sm_") else nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    return CompiledProgram(bytes(binary), arch, lowered, log.strip() if isinstance(log, str) else "")


def runtime_arch(compute_capability: int, supported: Sequence[int]) -> str:
    """The NVRTC target for a device: its own ``sm_XX`` cubin when NVRTC knows it, otherwise
    PTX for the newest older architecture NVRTC supports (the driver compiles it)."""
    if compute_capability in supported:
        return f"sm_{compute_capability}"
    older = [a for a in supported if a <= compute_capability]
    if not older:
        raise KernelCompileError(
            f"this NVRTC supports architectures {sorted(supported)}; the GPU has compute capability "
            f"{compute_capability / 10:.1f}, older than all of them"
        )
    return f"compute_{max(older)}"


# ---- launch shapes ---------------------------------------------------------------------
def _pow2_at_least(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


def launch_shape(shape: str, sizes: Dict[str, int], multiprocessors: int,
                 threads_per_sm: int = THREADS_PER_SM) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """(grid, block) for a kernel of ``shape`` over ``sizes`` (its index parameters) on a
    device with ``multiprocessors`` SMs of ``threads_per_sm`` resident threads: enough blocks
    to fill the device, never more than the work needs; the grid-stride loops cover whatever
    the grid does not."""
    resident = max(1, multiprocessors) * max(FLAT_BLOCK, threads_per_sm)
    if shape == "flat":
        n = math.prod(sizes.values())
        blocks = min(-(-n // FLAT_BLOCK), resident // FLAT_BLOCK)
        return (max(1, blocks),), (FLAT_BLOCK,)
    rows, cols = sizes["rows"], sizes["cols"]
    if shape == "rows":
        block = min(MAX_BLOCK, max(32, _pow2_at_least(cols)))
        return (max(1, min(rows, resident // block)),), (block,)
    if shape == "columns":
        chunks = max(1, sizes.get("chunks", 1))
        bx = min(32, _pow2_at_least(cols))
        by = min(MAX_BLOCK // bx, _pow2_at_least(-(-rows // chunks)))
        tiles = -(-cols // bx)
        target = max(1, resident // (bx * by))
        gy = max(1, min(chunks, MAX_GRID_Y, target))
        return (max(1, min(tiles, target // gy)), gy), (bx, by)
    raise ValueError(f"unknown launch shape {shape!r}: expected flat, rows or columns")


def column_chunks(rows: int, cols: int, multiprocessors: int, threads_per_sm: int = THREADS_PER_SM) -> int:
    """How many chunks a column reduction (``bias_grad``, BatchNorm's sums) splits the rows of a (rows, cols)
    matrix into, on a device of ``multiprocessors`` SMs.

    1 (one launch, no partial sums) up to :data:`COLUMN_CHUNK_ROWS` rows, or when the column
    tiles alone fill the device; otherwise as many chunks (of at least :data:`MIN_CHUNK_ROWS`
    rows) as it takes for the blocks, column tiles x chunks, to fill every multiprocessor.
    Then a second launch adds up the partial sums.
    """
    if rows <= COLUMN_CHUNK_ROWS:
        return 1
    bx = min(32, _pow2_at_least(cols))
    tiles = -(-cols // bx)
    blocks = max(1, multiprocessors) * max(FLAT_BLOCK, threads_per_sm) // MAX_BLOCK
    return max(1, min(-(-rows // MIN_CHUNK_ROWS), blocks // tiles, MAX_GRID_Y))


# ---- arguments -------------------------------------------------------------------------
def prepare_args(spec: KernelSpec, dtype: str, args: Sequence[Any], xp: Any) -> Tuple[List[Any], Dict[str, int]]:
    """Check and convert ``args`` for ``spec`` on array module ``xp`` (CuPy, or NumPy for the
    host build of the tests); returns the converted arguments and the index sizes.

    Arrays must have the kernel's dtype and exactly the length its sizes give. Inputs that
    are not C-contiguous are copied to contiguous arrays; outputs must be C-contiguous (a
    copy would not carry the result back). Integer labels are read as int64.
    """
    if len(args) != len(spec.params):
        names = ", ".join(p.name for p in spec.params)
        raise TypeError(f"kernel {spec.name} takes {len(spec.params)} arguments ({names}); got {len(args)}")
    sizes = {}
    for p, a in zip(spec.params, args):
        if p.kind == "index":
            if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) or int(a) < 0:
                raise TypeError(f"kernel {spec.name}: {p.name} must be a non-negative integer; got {a!r}")
            sizes[p.name] = int(a)
    T = np.dtype(dtype)
    out: List[Any] = []
    for p, a in zip(spec.params, args):
        if p.is_array:
            if not isinstance(a, xp.ndarray):
                raise TypeError(f"kernel {spec.name}: {p.name} must be a {xp.__name__} array; got {type(a).__name__}")
            want = np.dtype(np.int64) if p.kind == "labels" else T
            if a.dtype != want:
                if p.kind == "labels" and a.dtype.kind in "iu":
                    a = a.astype(np.int64)
                else:
                    raise TypeError(f"kernel {spec.name}: {p.name} must have dtype {want}; got {a.dtype}")
            length = p.length(sizes)
            if a.size != length:
                dims = "*".join(f"{s}={sizes[s]}" if s in sizes else s for s in p.size)
                raise ValueError(f"kernel {spec.name}: {p.name} must hold {dims} = {length} elements; got shape {tuple(a.shape)}")
            if not a.flags.c_contiguous:
                if p.kind == "out":
                    raise ValueError(f"kernel {spec.name}: output {p.name} must be C-contiguous; got strides {a.strides}")
                a = xp.ascontiguousarray(a)
            out.append(a)
        elif p.kind == "index":
            out.append(np.int64(a))
        elif p.kind == "scalar":
            out.append(T.type(a))
        elif p.kind == "flag":
            out.append(np.int32(bool(a)))
        elif p.kind == "word":
            if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) or not 0 <= int(a) < 2**64:
                raise TypeError(f"kernel {spec.name}: {p.name} must be an integer in [0, 2^64); got {a!r}")
            out.append(np.uint64(int(a)))
        else:  # pragma: no cover - the table only uses the kinds above
            raise ValueError(f"unknown parameter kind {p.kind!r}")
    return out, sizes
