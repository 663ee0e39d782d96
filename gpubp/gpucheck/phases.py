"""What each gpucheck phase does, in its own process on the GPU machine.

* ``device``: describe the GPU and the libraries; compile (or read from the disk cache) and
  load every kernel program for float32 and float64; measure the host side of a CuPy step on
  the stand-in device (launches per step, gpubp's microseconds per launch).
* ``compare``: every kernel and full training steps, CuPy against NumPy, at the shapes of
  :data:`gpubp.gpucheck.compare.SHAPES` (they wrap every grid-stride loop on an H100/H200).
* ``tests``: ``pytest -m gpu tests`` with ``GPUBP_BACKEND=cupy``: the CuPy-parametrised cases,
  NCCL and the cross-backend tests, none of the CPU-only suites.
* ``bench``: ``pytest -m gpu benchmarks --benchmark-enable``: every CuPy benchmark timed, with
  the bias gradient's, the hot path at 8192 x 2048 x 2048 and PyTorch CUDA's training step
  beside gpubp's; the pytest-benchmark JSON goes to the output folder.
"""
from __future__ import annotations

import platform
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .compare import DTYPES, SHAPES, compare_layer_training, compare_ops, compare_training

# The pytest runs: what they select (a marker, never file names) and where they look.
TEST_ARGS: Tuple[str, ...] = ("-m", "gpu", "-q", "-rfE", "-p", "no:cacheprovider", "tests")
BENCH_ARGS: Tuple[str, ...] = ("-m", "gpu", "-q", "-p", "no:cacheprovider", "--benchmark-enable",
                               "--benchmark-max-time=0.1", "--benchmark-min-rounds=3", "benchmarks")
TRAINING_SHAPES: Tuple[Tuple[int, int], ...] = ((128, 64),) + SHAPES[1:]
# Seconds a pytest run leaves its phase to read and write results.
MARGIN_S = 5.0


def device_info() -> Dict[str, Any]:
    """GPU name, compute capability, memory, SMs, CUDA and library versions (needs a visible GPU)."""
    import cupy

    from ..ops.cuda_launcher import NvrtcCompiler

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info: Dict[str, Any] = {
        "gpu": name,
        "compute_capability": dev.compute_capability,
        "multiprocessors": int(props["multiProcessorCount"]),
        "memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
        "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "nvrtc": NvrtcCompiler().version(),
        "cupy": cupy.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = f"{torch.__version__} (cuda {torch.version.cuda}, available {torch.cuda.is_available()})"
    except ImportError:
        info["torch"] = None
    return info


def phase_device(out_dir: Path, deadline: float, root: Optional[Path]) -> Tuple[bool, str, Dict[str, Any]]:
    from ..bench import launch_overhead
    from ..ops import kernel_cache
    from ..ops.cuda_kernels import KERNELS, elementwise_activations
    from ..ops.cuda_launcher import CudaKernels

    info = device_info()
    disk = kernel_cache.default_disk_cache()
    launcher = CudaKernels(disk=disk)
    t0 = time.perf_counter()
    acts = [a.name for a in elementwise_activations()]
    for dtype in DTYPES:
        for spec in KERNELS.values():
            for act in acts if spec.per_activation else [None]:
                launcher.function(spec.name, dtype, act)
    compile_s = time.perf_counter() - t0
    programs = len(launcher.compiled)
    host = launch_overhead.measure(steps=100, repeats=5)
    cache = ("disk cache off" if disk is None else
             f"{disk.hits} read from the disk cache {disk.directory}" + (f", not written: {disk.write_errors[0]}"
                                                                         if disk.write_errors else ""))
    summary = (f"{info['gpu']}: {programs} kernel programs ready in {compile_s:.1f} s ({cache}); host side "
               f"{host['launches_per_step']} launches per SGD step, {host['host_us_per_launch']:.1f} us per launch")
    return True, summary, {"device": info, "programs": programs, "compile_seconds": compile_s,
                           "host_overhead": host}


def phase_compare(out_dir: Path, deadline: float, root: Optional[Path]) -> Tuple[bool, str, Dict[str, Any]]:
    from ..backend import use_backend

    with use_backend("cupy") as gpu, use_backend("numpy") as cpu:
        checks = (compare_ops(gpu, cpu, shapes=SHAPES) + compare_training(gpu, cpu, shapes=TRAINING_SHAPES)
                  + compare_layer_training(gpu, cpu, shapes=TRAINING_SHAPES))
    failed = [c for c in checks if not c.passed]
    worst = {d: max((c.rel_err for c in checks if c.dtype == d), default=0.0) for d in DTYPES}
    shapes = ", ".join(f"{n}x{w}" for n, w in SHAPES)
    summary = (f"{len(checks) - len(failed)}/{len(checks)} checks passed at {shapes}; worst "
               + ", ".join(f"{worst[d]:.1e} ({d})" for d in DTYPES))
    return not failed, summary, {"comparisons": [c.as_dict() for c in checks], "worst": worst}


def _pytest(args: Tuple[str, ...], out_dir: Path, name: str, deadline: float, root: Optional[Path],
            extra_env: Dict[str, str]) -> Tuple[Optional[int], Dict[str, Any]]:
    from .runner import child_env, run_subprocess

    junit = out_dir / f"{name}-junit.xml"
    if junit.exists():
        junit.unlink()
    cmd = [sys.executable, "-m", "pytest", *args, f"--junitxml={junit}"]
    env = dict(child_env(root), **extra_env)
    code = run_subprocess(cmd, deadline - time.time() - MARGIN_S, out_dir / f"phase-{name}.log", cwd=root, env=env)
    counts = junit_counts(junit) if junit.exists() else {}
    counts["command"] = " ".join(f"{k}={v}" for k, v in extra_env.items()) + " python -m pytest " + " ".join(args)
    return code, counts


def junit_counts(path: Path, max_failures: int = 10) -> Dict[str, Any]:
    """passed, failed (failures and errors), skipped, seconds and the first failed test ids of a JUnit XML file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    names: List[str] = []
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            names.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped,
            "seconds": sum(float(s.get("time", 0.0)) for s in suites), "failures": names[:max_failures]}


def _counts_line(code: Optional[int], counts: Dict[str, Any]) -> str:
    if code is None:
        return "pytest ran past the phase's deadline and was stopped"
    if "passed" not in counts:
        return f"pytest exited with status {code} and wrote no report"
    return f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"


def phase_tests(out_dir: Path, deadline: float, root: Optional[Path]) -> Tuple[bool, str, Dict[str, Any]]:
    code, counts = _pytest(TEST_ARGS, out_dir, "tests", deadline, root, {"GPUBP_BACKEND": "cupy"})
    passed = code == 0 and counts.get("failed", 1) == 0 and counts.get("passed", 0) > 0
    return passed, _counts_line(code, counts) + " (pytest -m gpu tests)", counts


def phase_bench(out_dir: Path, deadline: float, root: Optional[Path]) -> Tuple[bool, str, Dict[str, Any]]:
    from .. import bench
    from .report import headline

    raw = out_dir / "benchmarks.json"
    if raw.exists():
        raw.unlink()
    code, counts = _pytest(BENCH_ARGS + (f"--benchmark-json={raw}",), out_dir, "bench", deadline, root, {})
    details: Dict[str, Any] = {"pytest": counts}
    if raw.exists():
        results, _ = bench.read_results(str(raw))
        (out_dir / "benchmarks.md").write_text("```\n" + bench.format_table(results) + "```\n")
        details["headline"] = headline(results)
        details["cases"] = len(results)
    passed = code == 0 and counts.get("failed", 1) == 0 and details.get("cases", 0) > 0
    summary = f"{details.get('cases', 0)} cases timed ({_counts_line(code, counts)}); tables in benchmarks.md"
    return passed, summary, details


PHASE_FUNCTIONS = {"device": phase_device, "compare": phase_compare, "tests": phase_tests, "bench": phase_bench}
