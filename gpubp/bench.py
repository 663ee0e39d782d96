"""Benchmarks of the gradient-averaging hot path and of training, NumPy against CuPy.

One implementation of every benchmark, shared by ``gpubp bench`` (its own timer, a table,
JSON and a PNG) and the pytest-benchmark suite in ``benchmarks/``. A benchmark is a
:class:`Case`: a prepared, warmed-up call plus the work it does (floating-point operations or
bytes moved), built by one of the ``*_case`` functions for one backend:

* ``loop``: the tutorial's per-sample averaging, one outer product a sample
  (:func:`gpubp.reference.average_outer_products`), NumPy, small sizes only;
* ``numpy``: the library on NumPy (BLAS);
* ``gemm``: the bound the NumPy path is held to: one bare GEMM of the same shape for the hot
  path, the step's own matrix products (nothing else) for a training step, both in the BLAS
  the NumPy backend calls (:mod:`gpubp.ops._blas`: MKL or NumPy's OpenBLAS);
* ``cupy``: the library on CuPy (cuBLAS and custom kernels), timed with CUDA events after
  warm-up, when a GPU is visible;
* ``torch``: PyTorch eager on the CPU, the peer everyone knows, when it is installed (never a
  dependency).

MATH.md: the hot path is dC/dW^(l) = (1/n) Delta^(l)T A^(l-1) and dC/db^(l) = (1/n) sum_rows
Delta^(l), 2 n n_l n_{l-1} + n n_l floating-point operations.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _optional
from .errors import GpubpError

BACKENDS = ("loop", "numpy", "gemm", "cupy", "torch")
BACKEND_LABELS = {
    "loop": "per-sample loop",
    "numpy": "numpy",
    "gemm": "numpy GEMM bound",
    "cupy": "cupy",
    "torch": "torch (cpu)",
}
# The per-sample loop runs only where one call takes seconds at most.
LOOP_MAX_N = 256
LOOP_MAX_WIDTH = 2048
TRAIN_SIZES = (784, 512, 256, 10)


class MissingExtraError(GpubpError, ImportError):
    """An optional package this output needs is not installed (the message names the extra)."""


class Unavailable(Exception):
    """This benchmark cannot run here (backend missing, no GPU, size not allowed); says why."""


@dataclass
class Case:
    """One prepared benchmark: ``fn()`` does the work once (queued, on a GPU), ``sync()`` waits.

    ``flops`` (floating-point operations) or ``nbytes`` (bytes read and written at least) is
    the work of one call; ``peak_bytes_per_s`` the memory bandwidth the rate is compared to;
    ``outputs`` the arrays a call writes (for checking what it computed).
    """

    group: str
    backend: str
    shape: str
    dtype: str
    fn: Callable[[], Any] = field(repr=False)
    sync: Callable[[], None] = field(repr=False, default=lambda: None)
    flops: float = 0.0
    nbytes: float = 0.0
    peak_bytes_per_s: Optional[float] = None
    gpu: bool = False
    outputs: Tuple[Any, ...] = field(repr=False, default=())

    def __call__(self) -> None:
        """One synchronised call (what a wall-clock timer such as pytest-benchmark measures)."""
        self.fn()
        self.sync()

    def info(self) -> Dict[str, Any]:
        """The description of the case, without the callables (for JSON and pytest-benchmark)."""
        return {"group": self.group, "backend": self.backend, "shape": self.shape, "dtype": self.dtype,
                "flops": self.flops, "nbytes": self.nbytes, "peak_bytes_per_s": self.peak_bytes_per_s}


@dataclass
class Result:
    """The measured time of one case: ``seconds`` is the best call, ``median`` the typical one."""

    group: str
    backend: str
    shape: str
    dtype: str
    seconds: float
    median: float
    rounds: int
    flops: float = 0.0
    nbytes: float = 0.0
    peak_bytes_per_s: Optional[float] = None

    @property
    def rate(self) -> str:
        """GFLOP/s, or GB/s and the share of the memory bandwidth, of the best call."""
        if self.flops:
            return f"{self.flops / self.seconds / 1e9:8.1f} GFLOP/s"
        if self.nbytes:
            gbs = self.nbytes / self.seconds / 1e9
            share = f" ({100 * self.nbytes / self.seconds / self.peak_bytes_per_s:3.0f}% of peak)" if self.peak_bytes_per_s else ""
            return f"{gbs:8.1f} GB/s{share}"
        return ""


# ---- what runs where -------------------------------------------------------------------
def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise Unavailable("PyTorch is not installed (it is only a point of comparison, never a dependency)") from None
    return torch


def _cupy() -> Any:
    from .backend import cupy_problem

    problem = cupy_problem()
    if problem is not None:
        raise Unavailable(f"no GPU for the CuPy column: {problem}")
    return _optional.cupy


def _check_backend(backend: str, allowed: Sequence[str]) -> None:
    if backend not in allowed:
        raise ValueError(f"backend must be one of {', '.join(allowed)} for this benchmark; got {backend!r}")


def _random(shape: Tuple[int, ...], dtype: Any, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float64).astype(dtype)


def _device_arrays(backend: str, arrays: Sequence[np.ndarray]) -> Tuple[List[Any], Callable[[], None]]:
    """The arrays on ``backend`` and its ``sync``; PyTorch shares NumPy's memory."""
    if backend == "cupy":
        cp = _cupy()
        stream = cp.cuda.get_current_stream()
        return [cp.asarray(a) for a in arrays], stream.synchronize
    if backend == "torch":
        torch = _torch()
        return [torch.from_numpy(a) for a in arrays], lambda: None
    return list(arrays), lambda: None


def _ops(backend: str) -> Any:
    if backend == "cupy":
        _cupy()
        from .ops.cupy_ops import CupyOps

        return CupyOps()
    from .ops.numpy_ops import NumpyOps

    return NumpyOps()


def _bare_gemm() -> Callable[[np.ndarray, np.ndarray, np.ndarray], Any]:
    """out = Delta^T A as the NumPy backend computes a product (its direct BLAS call, or NumPy's
    matmul for a small one), with nothing else: the bound the hot path is held to."""
    from .ops.numpy_ops import NumpyOps

    direct = NumpyOps()._direct

    def gemm(Delta: np.ndarray, A: np.ndarray, out: np.ndarray) -> None:
        if not direct(1.0, Delta, A, 0.0, out, trans_a=True):
            np.matmul(Delta.T, A, out=out)

    return gemm


def _warm(case: Case, calls: int = 2) -> Case:
    """Run the case before timing: allocations, BLAS thread start-up, CUDA kernel compilation."""
    for _ in range(calls):
        case()
    return case


# ---- the benchmarks --------------------------------------------------------------------
def hot_path_case(backend: str, n: int, width: int, dtype: str = "float32") -> Case:
    """dC/dW = (1/n) Delta^T A and dC/db = (1/n) sum_rows Delta for a layer of ``width`` x ``width``.

    ``gemm`` is one bare GEMM Delta^T A of the same shape (no 1/n, no bias): the bound.
    """
    _check_backend(backend, BACKENDS)
    if backend == "loop" and (n > LOOP_MAX_N or width > LOOP_MAX_WIDTH):
        raise Unavailable(f"the per-sample loop runs at n <= {LOOP_MAX_N} and width <= {LOOP_MAX_WIDTH} only")
    host = [_random((n, width), dtype, 1), _random((n, width), dtype, 2),
            np.empty((width, width), dtype), np.empty(width, dtype)]
    (Delta, A_prev, dW, db), sync = _device_arrays(backend, host)
    if backend == "loop":
        from .reference import average_outer_products, average_rows

        def fn() -> None:
            dW[...] = average_outer_products(Delta, A_prev)
            db[...] = average_rows(Delta)
    elif backend == "gemm":
        gemm = _bare_gemm()

        def fn() -> None:
            gemm(Delta, A_prev, dW)
    elif backend == "torch":
        torch = _torch()

        def fn() -> None:
            torch.addmm(dW, Delta.T, A_prev, beta=0.0, alpha=1.0 / n, out=dW)
            torch.mean(Delta, 0, out=db)
    else:
        ops = _ops(backend)

        def fn() -> None:
            ops.grad_weights(Delta, A_prev, out=dW)
            ops.grad_bias(Delta, out=db)
    flops = 2.0 * n * width * width + (0 if backend == "gemm" else n * width)
    case = Case(f"hot path dC/dW, dC/db  n={n} width={width} {dtype}", backend, f"({n}, {width})", dtype,
                fn, sync, flops=flops, gpu=backend == "cupy", outputs=(dW,) if backend == "gemm" else (dW, db))
    return _warm(case, 1 if backend == "loop" else 2)


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
    cp = _cupy()
    attrs = cp.cuda.Device().attributes
    return 2.0 * attrs["MemoryClockRate"] * 1e3 * attrs["GlobalMemoryBusWidth"] / 8.0


def activation_grad_case(backend: str, name: str, n: int = 4096, width: int = 2048, dtype: str = "float32") -> Case:
    """Delta = dA * g'(Z) (MATH.md, backward) for activation ``name`` over an (n, width) batch.

    The rate counts the least traffic the kernel can have: dA and one of Z, A read, Delta written;
    it is compared to the GPU's peak memory bandwidth, or on the CPU to what a plain copy of
    arrays of the same size reaches.
    """
    from .activations import get_activation

    _check_backend(backend, ("numpy", "cupy"))
    act = get_activation(name)
    if not act.elementwise:
        raise ValueError(f"activation {name!r} has no elementwise derivative kernel")
    Z_host = _random((n, width), dtype, 3)
    A_host = np.asarray(act.forward(np, Z_host), dtype=dtype)
    (dA, Z, A, out), sync = _device_arrays(backend, [_random((n, width), dtype, 4), Z_host, A_host,
                                                     np.empty((n, width), dtype)])
    ops = _ops(backend)

    def fn() -> None:
        ops.activation_backward(dA, Z, A, act, out=out)

    itemsize = np.dtype(dtype).itemsize
    peak = device_bandwidth() if backend == "cupy" else host_bandwidth(n * width * itemsize)
    case = Case(f"activation derivative Delta = dA * g'(Z)  ({n}, {width}) {dtype}", backend, name, dtype, fn, sync,
                nbytes=3.0 * n * width * itemsize, peak_bytes_per_s=peak, gpu=backend == "cupy")
    return _warm(case)


def _train_flops(sizes: Sequence[int], n: int) -> float:
    """Matrix-product work of one step: forward, dC/dW of every layer, Delta W below layer 1."""
    weights = [sizes[l] * sizes[l - 1] for l in range(1, len(sizes))]
    return 2.0 * n * (2 * sum(weights) + sum(weights[1:]))


def train_step_case(backend: str, n: int, optimizer: str = "sgd", dtype: str = "float32",
                    sizes: Sequence[int] = TRAIN_SIZES) -> Case:
    """One training step (forward, backward, update) of a ReLU MLP with softmax cross-entropy.

    ``gemm`` runs only the step's own matrix products, on the same buffers: the BLAS bound.
    The optimizer is ``sgd`` (MATH.md's update, lr 0.01) or ``adam`` (lr 1e-3).
    """
    from . import network, optim
    from .backend import use_backend

    _check_backend(backend, ("numpy", "gemm", "cupy", "torch"))
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {optimizer!r}")
    X_host = _random((n, sizes[0]), dtype, 5)
    y_host = np.random.default_rng(6).integers(0, sizes[-1], n)
    group = f"train step {'-'.join(map(str, sizes))} {optimizer}  n={n} {dtype}"
    flops = _train_flops(sizes, n)
    if backend == "cupy":
        _cupy()
    with use_backend("cupy" if backend == "cupy" else "numpy") as be:
        net = network.MLP(list(sizes), activation="relu", loss="cross_entropy", dtype=dtype, seed=0)
        X, y = be.asarray(X_host), be.asarray(y_host)
    opt = optim.SGD(lr=0.01) if optimizer == "sgd" else optim.Adam(lr=1e-3)

    if backend in ("numpy", "cupy"):
        def fn() -> None:
            net._loss_and_grads(X, y)
            opt.step(net)

        case = Case(group, backend, f"n={n}", dtype, fn, be.synchronize, flops=flops, gpu=backend == "cupy")
    elif backend == "gemm":
        ws = net._workspace(n)
        layers = net.layers
        L = net.L
        net._loss_and_grads(X, y)  # realistic values in the buffers

        ops = net.backend.ops  # the same BLAS calls as the step's, and nothing else

        def fn() -> None:
            A_prev = X
            for l in range(1, L + 1):
                ops.linear(A_prev, layers[l].W, out=ws.Z[l])
                A_prev = ws.A[l]
            for l in range(L, 0, -1):
                ops.grad_weights(ws.Delta[l], ws.A[l - 1] if l > 1 else X, out=layers[l].dW)
                if l > 1:
                    ops.backprop_linear(ws.Delta[l], layers[l].W, out=ws.Delta[l - 1])

        case = Case(group, backend, f"n={n}", dtype, fn, flops=flops)
    else:
        torch = _torch()
        mods: List[Any] = []
        for l in range(1, len(sizes)):
            lin = torch.nn.Linear(sizes[l - 1], sizes[l]).to(getattr(torch, dtype))
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.array(net.layers[l].W)))
                lin.bias.copy_(torch.from_numpy(np.array(net.layers[l].b)))
            mods += [lin, torch.nn.ReLU()]
        model = torch.nn.Sequential(*mods[:-1])
        topt = (torch.optim.SGD(model.parameters(), lr=0.01) if optimizer == "sgd"
                else torch.optim.Adam(model.parameters(), lr=1e-3))
        tX, ty = torch.from_numpy(X_host), torch.from_numpy(y_host)

        def fn() -> None:
            topt.zero_grad()
            torch.nn.functional.cross_entropy(model(tX), ty).backward()
            topt.step()

        case = Case(group, backend, f"n={n}", dtype, fn, flops=flops)
    return _warm(case, 3)


def epoch_case(backend: str) -> Case:
    """One epoch of ``gpubp train``'s default workload (its defaults read from the command's parser)."""
    from . import cli
    from .backend import use_backend
    from .network import MLP
    from .optim import make_optimizer

    _check_backend(backend, ("numpy", "cupy"))
    if backend == "cupy":
        _cupy()
    args = cli.build_parser().parse_args(["train"])
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 0.1)
    X_tr, y_tr, _, _, _ = cli._load_data(args)
    m = int(y_tr.max()) + 1
    Y_tr = cli._targets(y_tr, args.loss, m)
    sizes = [X_tr.shape[1], *args.hidden, m]
    with use_backend(backend) as be:
        net = MLP(sizes, activation=args.activation, output_activation=args.output_activation, loss=args.loss,
                  dtype=args.dtype, seed=args.seed)
        X, Y = be.asarray(X_tr), be.asarray(Y_tr)
    opt_kwargs: Dict[str, Any] = {"lr": lr}
    if args.optimizer == "sgd":
        opt_kwargs.update(momentum=args.momentum, nesterov=args.nesterov)
    optimizer = make_optimizer(args.optimizer, **opt_kwargs)

    def fn() -> None:
        net.fit(X, Y, epochs=1, batch_size=args.batch_size, optimizer=optimizer, progress=False)

    n = X_tr.shape[0]
    flops = n * _train_flops(sizes, 1)
    shape = f"{'-'.join(map(str, sizes))} batch {args.batch_size}, {n} samples"
    case = Case(f"gpubp train default workload: one epoch ({args.optimizer}, {args.dtype})", backend, shape,
                args.dtype, fn, be.synchronize, flops=flops, gpu=backend == "cupy")
    return _warm(case, 1)


# ---- timing ----------------------------------------------------------------------------
def measure(case: Case, min_time: float = 0.2, min_rounds: int = 3, max_rounds: int = 10000) -> Result:
    """Time ``case``: at least ``min_rounds`` calls and ``min_time`` seconds of calls.

    CPU cases are timed call by call with ``time.perf_counter``; GPU cases with CUDA events
    around every call (``cupyx.profiler.benchmark``), after the warm-up the case already had.
    """
    if case.gpu:
        from cupyx.profiler import benchmark

        t0 = time.perf_counter()
        case()
        once = max(time.perf_counter() - t0, 1e-6)
        rounds = int(min(max_rounds, max(min_rounds, min_time / once)))
        res = benchmark(case.fn, n_repeat=rounds, n_warmup=1)
        times = np.asarray(res.gpu_times)[0]
    else:
        times_list: List[float] = []
        start = time.perf_counter()
        while len(times_list) < max_rounds and (len(times_list) < min_rounds or time.perf_counter() - start < min_time):
            t = time.perf_counter()
            case()
            times_list.append(time.perf_counter() - t)
        times = np.asarray(times_list)
    return Result(case.group, case.backend, case.shape, case.dtype, float(times.min()), float(np.median(times)),
                  int(times.size), case.flops, case.nbytes, case.peak_bytes_per_s)


# ---- what the command runs -------------------------------------------------------------
CORE_HOT_PATH = ((32, 512), (256, 128), (256, 512), (256, 2048), (4096, 512), (4096, 2048))
CORE_ACTIVATION_SHAPE = (2048, 512)
CORE_TRAIN = ((256, "sgd"), (256, "adam"))


def core_cases(backends: Sequence[str]) -> Iterable[Callable[[], Case]]:
    """The core comparison of ``gpubp bench`` (about a minute on two cores), as case builders."""
    from .activations import ELEMENTWISE

    for n, width in CORE_HOT_PATH:
        for b in backends:
            yield lambda b=b, n=n, width=width: hot_path_case(b, n, width)
    for n, opt in CORE_TRAIN:
        for b in backends:
            if b != "loop":
                yield lambda b=b, n=n, opt=opt: train_step_case(b, n, opt)
    for name in ELEMENTWISE:
        for b in backends:
            if b in ("numpy", "cupy"):
                yield lambda b=b, name=name: activation_grad_case(b, name, *CORE_ACTIVATION_SHAPE)
    for b in backends:
        if b in ("numpy", "cupy"):
            yield lambda b=b: epoch_case(b)


def run_cases(builders: Iterable[Callable[[], Case]], min_time: float = 0.2,
              log: Optional[Callable[[str], None]] = None) -> Tuple[List[Result], List[str]]:
    """Build and measure each case; (results, one line per case that could not run)."""
    results: List[Result] = []
    skipped: List[str] = []
    for build in builders:
        try:
            case = build()
        except Unavailable as exc:
            if str(exc) not in skipped:
                skipped.append(str(exc))
            continue
        results.append(measure(case, min_time=min_time))
        if log is not None:
            r = results[-1]
            log(f"  {r.group} | {BACKEND_LABELS.get(r.backend, r.backend)} {r.shape}: {_fmt_time(r.seconds)}")
    return results, skipped


# ---- machine description ---------------------------------------------------------------
def machine_info() -> Dict[str, Any]:
    """CPU model, core count, thread counts and the BLAS NumPy uses (and the GPU, if any)."""
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
    }
    from .ops import _blas

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
    from .backend import cupy_problem

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


# ---- output ----------------------------------------------------------------------------
def _fmt_time(s: float) -> str:
    if s >= 1.0:
        return f"{s:8.3f} s "
    if s >= 1e-3:
        return f"{s * 1e3:8.3f} ms"
    return f"{s * 1e6:8.1f} us"


def _ratio(x: Optional[float]) -> str:
    if x is None:
        return "       -"
    return f"{x:7.2f}x" if x < 100 else f"{x:7.0f}x"


def format_table(results: Sequence[Result]) -> str:
    """One block per group, backends side by side: time, rate, speed-up over NumPy and over the loop.

    A speed-up is the reference's time divided by this row's time (above 1: faster).
    """
    groups: Dict[str, List[Result]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    lines: List[str] = []
    order = {b: i for i, b in enumerate(BACKENDS)}
    for group, rows in groups.items():
        lines.append(group)
        lines.append(f"  {'backend':<18} {'shape':<16} {'time':>11} {'rate':>30} {'vs numpy':>9} {'vs loop':>9}")
        for r in sorted(rows, key=lambda r: (r.shape, order.get(r.backend, 99))):
            same = [x for x in rows if x.shape == r.shape]
            ref = {x.backend: x.seconds for x in same}
            lines.append(
                f"  {BACKEND_LABELS.get(r.backend, r.backend):<18} {r.shape:<16} {_fmt_time(r.seconds):>11} {r.rate:>30} "
                f"{_ratio(ref['numpy'] / r.seconds if 'numpy' in ref else None):>9} "
                f"{_ratio(ref['loop'] / r.seconds if 'loop' in ref else None):>9}"
            )
        lines.append("")
    return "\n".join(lines)


def format_machine(info: Dict[str, Any]) -> str:
    blas = info.get("blas")
    if isinstance(blas, list):
        blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')}, "
                         f"{b.get('num_threads')} threads)" for b in blas) or "none found"
    parts = [f"cpu: {info.get('cpu')} ({info.get('logical_cpus')} logical cpus)", f"numpy {info.get('numpy')}, blas: {blas}"]
    if info.get("gpubp_blas"):
        parts.append(f"the numpy backend's products: {info['gpubp_blas']}")
    if info.get("torch"):
        parts.append(f"torch {info['torch']} ({info.get('torch_threads')} threads)")
    parts.append(f"gpu: {info.get('gpu') or 'none visible'}")
    return "\n".join(parts)


def write_json(path: str, results: Sequence[Result], info: Dict[str, Any]) -> None:
    with open(path, "w") as fh:
        json.dump({"machine": info, "results": [asdict(r) for r in results]}, fh, indent=1)


def read_results(path: str) -> Tuple[List[Result], Dict[str, Any]]:
    """Results from a ``gpubp bench --json`` file or a pytest-benchmark ``--benchmark-json`` file.

    A file of any other shape (not JSON, other keys, fields of the wrong type) is a ValueError
    naming the file and what is wrong.
    """
    try:
        with open(path) as fh:
            data = json.load(fh)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path!r} is not a JSON file ({exc})") from None
    try:
        return _parse_results(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path!r} is neither a `gpubp bench --json` file nor a pytest-benchmark JSON file of "
                         f"gpubp's benchmarks ({type(exc).__name__}: {exc})"[:500]) from None


def _result(fields: Any) -> Result:
    """A Result from its fields, each checked: names are strings, times positive numbers."""
    if not isinstance(fields, dict):
        raise TypeError(f"a result must be a mapping of its fields; got {type(fields).__name__}")
    r = Result(**fields)
    for name in ("group", "backend", "shape", "dtype"):
        if not isinstance(getattr(r, name), str):
            raise TypeError(f"result field {name!r} must be a string; got {getattr(r, name)!r}")
    for name in ("seconds", "median", "flops", "nbytes", "peak_bytes_per_s"):
        value = getattr(r, name)
        if value is None and name == "peak_bytes_per_s":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
                or (value == 0 and name in ("seconds", "median")):
            raise ValueError(f"result field {name!r} must be a finite number (> 0 for times); got {value!r}")
    if isinstance(r.rounds, bool) or not isinstance(r.rounds, int) or r.rounds < 1:
        raise ValueError(f"result field 'rounds' must be an integer >= 1; got {r.rounds!r}")
    return r


def _parse_results(data: Any) -> Tuple[List[Result], Dict[str, Any]]:
    if not isinstance(data, dict):
        raise TypeError(f"the file holds a JSON {type(data).__name__}, not an object")
    if "results" in data:
        if not isinstance(data["results"], list):
            raise TypeError("'results' must be a list")
        machine = data.get("machine", {})
        return [_result(r) for r in data["results"]], machine if isinstance(machine, dict) else {}
    if "benchmarks" not in data:
        raise KeyError("no 'results' (gpubp bench --json) or 'benchmarks' (pytest-benchmark) list")
    if not isinstance(data["benchmarks"], list):
        raise TypeError("'benchmarks' must be a list")
    results = []
    for b in data["benchmarks"]:
        extra = b.get("extra_info", {})
        if "backend" not in extra:
            continue
        stats = b["stats"]
        results.append(_result(dict(group=extra["group"], backend=extra["backend"], shape=extra["shape"],
                                    dtype=extra["dtype"], seconds=stats["min"], median=stats["median"],
                                    rounds=stats["rounds"], flops=extra.get("flops", 0.0),
                                    nbytes=extra.get("nbytes", 0.0), peak_bytes_per_s=extra.get("peak_bytes_per_s"))))
    info = data.get("machine_info", {})
    machine = info.get("gpubp", {}) if isinstance(info, dict) else {}
    return results, machine if isinstance(machine, dict) else {}


def plot_available() -> None:
    """Raise :class:`MissingExtraError` unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError('writing a PNG needs matplotlib, which is not installed: pip install "gpubp[plot]"') from None


def plot(path: str, results: Sequence[Result]) -> None:
    """A PNG: one panel per group, time per backend and shape (log scale)."""
    plot_available()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: Dict[str, List[Result]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    heights = [1.0 + 0.22 * len(rows) for rows in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, sum(heights) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (group, rows) in zip(axes[:, 0], groups.items()):
        labels = [f"{BACKEND_LABELS.get(r.backend, r.backend)} {r.shape}" for r in rows]
        ax.barh(range(len(rows)), [r.seconds * 1e3 for r in rows],
                color=[f"C{BACKENDS.index(r.backend) if r.backend in BACKENDS else 9}" for r in rows])
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xscale("log")
        times = [r.seconds * 1e3 for r in rows]
        ax.set_xlim(min(times) / 3, max(times) * 1.5)  # bars start well left of the fastest
        ax.set_xlabel("time per call (ms, log scale)", fontsize=8)
        ax.set_title(group, fontsize=9)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
