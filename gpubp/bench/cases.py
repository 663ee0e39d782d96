"""The benchmarks themselves: each a :class:`Case`, a prepared, warmed-up call plus its work.

A case is built by one of the ``*_case`` functions for one backend (a column of the table):

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

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .machine import Unavailable, device_bandwidth, host_bandwidth, require_cupy, require_torch

BACKENDS = ("loop", "numpy", "gemm", "cupy", "torch")
BACKEND_LABELS = {
    "loop": "per-sample loop",
    "numpy": "numpy",
    "gemm": "numpy GEMM bound",
    "cupy": "cupy",
    "torch": "torch (cpu)",
    "gpubp": "gpubp.sklearn",
    "sklearn": "scikit-learn",
}
# The per-sample loop runs only where one call takes seconds at most.
LOOP_MAX_N = 256
LOOP_MAX_WIDTH = 2048
TRAIN_SIZES = (784, 512, 256, 10)


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


# ---- what runs where -------------------------------------------------------------------
def _check_backend(backend: str, allowed: Sequence[str]) -> None:
    if backend not in allowed:
        raise ValueError(f"backend must be one of {', '.join(allowed)} for this benchmark; got {backend!r}")


def random_array(shape: Tuple[int, ...], dtype: Any, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float64).astype(dtype)


def _device_arrays(backend: str, arrays: Sequence[np.ndarray]) -> Tuple[List[Any], Callable[[], None]]:
    """The arrays on ``backend`` and its ``sync``; PyTorch shares NumPy's memory."""
    if backend == "cupy":
        cp = require_cupy()
        stream = cp.cuda.get_current_stream()
        return [cp.asarray(a) for a in arrays], stream.synchronize
    if backend == "torch":
        torch = require_torch()
        return [torch.from_numpy(a) for a in arrays], lambda: None
    return list(arrays), lambda: None


def _ops(backend: str) -> Any:
    if backend == "cupy":
        require_cupy()
        from ..ops.cupy_ops import CupyOps

        return CupyOps()
    from ..ops.numpy_ops import NumpyOps

    return NumpyOps()


def _bare_gemm() -> Callable[[np.ndarray, np.ndarray, np.ndarray], Any]:
    """out = Delta^T A as the NumPy backend computes a product (its direct BLAS call, or NumPy's
    matmul for a small one), with nothing else: the bound the hot path is held to."""
    from ..ops.numpy_ops import NumpyOps

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
    host = [random_array((n, width), dtype, 1), random_array((n, width), dtype, 2),
            np.empty((width, width), dtype), np.empty(width, dtype)]
    (Delta, A_prev, dW, db), sync = _device_arrays(backend, host)
    if backend == "loop":
        from ..reference import average_outer_products, average_rows

        def fn() -> None:
            dW[...] = average_outer_products(Delta, A_prev)
            db[...] = average_rows(Delta)
    elif backend == "gemm":
        gemm = _bare_gemm()

        def fn() -> None:
            gemm(Delta, A_prev, dW)
    elif backend == "torch":
        torch = require_torch()

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


def activation_grad_case(backend: str, name: str, n: int = 4096, width: int = 2048, dtype: str = "float32") -> Case:
    """Delta = dA * g'(Z) (MATH.md, backward) for activation ``name`` over an (n, width) batch.

    The rate counts the least traffic the kernel can have: dA and one of Z, A read, Delta written;
    it is compared to the GPU's peak memory bandwidth, or on the CPU to what a plain copy of
    arrays of the same size reaches.
    """
    from ..activations import get_activation

    _check_backend(backend, ("numpy", "cupy"))
    act = get_activation(name)
    if not act.elementwise:
        raise ValueError(f"activation {name!r} has no elementwise derivative kernel")
    Z_host = random_array((n, width), dtype, 3)
    A_host = np.asarray(act.forward(np, Z_host), dtype=dtype)
    (dA, Z, A, out), sync = _device_arrays(backend, [random_array((n, width), dtype, 4), Z_host, A_host,
                                                     np.empty((n, width), dtype)])
    ops = _ops(backend)

    def fn() -> None:
        ops.activation_backward(dA, Z, A, act, out=out)

    itemsize = np.dtype(dtype).itemsize
    peak = device_bandwidth() if backend == "cupy" else host_bandwidth(n * width * itemsize)
    case = Case(f"activation derivative Delta = dA * g'(Z)  ({n}, {width}) {dtype}", backend, name, dtype, fn, sync,
                nbytes=3.0 * n * width * itemsize, peak_bytes_per_s=peak, gpu=backend == "cupy")
    return _warm(case)


def train_flops(sizes: Sequence[int], n: int) -> float:
    """Matrix-product work of one step: forward, dC/dW of every layer, Delta W below layer 1."""
    weights = [sizes[l] * sizes[l - 1] for l in range(1, len(sizes))]
    return 2.0 * n * (2 * sum(weights) + sum(weights[1:]))


#: The layers a training step benchmark runs between its Dense layers (see :func:`train_step_case`).
TRAIN_LAYERS = ("dense", "dropout", "batch_norm")
#: The drop probability of the ``dropout`` step.
TRAIN_DROPOUT = 0.2


#: The optimizers of the training-step cases: (gpubp's, PyTorch's name in torch.optim, settings).
TRAIN_OPTIMIZERS: Dict[str, Tuple[str, str, Dict[str, float]]] = {
    "sgd": ("SGD", "SGD", {"lr": 0.01}),
    "adam": ("Adam", "Adam", {"lr": 1e-3}),
    "adamw": ("AdamW", "AdamW", {"lr": 1e-3, "weight_decay": 0.01}),
}


def train_step_case(backend: str, n: int, optimizer: str = "sgd", dtype: str = "float32",
                    sizes: Sequence[int] = TRAIN_SIZES, layers: str = "dense", clip_norm: Optional[float] = None) -> Case:
    """One training step (forward, backward, update) of a ReLU MLP with softmax cross-entropy.

    ``layers``: ``dense`` (Dense layers only), ``dropout`` (a Dropout of p = 0.2 after each
    hidden activation) or ``batch_norm`` (a BatchNorm after each hidden layer's linear part),
    the same layers in PyTorch (``torch.nn.Dropout``, ``torch.nn.BatchNorm1d``) for its column.
    ``gemm`` runs only the step's own matrix products, on the same buffers: the BLAS bound.
    The optimizer is ``sgd`` (MATH.md's update, lr 0.01), ``adam`` (lr 1e-3) or ``adamw`` (lr 1e-3,
    decoupled decay 0.01); ``clip_norm`` clips the gradients' global norm before the update
    (``torch.nn.utils.clip_grad_norm_`` in PyTorch's column).
    """
    from .. import network, optim
    from ..backend import use_backend
    from ..layers import Dense

    _check_backend(backend, ("numpy", "gemm", "cupy", "torch"))
    if optimizer not in TRAIN_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(TRAIN_OPTIMIZERS)}; got {optimizer!r}")
    ours, theirs, settings = TRAIN_OPTIMIZERS[optimizer]
    if layers not in TRAIN_LAYERS:
        raise ValueError(f"layers must be one of {', '.join(TRAIN_LAYERS)}; got {layers!r}")
    X_host = random_array((n, sizes[0]), dtype, 5)
    y_host = np.random.default_rng(6).integers(0, sizes[-1], n)
    extra = {"dense": "", "dropout": f" +dropout {TRAIN_DROPOUT}", "batch_norm": " +batchnorm"}[layers]
    clipped = f" clip {clip_norm:g}" if clip_norm is not None else ""
    group = f"train step {'-'.join(map(str, sizes))}{extra} {optimizer}{clipped}  n={n} {dtype}"
    flops = train_flops(sizes, n)
    if backend == "cupy":
        require_cupy()
    with use_backend("cupy" if backend == "cupy" else "numpy") as be:
        net = network.MLP(list(sizes), activation="relu", loss="cross_entropy", dtype=dtype, seed=0,
                          dropout=TRAIN_DROPOUT if layers == "dropout" else 0.0, batch_norm=layers == "batch_norm")
        X, y = be.asarray(X_host), be.asarray(y_host)
    opt = getattr(optim, ours)(**settings)

    if backend in ("numpy", "cupy"):
        ops = net.backend.ops

        def fn() -> None:
            net.backprop(X, y)
            if clip_norm is not None:
                ops.clip_grad_norm(net.grads, clip_norm)
            opt.step(net)

        case = Case(group, backend, f"n={n}", dtype, fn, be.synchronize, flops=flops, gpu=backend == "cupy")
    elif backend == "gemm":
        ws = net.workspace(n)
        dense = [layer for layer in net.layers if isinstance(layer, Dense)]
        L = net.L
        net.backprop(X, y)  # realistic values in the buffers
        inputs = [X] + [ws.A[l] for l in range(1, L)]  # (what feeds each Dense: the same shapes)

        ops = net.backend.ops  # the same BLAS calls as the step's, and nothing else

        def fn() -> None:
            for l in range(1, L + 1):
                ops.linear(inputs[l - 1], dense[l - 1].W, out=ws.Z[l])
            for l in range(L, 0, -1):
                ops.grad_weights(ws.Delta[l], inputs[l - 1], out=dense[l - 1].dW)
                if l > 1:
                    ops.backprop_linear(ws.Delta[l], dense[l - 1].W, out=ws.Delta[l - 1])

        case = Case(group, backend, f"n={n}", dtype, fn, flops=flops)
    else:
        torch = require_torch()
        mods: List[Any] = []
        dense = [layer for layer in net.layers if isinstance(layer, Dense)]
        for l in range(1, len(sizes)):
            lin = torch.nn.Linear(sizes[l - 1], sizes[l]).to(getattr(torch, dtype))
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.array(dense[l - 1].W)))
                lin.bias.copy_(torch.from_numpy(np.array(dense[l - 1].b)))
            mods.append(lin)
            if l < len(sizes) - 1:
                if layers == "batch_norm":
                    mods.append(torch.nn.BatchNorm1d(sizes[l], momentum=0.1, eps=1e-5).to(getattr(torch, dtype)))
                mods.append(torch.nn.ReLU())
                if layers == "dropout":
                    mods.append(torch.nn.Dropout(TRAIN_DROPOUT))
        model = torch.nn.Sequential(*mods).train()
        topt = getattr(torch.optim, theirs)(model.parameters(), **settings)
        tX, ty = torch.from_numpy(X_host), torch.from_numpy(y_host)
        params = list(model.parameters())

        def fn() -> None:
            topt.zero_grad()
            torch.nn.functional.cross_entropy(model(tX), ty).backward()
            if clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            topt.step()

        case = Case(group, backend, f"n={n}", dtype, fn, flops=flops)
    return _warm(case, 3)


def epoch_case(backend: str) -> Case:
    """One epoch of ``gpubp train``'s default workload (the recipe of :class:`gpubp.recipe.TrainConfig`)."""
    from ..backend import use_backend
    from ..recipe import TrainConfig

    _check_backend(backend, ("numpy", "cupy"))
    if backend == "cupy":
        require_cupy()
    config = TrainConfig()
    data = config.load()
    sizes = config.sizes(data)
    with use_backend(backend) as be:
        net = config.make_network(data)
        X, Y = be.asarray(data.X_train), be.asarray(data.Y_train)
    optimizer = config.make_optimizer()

    def fn() -> None:
        net.fit(X, Y, epochs=1, batch_size=config.batch_size, optimizer=optimizer, progress=False)

    n = data.X_train.shape[0]
    flops = n * train_flops(sizes, 1)
    shape = f"{'-'.join(map(str, sizes))} batch {config.batch_size}, {n} samples"
    case = Case(f"gpubp train default workload: one epoch ({config.optimizer}, {config.dtype})", backend, shape,
                config.dtype, fn, be.synchronize, flops=flops, gpu=backend == "cupy")
    return _warm(case, 1)


# ---- what the command runs -------------------------------------------------------------
CORE_HOT_PATH = ((32, 512), (256, 128), (256, 512), (256, 2048), (4096, 512), (4096, 2048))
CORE_ACTIVATION_SHAPE = (2048, 512)
CORE_TRAIN = ((256, "sgd"), (256, "adam"))
CORE_LAYER_TRAIN = ((256, "sgd", "dropout"), (256, "sgd", "batch_norm"))


def core_cases(backends: Sequence[str]) -> Iterable[Callable[[], Case]]:
    """The core comparison of ``gpubp bench`` (about a minute on two cores), as case builders."""
    from ..activations import ELEMENTWISE

    for n, width in CORE_HOT_PATH:
        for b in backends:
            yield lambda b=b, n=n, width=width: hot_path_case(b, n, width)
    for n, opt in CORE_TRAIN:
        for b in backends:
            if b != "loop":
                yield lambda b=b, n=n, opt=opt: train_step_case(b, n, opt)
    for n, opt, layers in CORE_LAYER_TRAIN:
        for b in backends:
            if b != "loop":
                yield lambda b=b, n=n, opt=opt, layers=layers: train_step_case(b, n, opt, layers=layers)
    for name in ELEMENTWISE:
        for b in backends:
            if b in ("numpy", "cupy"):
                yield lambda b=b, name=name: activation_grad_case(b, name, *CORE_ACTIVATION_SHAPE)
    for b in backends:
        if b in ("numpy", "cupy"):
            yield lambda b=b: epoch_case(b)
