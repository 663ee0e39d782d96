"""``python -m gpubp.gpucheck``: the acceptance run on a CUDA GPU, written to a report file.

It refuses (exit status 2) when no CUDA GPU is visible. Otherwise, from a source checkout:

1. runs the test suite (``tests/``) with ``GPUBP_BACKEND=cupy``;
2. compares every hot operation of the CuPy backend (every activation forward and backward,
   every loss head, dC/dW, dC/db, SGD with and without (Nesterov) momentum, Adam) and full
   training steps with the NumPy backend, on the same inputs: the normwise relative error
   max|cupy - numpy| / max|numpy| must stay below 1e-5 in float32 and 1e-12 in float64, and
   NaN must appear in the same places;
3. runs the benchmark suite (``benchmarks/``) on the CuPy backend, when it exists;

and writes a Markdown report (and the same data as JSON beside it) named with the GPU and
the date, by default ``benchmarks/results/gpucheck-<gpu>-<date>.md``. The exit status is 0
when everything passed and 1 otherwise.

The comparison functions take any two backends, so they also run (NumPy against NumPy, or
against the host build of the kernels) in the CPU test suite.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .activations import ACTIVATIONS, ELEMENTWISE
from .backend import Backend, cupy_problem, use_backend
from .losses import LOSSES
from .optim import AdamHyperparameters, SGDHyperparameters

TOLERANCES: Dict[str, float] = {"float32": 1e-5, "float64": 1e-12}
DTYPES = tuple(TOLERANCES)
HEADS = (
    [("sse", a) for a in ELEMENTWISE + ("softmax",)]
    + [("mse", a) for a in ELEMENTWISE + ("softmax",)]
    + [("cross_entropy", "softmax"), ("cross_entropy:labels", "softmax"), ("binary_cross_entropy", "sigmoid")]
)


@dataclass
class Check:
    """One comparison: ``rel_err`` against the tolerance of its dtype."""

    name: str
    dtype: str
    rel_err: float
    tol: float

    @property
    def passed(self) -> bool:
        return self.rel_err < self.tol

    def as_dict(self) -> Dict[str, Any]:
        return {**dataclasses.asdict(self), "passed": self.passed}


def rel_err(got: Any, want: Any) -> float:
    """max|got - want| / max|want| over the finite entries (normwise relative error); ``inf``
    when the shapes differ, NaN or infinities are not in the same places, or infinities differ."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    nan = np.isnan(want)
    if not np.array_equal(np.isnan(got), nan):
        return float("inf")
    inf = np.isinf(want) | np.isinf(got)
    if not np.array_equal(got[inf], want[inf]):
        return float("inf")
    fin = ~(nan | inf)
    if not fin.any():
        return 0.0
    scale = float(np.abs(want[fin]).max())
    diff = float(np.abs(got[fin] - want[fin]).max())
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _targets(loss_key: str, n: int, m: int, dtype: str, rng: np.random.Generator) -> np.ndarray:
    if loss_key == "cross_entropy:labels":
        return rng.integers(0, m, n).astype(np.int64)
    if loss_key == "cross_entropy":
        return np.eye(m, dtype=dtype)[rng.integers(0, m, n)]
    if loss_key == "binary_cross_entropy":
        return rng.uniform(size=(n, m)).astype(dtype)
    return rng.normal(size=(n, m)).astype(dtype)


def compare_ops(candidate: Backend, reference: Backend, dtypes: Sequence[str] = DTYPES, n: int = 257,
                width: int = 131, seed: int = 0) -> List[Check]:
    """Every hot operation of ``candidate.ops`` against ``reference.ops`` on the same inputs."""
    checks: List[Check] = []
    rng = np.random.default_rng(seed)
    c, r = candidate, reference

    def run(backend: Backend, fn: Any, *arrays: np.ndarray) -> List[np.ndarray]:
        """Call ``fn(ops, *arrays on the backend)``; returns every array argument afterwards, on the host."""
        moved = [backend.asarray(a).copy() if isinstance(a, np.ndarray) else a for a in arrays]
        result = fn(backend.ops, *moved)
        backend.synchronize()
        outs = [backend.to_numpy(a) for a in moved if a is not None and not np.isscalar(a)]
        if result is not None:
            outs.append(backend.to_numpy(result))
        return outs

    def compare(name: str, dtype: str, fn: Any, *arrays: Any) -> None:
        got, want = run(c, fn, *arrays), run(r, fn, *arrays)
        err = max((rel_err(g, w) for g, w in zip(got, want)), default=0.0)
        checks.append(Check(name, dtype, err, TOLERANCES[dtype]))

    for dtype in dtypes:
        Z = (rng.normal(size=(n, width)) * 3.0).astype(dtype)
        Z[0, :4] = [0.0, -0.0, 40.0, -40.0]
        b = rng.normal(size=width).astype(dtype)
        dA = rng.normal(size=(n, width)).astype(dtype)
        for name, act in ACTIVATIONS.items():
            A = np.empty_like(Z)
            compare(f"forward {name}, bias", dtype, lambda o, Z, b, A, act=act: o.bias_activation(Z, b, act, A), Z, b, A)
            compare(f"forward {name}, no bias", dtype, lambda o, Z, A, act=act: o.bias_activation(Z, None, act, A), Z, A)
            with np.errstate(all="ignore"):
                A = act.forward(np, Z).astype(dtype)
            compare(f"backward {name}", dtype, lambda o, dA, Z, A, act=act: o.activation_backward(dA, Z, A, act, dA), dA, Z, A)
        m = 10
        Zo = (rng.normal(size=(n, m)) * 3.0).astype(dtype)
        for loss_key, act_name in HEADS:
            loss, act = LOSSES[loss_key.split(":")[0]], ACTIVATIONS[act_name]
            Y = _targets(loss_key, n, m, dtype, rng)
            with np.errstate(all="ignore"):
                A = act.forward(np, Zo).astype(dtype)
            Delta = np.empty_like(Zo)
            compare(f"loss head {loss_key} / {act_name}", dtype,
                    lambda o, Z, A, Y, D, loss=loss, act=act: o.loss_head(loss, act, Z, A, Y, D), Zo, A, Y, Delta)
        A_prev = rng.normal(size=(n, 67)).astype(dtype)
        compare("dC/dW (1/n) Delta^T A", dtype, lambda o, D, Ap, out: o.grad_weights(D, Ap, out), dA, A_prev,
                np.empty((width, 67), dtype=dtype))
        compare("dC/db (1/n) sum Delta", dtype, lambda o, D, out: o.grad_bias(D, out), dA, np.empty(width, dtype=dtype))
        p = rng.normal(size=50_001).astype(dtype)
        g = (rng.normal(size=p.size) * 0.1).astype(dtype)
        for label, mom, nest, wd in (("SGD", 0.0, False, 0.0), ("SGD + decay", 0.0, False, 1e-2),
                                     ("SGD momentum", 0.9, False, 0.0), ("SGD Nesterov + decay", 0.9, True, 5e-4)):
            v = np.ones_like(p) * 0.01 if mom else None
            sgd = SGDHyperparameters(lr=0.1, momentum=mom, nesterov=nest, weight_decay=wd)
            compare(label, dtype, lambda o, p, g, v, sgd=sgd: o.sgd_update(p, g, v, sgd), p, g, v)
        for wd in (0.0, 1e-2):
            m1, v1 = (g * 0.1).astype(dtype), (g * g).astype(dtype)
            adam = AdamHyperparameters(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
            compare(f"Adam step 3, decay {wd}", dtype,
                    lambda o, p, g, m1, v1, adam=adam: o.adam_update(p, g, m1, v1, 3, adam), p, g, m1, v1)
    return checks


TRAINING_CASES = (
    ("sse", "sigmoid", ("relu", "tanh", "sigmoid")),
    ("mse", "identity", ("leaky_relu", "elu", "softplus")),
    ("cross_entropy", "softmax", ("gelu", "gelu_tanh", "silu")),
    ("binary_cross_entropy", "sigmoid", ("identity", "relu", "tanh")),
)


def compare_training(candidate: Backend, reference: Backend, dtypes: Sequence[str] = DTYPES, steps: int = 2,
                     seed: int = 0) -> List[Check]:
    """Full training steps (forward, loss head, backward, optimizer) of the same network on both
    backends: the loss of every step, the gradients of the first step, and the parameters after
    the last SGD step.

    Parameters after Adam steps are not compared elementwise: Adam divides each gradient entry
    by its own running magnitude, so an entry of ~1e-9 whose last bits differ between two
    correct implementations can move its weight by up to lr either way. Their effect still
    shows in the losses of the later steps.
    """
    from .network import MLP
    from .optim import SGD, Adam

    checks: List[Check] = []
    rng = np.random.default_rng(seed)
    for dtype in dtypes:
        tol = TOLERANCES[dtype]
        for loss, out, hidden in TRAINING_CASES:
            X = rng.normal(size=(128, 48))
            Y = _targets("cross_entropy:labels" if loss == "cross_entropy" else loss, 128, 10, "float64", rng)
            for opt_name in ("adam", "nesterov"):
                results = []
                for backend in (candidate, reference):
                    with use_backend("numpy"):
                        net = MLP([48, 64, 64, 64, 10], activation=list(hidden), output_activation=out, loss=loss,
                                  dtype=dtype, seed=seed)
                    flat = net.backend.to_numpy(net.params).copy()
                    net.backend = backend
                    net._build(flat)
                    opt = Adam(1e-3) if opt_name == "adam" else SGD(0.05, momentum=0.9, nesterov=True)
                    Xb, Yb = backend.asarray(X), backend.asarray(Y)
                    losses = [float(net.train_step(Xb, Yb, opt))]
                    grads = backend.to_numpy(net.grads).copy()
                    losses += [float(net.train_step(Xb, Yb, opt)) for _ in range(steps - 1)]
                    results.append((losses, grads, backend.to_numpy(net.params)))
                (lc, gc, pc), (lr_, gr, pr) = results
                name = f"training {loss}/{out}, hidden {'+'.join(hidden)}, {opt_name}"
                checks.append(Check(f"{name}: loss of {steps} steps", dtype, rel_err(lc, lr_), tol))
                checks.append(Check(f"{name}: gradients", dtype, rel_err(gc, gr), tol))
                if opt_name != "adam":
                    checks.append(Check(f"{name}: parameters", dtype, rel_err(pc, pr), tol))
    return checks


# ---- the command -----------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "gpu"


def device_info() -> Dict[str, Any]:
    """GPU name, compute capability, CUDA and library versions (needs a visible GPU)."""
    import cupy

    from .ops.cuda_kernels import nvrtc_module

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {
        "gpu": name,
        "compute_capability": dev.compute_capability,
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "nvrtc": ".".join(map(str, nvrtc_module().getVersion())),
        "cupy": cupy.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _run_pytest(args: Sequence[str], env_backend: str = "cupy") -> Dict[str, Any]:
    env = dict(os.environ, GPUBP_BACKEND=env_backend)
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], capture_output=True, text=True, env=env)
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    return {"command": f"GPUBP_BACKEND={env_backend} python -m pytest {' '.join(args)}", "returncode": proc.returncode,
            "summary": lines[-1] if lines else proc.stderr.strip()[-500:], "passed": proc.returncode == 0}


def _has_benchmarks(root: Path) -> bool:
    folder = root / "benchmarks"
    return folder.is_dir() and any(any(folder.rglob(pattern)) for pattern in ("bench_*.py", "test_*.py"))


def render_markdown(report: Dict[str, Any]) -> str:
    """The report as Markdown."""
    info = report["device"]
    lines = [f"# gpucheck: {info.get('gpu', '?')}, {report['date']}", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", f"Overall: **{'PASS' if report['passed'] else 'FAIL'}**", ""]
    for key, title in (("tests", "Test suite on the CuPy backend"), ("benchmarks", "Benchmarks on the CuPy backend")):
        part = report.get(key)
        lines += [f"## {title}", ""]
        if part is None or part.get("skipped"):
            lines += [f"Skipped: {part.get('skipped') if part else 'not run'}", ""]
        else:
            lines += [f"`{part['command']}`: {part['summary']} (exit status {part['returncode']})", ""]
            if part.get("json"):
                lines += [f"Raw results: `{part['json']}`", ""]
    lines += ["## CuPy against NumPy", "", "max|cupy - numpy| / max|numpy|; tolerance 1e-5 (float32), 1e-12 (float64).", "",
              "| check | dtype | rel. error | pass |", "|---|---|---|---|"]
    for chk in report["comparisons"]:
        lines.append(f"| {chk['name']} | {chk['dtype']} | {chk['rel_err']:.2e} | {'yes' if chk['passed'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpubp.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=None,
                        help="report path (.md; the JSON goes beside it); default benchmarks/results/gpucheck-<gpu>-<date>.md")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the test suite")
    parser.add_argument("--skip-benchmarks", action="store_true", help="do not run the benchmark suite")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the source checkout (default: the current folder)")
    args = parser.parse_args(argv)

    problem = cupy_problem()
    if problem is not None:
        print(f"gpucheck needs a CUDA GPU and refuses to run without one: {problem}", file=sys.stderr)
        return 2
    info = device_info()
    date = _dt.date.today().isoformat()
    out = args.output or args.root / "benchmarks" / "results" / f"gpucheck-{_slug(info['gpu'])}-{date}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    report: Dict[str, Any] = {"date": date, "device": info}

    if args.skip_tests:
        report["tests"] = {"skipped": "--skip-tests"}
    elif (args.root / "tests").is_dir():
        print("running the test suite on the CuPy backend ...", flush=True)
        report["tests"] = _run_pytest(["-q", "-p", "no:cacheprovider", str(args.root / "tests")])
    else:
        report["tests"] = {"skipped": f"no tests/ folder under {args.root} (run from a source checkout)"}

    print("comparing every kernel and full training steps with NumPy ...", flush=True)
    with use_backend("cupy") as cp_backend, use_backend("numpy") as np_backend:
        checks = compare_ops(cp_backend, np_backend) + compare_training(cp_backend, np_backend)
    report["comparisons"] = [c.as_dict() for c in checks]

    if args.skip_benchmarks:
        report["benchmarks"] = {"skipped": "--skip-benchmarks"}
    elif _has_benchmarks(args.root):
        print("running the benchmarks on the CuPy backend ...", flush=True)
        bench_json = out.with_name(out.stem + "-benchmarks.json")
        report["benchmarks"] = _run_pytest(["-q", "-p", "no:cacheprovider", str(args.root / "benchmarks"),
                                            f"--benchmark-json={bench_json}"])
        report["benchmarks"]["json"] = bench_json.name
    else:
        report["benchmarks"] = {"skipped": f"no benchmark suite under {args.root / 'benchmarks'}"}

    parts = [report["tests"], report["benchmarks"]]
    report["passed"] = all(c.passed for c in checks) and all(p.get("passed", True) for p in parts)
    out.write_text(render_markdown(report))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    failed = [c for c in checks if not c.passed]
    for c in failed:
        print(f"FAILED {c.name} [{c.dtype}]: rel. error {c.rel_err:.2e} >= {c.tol:.0e}", file=sys.stderr)
    print(f"{'PASS' if report['passed'] else 'FAIL'}: report written to {out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
