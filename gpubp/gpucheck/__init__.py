"""``python -m gpubp.gpucheck``: the acceptance run on a CUDA GPU, within one time budget.

From a source checkout, with no install step (``PYTHONPATH=. python -m gpubp.gpucheck
--output DIR``), it runs four phases, each in its own process under its own timeout, all
within :data:`TOTAL_BUDGET_S` (6 minutes); ``--phases`` picks some, ``--limit PHASE=SECONDS``
gives one another timeout and ``--budget`` the whole run another limit:

1. ``device``: the GPU and library versions; every kernel program compiled (or read from the
   disk cache) and loaded, float32 and float64; the host side of a CuPy step.
2. ``compare``: every kernel and full training steps against NumPy, at shapes that wrap
   every grid-stride loop (normwise relative error below 1e-5 in float32, 1e-12 in float64).
3. ``tests``: the GPU-touching tests (``pytest -m gpu tests``, on the CuPy backend).
4. ``bench``: the CuPy benchmarks timed (``pytest -m gpu benchmarks --benchmark-enable``),
   PyTorch CUDA's training step and hot path beside gpubp's.

It prints a line per phase and writes ``gpucheck.md`` (one screen), ``gpucheck.json``,
``benchmarks.json`` (pytest-benchmark's), ``benchmarks.md`` and each phase's log into the
output folder (default ``benchmarks/results/gpucheck-<gpu>-<date>/``). The exit status is 0
when every phase passed, 1 when anything failed or ran out of time, and 2 without a GPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from ..activations import ELEMENTWISE
from .compare import (DTYPES, HEADS, LAYER_TRAINING_CASES, SHAPES, TOLERANCES, TRAINING_CASES, Check,
                      compare_layer_training, compare_ops, compare_training, rel_err)
from .report import headline, render_markdown
from .runner import Phase, PhaseResult, run_phases, write_phase_result

__all__ = ["Check", "DTYPES", "ELEMENTWISE", "HEADS", "LAYER_TRAINING_CASES", "PHASES", "SHAPES", "TOLERANCES",
           "TOTAL_BUDGET_S", "TRAINING_CASES", "compare_layer_training", "compare_ops", "compare_training", "headline",
           "main", "rel_err", "render_markdown"]

#: The whole run's limit in seconds: 6 minutes of a GPU loan of about 15.
TOTAL_BUDGET_S = 360.0
PHASES = (
    Phase("device", 30.0, "the GPU, every kernel compiled and loaded, the host side of a step"),
    Phase("compare", 80.0, "every kernel and training steps against NumPy, wrapping shapes included"),
    Phase("tests", 150.0, "the GPU-touching tests (pytest -m gpu tests) on the CuPy backend"),
    Phase("bench", 90.0, "the CuPy benchmarks timed, PyTorch CUDA beside them"),
)


def source_root() -> Optional[Path]:
    """The checkout this gpubp runs from (with ``tests/`` and ``benchmarks/``), or None for an install."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "tests").is_dir() and (root / "pyproject.toml").is_file() else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "gpu"


def _gpu_name() -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
    return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])


def build_report(results: Sequence[PhaseResult], date: str, budget_s: float, seconds: float,
                 gpu: str = "") -> Dict[str, Any]:
    device = next((r.details.get("device") for r in results if r.name == "device" and r.details.get("device")), None)
    return {"date": date, "device": device or {"gpu": gpu}, "passed": bool(results) and all(r.passed for r in results),
            "budget_s": budget_s, "seconds": seconds, "phases": [r.as_dict() for r in results]}


def _run_phase(name: str, out: Path, deadline: float) -> int:
    """One phase, in this (child) process; its result goes to ``phase-NAME.json``."""
    from .phases import PHASE_FUNCTIONS

    try:
        passed, summary, details = PHASE_FUNCTIONS[name](out, deadline, source_root())
    except Exception as exc:  # reported, not raised: the driver reads the result file
        traceback.print_exc()
        passed, summary, details = False, f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300], {}
    write_phase_result(out, name, passed, summary, details)
    return 0 if passed else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpubp.gpucheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=None,
                        help="folder for the report (default benchmarks/results/gpucheck-<gpu>-<date>)")
    parser.add_argument("--phases", default=",".join(p.name for p in PHASES),
                        help=f"comma-separated subset of {','.join(p.name for p in PHASES)} (default: all)")
    parser.add_argument("--budget", type=float, default=TOTAL_BUDGET_S, help="seconds for the whole run (default 360)")
    parser.add_argument("--limit", action="append", default=[], metavar="PHASE=SECONDS",
                        help="another timeout for one phase, e.g. --limit tests=240 (repeatable)")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)  # a phase's own process
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase is not None:
        return _run_phase(args.phase, args.output, args.deadline or time.time() + TOTAL_BUDGET_S)

    names = [n.strip() for n in args.phases.split(",") if n.strip()]
    unknown = [n for n in names if n not in {p.name for p in PHASES}]
    if unknown or not names:
        parser.error(f"--phases: unknown {', '.join(unknown) or '(none given)'}; expected names from "
                     f"{', '.join(p.name for p in PHASES)}")
    limits = {}
    for item in args.limit:
        name, _, value = item.partition("=")
        try:
            limits[name.strip()] = float(value)
        except ValueError:
            parser.error(f"--limit: expected PHASE=SECONDS, e.g. tests=240; got {item!r}")
        if name.strip() not in {p.name for p in PHASES} or not 0 < limits[name.strip()] < math.inf:
            parser.error(f"--limit: expected a phase of {', '.join(p.name for p in PHASES)} and seconds > 0; got {item!r}")
    if not 0 < args.budget < math.inf:  # checked here, not after the GPU is found: device time is short
        parser.error(f"--budget: expected seconds > 0 for the whole run; got {args.budget!r}")
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {str(args.output)!r} is a file; name a folder for the report")
    phases = [dataclasses.replace(p, budget_s=limits.get(p.name, p.budget_s)) for p in PHASES if p.name in names]
    from ..backend import cupy_problem

    problem = cupy_problem()
    if problem is not None:
        print(f"gpucheck needs a CUDA GPU and refuses to run without one: {problem}", file=sys.stderr)
        return 2
    gpu = _gpu_name()
    date = _dt.date.today().isoformat()
    root = source_root()
    out = (args.output or (root or Path.cwd()) / "benchmarks" / "results" / f"gpucheck-{_slug(gpu)}-{date}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    results = run_phases(phases, out, args.budget, root=root)
    report = build_report(results, date, args.budget, time.monotonic() - start, gpu)
    (out / "gpucheck.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = render_markdown(report)
    (out / "gpucheck.md").write_text(text)
    print("\n" + text)
    print(f"{'PASS' if report['passed'] else 'FAIL'}: report in {out}")
    return 0 if report["passed"] else 1
