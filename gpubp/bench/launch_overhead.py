"""The host side of a CuPy training step, measured without a GPU.

A small network's step on a GPU is bound by the Python that prepares each launch, not by the
GPU. This runs the CuPy path (``CupyOps`` and its launcher, unchanged) on
:class:`gpubp.ops.standin.StandInDevice`, whose launches are checked, counted and skipped,
and reports per training step: the launches (kernels and cuBLAS products), gpubp's own host
time, and that time per launch. The stand-in's own checks are timed apart and left out, so
the figures are the Python gpubp runs per step, as on a GPU (where CuPy's launch calls and
the driver add their own microseconds on top).

``python -m gpubp.bench.launch_overhead`` prints them for a 784-512-256-10 ReLU network with
softmax cross-entropy at batch 256 (``--json FILE`` keeps them).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .cases import TRAIN_SIZES


def step_setup(sizes: Sequence[int] = TRAIN_SIZES, n: int = 256, optimizer: str = "sgd",
               dtype: str = "float32") -> Dict[str, Any]:
    """A network on a new stand-in device, a batch and an optimizer, warmed up (programs
    loaded, workspaces allocated, first-call checks done)."""
    from ..backend import use_backend
    from ..network import MLP
    from ..ops.standin import standin_backend
    from ..optim import SGD, Adam

    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam'; got {optimizer!r}")
    backend = standin_backend()
    with use_backend(backend):
        net = MLP(list(sizes), activation="relu", loss="cross_entropy", dtype=dtype, seed=0)
    X = np.zeros((n, sizes[0]), dtype=dtype)
    y = np.zeros(n, dtype=np.int64)
    opt = SGD(lr=0.01) if optimizer == "sgd" else Adam(lr=1e-3)

    def step() -> None:
        net.backprop(X, y)
        opt.step(net)

    for _ in range(3):
        step()
    return {"step": step, "device": backend.ops.kernels.device, "net": net}


def measure(sizes: Sequence[int] = TRAIN_SIZES, n: int = 256, optimizer: str = "sgd", dtype: str = "float32",
            steps: int = 200, repeats: int = 7) -> Dict[str, Any]:
    """Launches per step and gpubp's host microseconds per step and per launch (best of
    ``repeats`` runs of ``steps`` steps, garbage collection paused while timing)."""
    setup = step_setup(sizes, n, optimizer, dtype)
    step, device = setup["step"], setup["device"]
    device.reset()
    step()
    per_step = dict(device.kernels)
    launches = device.launches
    best = standin = float("inf")
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            device.reset()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            total = time.perf_counter() - t0
            if (total - device.seconds) / steps < best:
                best, standin = (total - device.seconds) / steps, device.seconds / steps
            if device.launches != launches * steps:
                raise RuntimeError(f"launches per step changed: {device.launches / steps} after {launches}")
    finally:
        if enabled:
            gc.enable()
    return {
        "network": "-".join(map(str, sizes)), "n": n, "optimizer": optimizer, "dtype": dtype,
        "launches_per_step": launches, "kernels_per_step": per_step,
        "host_us_per_step": best * 1e6, "host_us_per_launch": best * 1e6 / launches,
        "standin_us_per_step": standin * 1e6, "steps": steps, "repeats": repeats,
    }


def format_result(r: Dict[str, Any]) -> str:
    kernels = ", ".join(f"{k} {v}" for k, v in sorted(r["kernels_per_step"].items()))
    return (f"{r['network']} {r['optimizer']} n={r['n']} {r['dtype']}: {r['launches_per_step']} launches per step "
            f"({kernels}); gpubp's host time {r['host_us_per_step']:.1f} us per step, "
            f"{r['host_us_per_launch']:.2f} us per launch (stand-in checks left out: "
            f"{r['standin_us_per_step']:.1f} us per step)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpubp.bench.launch_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[256], help="batch sizes (default 256)")
    parser.add_argument("--optimizer", nargs="+", default=["sgd", "adam"], choices=["sgd", "adam"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    for option, values in (("--n", args.n), ("--steps", [args.steps]), ("--repeats", [args.repeats])):
        if min(values) < 1:
            parser.error(f"{option}: expected integers >= 1; got {' '.join(map(str, values))}")
    if args.json:  # checked before measuring, so that no result is lost
        folder = os.path.dirname(os.path.abspath(args.json))
        if os.path.isdir(args.json) or not os.path.isdir(folder):
            parser.error(f"--json {args.json!r}: expected a file in an existing folder")
    results = []
    for n in args.n:
        for opt in args.optimizer:
            results.append(measure(n=n, optimizer=opt, steps=args.steps, repeats=args.repeats))
            print(format_result(results[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
