"""GPU benchmark cases beside :mod:`gpubp.bench.cases` (same :class:`~gpubp.bench.Case`, same tables).

* ``bias_grad_case``: dC/db^(l) = (1/n) sum_rows Delta^(l) three ways on the GPU: gpubp's
  column reduction (``cupy``: one launch, or two for a tall Delta, see
  :func:`gpubp.ops.cuda_kernels.column_chunks`), CuPy's own ``Delta.sum(axis=0)``
  (``cupy-sum``), and the same layer's dC/dW = (1/n) Delta^T A GEMM (``cupy-gemm``), the
  product the bias gradient is computed beside, as the scale it is measured against.
* ``torch_cuda_train_step_case`` and ``torch_cuda_hot_path_case``: PyTorch CUDA eager on the
  same GPU, for comparison only (gpubp never depends on PyTorch). Their groups are those of
  :func:`~gpubp.bench.cases.train_step_case` and :func:`~gpubp.bench.cases.hot_path_case`, so
  the tables put them beside gpubp's CuPy rows.

Each needs a visible GPU (and PyTorch with CUDA for the ``torch-cuda`` rows); otherwise it
raises :class:`~gpubp.bench.machine.Unavailable`.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

from .cases import TRAIN_SIZES, Case, _device_arrays, _ops, _warm, random_array, train_flops
from .machine import Unavailable, device_bandwidth, require_cupy, require_torch

BIAS_VARIANTS = ("cupy", "cupy-sum", "cupy-gemm")


def _torch_cuda() -> Any:
    torch = require_torch()
    if not torch.cuda.is_available():
        raise Unavailable("PyTorch has no CUDA device here (the torch-cuda rows need a CUDA build of PyTorch)")
    return torch


def bias_grad_group(n: int, width: int, dtype: str) -> str:
    return f"bias gradient dC/db  n={n} width={width} {dtype}"


def bias_grad_case(variant: str, n: int, width: int, dtype: str = "float32") -> Case:
    """dC/db of an (n, width) Delta by gpubp's kernel, by ``Delta.sum(axis=0)``, or (as the
    scale) the layer's dC/dW GEMM against an (n, width) A^(l-1)."""
    if variant not in BIAS_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(BIAS_VARIANTS)}; got {variant!r}")
    require_cupy()  # before drawing the data: a machine without a GPU skips at once
    (Delta, A_prev, dW, db), sync = _device_arrays("cupy", [random_array((n, width), dtype, 1),
                                                                  random_array((n, width), dtype, 2),
                                                                  np.empty((width, width), dtype),
                                                                  np.empty(width, dtype)])
    ops = _ops("cupy")
    itemsize = np.dtype(dtype).itemsize
    group = bias_grad_group(n, width, dtype)
    if variant == "cupy-gemm":
        def fn() -> None:
            ops.grad_weights(Delta, A_prev, out=dW)

        case = Case(group, variant, f"({n}, {width})", dtype, fn, sync, flops=2.0 * n * width * width, gpu=True,
                          outputs=(dW,))
    else:
        if variant == "cupy":
            def fn() -> None:
                ops.grad_bias(Delta, out=db)
        else:
            def fn() -> None:
                Delta.sum(axis=0, out=db)

        case = Case(group, variant, f"({n}, {width})", dtype, fn, sync, nbytes=float(n * width * itemsize),
                          peak_bytes_per_s=device_bandwidth(), gpu=True, outputs=(db,))
    return _warm(case)


def torch_cuda_train_step_case(n: int, optimizer: str = "sgd", dtype: str = "float32",
                               sizes: Sequence[int] = TRAIN_SIZES) -> Case:
    """One step (zero_grad, forward, cross-entropy, backward, optimizer) of the same ReLU MLP
    as :func:`gpubp.bench.train_step_case`, with the same initial weights, in PyTorch CUDA eager."""
    from ..backend import use_backend
    from ..network import MLP

    torch = _torch_cuda()
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {optimizer!r}")
    with use_backend("numpy"):
        net = MLP(list(sizes), activation="relu", loss="cross_entropy", dtype=dtype, seed=0)
    dev = torch.device("cuda")
    mods: List[Any] = []
    for l in range(1, len(sizes)):
        lin = torch.nn.Linear(sizes[l - 1], sizes[l]).to(device=dev, dtype=getattr(torch, dtype))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(net.layers[l].W)))
            lin.bias.copy_(torch.from_numpy(np.array(net.layers[l].b)))
        mods += [lin, torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods[:-1])
    opt = (torch.optim.SGD(model.parameters(), lr=0.01) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3))
    X = torch.from_numpy(random_array((n, sizes[0]), dtype, 5)).to(dev)
    y = torch.from_numpy(np.random.default_rng(6).integers(0, sizes[-1], n)).to(dev)

    def fn() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()

    group = f"train step {'-'.join(map(str, sizes))} {optimizer}  n={n} {dtype}"
    case = Case(group, "torch-cuda", f"n={n}", dtype, fn, torch.cuda.synchronize,
                      flops=train_flops(sizes, n))
    return _warm(case, 3)


def torch_cuda_hot_path_case(n: int, width: int, dtype: str = "float32") -> Case:
    """dC/dW = (1/n) Delta^T A and dC/db = mean_rows Delta in PyTorch CUDA (addmm, mean)."""
    torch = _torch_cuda()
    dev = torch.device("cuda")
    Delta = torch.from_numpy(random_array((n, width), dtype, 1)).to(dev)
    A_prev = torch.from_numpy(random_array((n, width), dtype, 2)).to(dev)
    dW = torch.empty((width, width), dtype=Delta.dtype, device=dev)
    db = torch.empty(width, dtype=Delta.dtype, device=dev)

    def fn() -> None:
        torch.addmm(dW, Delta.T, A_prev, beta=0.0, alpha=1.0 / n, out=dW)
        torch.mean(Delta, 0, out=db)

    case = Case(f"hot path dC/dW, dC/db  n={n} width={width} {dtype}", "torch-cuda", f"({n}, {width})", dtype,
                      fn, torch.cuda.synchronize, flops=2.0 * n * width * width + n * width, outputs=(dW, db))
    return _warm(case)
