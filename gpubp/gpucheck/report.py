"""gpucheck's report: one screen of Markdown (the phases, the failures, the headline timings),
and the full record as JSON beside it."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence

TRAIN_NETWORK = "784-512-256-10"
HOT_PATH = (8192, 2048)
# The groups of gpubp.bench's cases the headline picks (tests check them against the builders).
TRAIN_GROUP = re.compile(rf"train step {TRAIN_NETWORK} (\w+)\s+n=(\d+) float32$")
HOT_PATH_GROUP = re.compile(r"hot path dC/dW, dC/db\s+n=(\d+) width=(\d+) float32$")
BIAS_GROUP = re.compile(r"bias gradient dC/db\s+n=(\d+) width=(\d+) float32$")
MAX_FAILURES_PER_PHASE = 3


def _time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    return f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def headline(results: Sequence[Any]) -> Dict[str, List[Dict[str, Any]]]:
    """The numbers the report leads with, from :class:`gpubp.bench.Result` rows: the training
    step of 784-512-256-10 (gpubp on CuPy and PyTorch CUDA), the hot path's TFLOP/s at
    8192 x 2048 x 2048, and the bias gradient against ``Delta.sum`` and the dC/dW GEMM."""
    by_group: Dict[str, Dict[str, Any]] = {}
    for r in results:
        by_group.setdefault(r.group, {})[r.backend] = r
    train, hot, bias = [], [], []
    for group, rows in by_group.items():
        m = TRAIN_GROUP.match(group)
        if m and "cupy" in rows:
            gpu, torch = rows["cupy"].seconds, rows["torch-cuda"].seconds if "torch-cuda" in rows else None
            train.append({"optimizer": m.group(1), "n": int(m.group(2)), "gpubp_s": gpu, "torch_cuda_s": torch,
                          "torch_over_gpubp": torch / gpu if torch else None})
        m = HOT_PATH_GROUP.match(group)
        if m and (int(m.group(1)), int(m.group(2))) == HOT_PATH:
            hot.append({backend: r.flops / r.seconds / 1e12 for backend, r in rows.items()})
        m = BIAS_GROUP.match(group)
        if m:
            bias.append({"n": int(m.group(1)), "width": int(m.group(2)),
                         **{f"{b}_s": r.seconds for b, r in rows.items()}})
    train.sort(key=lambda r: (r["n"], r["optimizer"] != "sgd"))
    bias.sort(key=lambda r: (r["n"], r["width"]))
    return {"train": train, "hot_path_tflops": hot, "bias_grad": bias}


def render_markdown(report: Dict[str, Any]) -> str:
    """The report on one screen: environment, a line per phase, failures, headline timings."""
    info = report.get("device") or {}
    status = "PASS" if report.get("passed") else "FAIL"
    lines = [f"# gpucheck: {info.get('gpu', 'GPU')}, {report.get('date', '')}: {status}", ""]
    if "compute_capability" in info:
        cc = str(info["compute_capability"])
        lines += [f"{info['gpu']} (compute capability {cc[:-1]}.{cc[-1:]}, {info.get('multiprocessors')} SMs, "
                  f"{info.get('memory_gib')} GiB); CUDA driver {info.get('cuda_driver')}, runtime "
                  f"{info.get('cuda_runtime')}, NVRTC {info.get('nvrtc')}; CuPy {info.get('cupy')}, NumPy "
                  f"{info.get('numpy')}, Python {info.get('python')}, PyTorch {info.get('torch') or 'not installed'}", ""]
    lines += ["| phase | status | seconds (limit) | result |", "|---|---|---|---|"]
    for p in report.get("phases", []):
        lines.append(f"| {p['name']} | {p['status']} | {p['seconds']:.0f} ({p['budget_s']:.0f}) | {p['summary']} |")
    lines += ["", f"Total {report.get('seconds', 0.0):.0f} s of the {report.get('budget_s', 0.0):.0f} s budget.", ""]
    failures = failure_lines(report)
    if failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in failures] + [""]
    lines += _headline_lines(report)
    lines.append("Everything else: gpucheck.json, benchmarks.md, benchmarks.json, phase-*.log.")
    return "\n".join(lines) + "\n"


def failure_lines(report: Dict[str, Any], per_phase: int = MAX_FAILURES_PER_PHASE) -> List[str]:
    """What failed, phase by phase: at most ``per_phase`` lines each, then how many more."""
    out: List[str] = []
    for p in report.get("phases", []):
        details = p.get("details") or {}
        items = [f"compare: {c['name']} [{c['dtype']}, {c.get('shape', '')}]: {c['rel_err']:.1e} >= {c['tol']:.0e}"
                 for c in details.get("comparisons", []) if not c["passed"]]
        items += [f"{p['name']}: {name}" for name in details.get("failures", [])]
        items += [f"{p['name']}: {name}" for name in (details.get("pytest") or {}).get("failures", [])]
        if p["status"] in ("TIMEOUT", "ERROR") or (p["status"] == "FAIL" and not items):
            items.insert(0, f"{p['name']}: {p['summary']}")
        out += items[:per_phase]
        if len(items) > per_phase:
            out.append(f"{p['name']}: {len(items) - per_phase} more in gpucheck.json")
    return out


def _headline_lines(report: Dict[str, Any]) -> List[str]:
    bench = next((p.get("details") or {} for p in report.get("phases", []) if p["name"] == "bench"), {})
    h = bench.get("headline")
    if not h:
        return []
    lines = ["## Timed on the GPU (best call; benchmarks.md has every case)", "",
             "| | gpubp (CuPy) | PyTorch CUDA | PyTorch time / gpubp time |", "|---|---|---|---|"]
    for r in h["train"]:
        ratio = f"{r['torch_over_gpubp']:.2f}" if r.get("torch_over_gpubp") else "-"
        lines.append(f"| train step {TRAIN_NETWORK} {r['optimizer']}, n={r['n']} | {_time(r['gpubp_s'])} | "
                     f"{_time(r.get('torch_cuda_s'))} | {ratio} |")
    for rates in h["hot_path_tflops"]:
        gpu, torch = rates.get("cupy"), rates.get("torch-cuda")
        lines.append(f"| hot path dC/dW {HOT_PATH[0]}x{HOT_PATH[1]}x{HOT_PATH[1]} | "
                     f"{f'{gpu:.1f} TFLOP/s' if gpu else '-'} | {f'{torch:.1f} TFLOP/s' if torch else '-'} | |")
    if h["bias_grad"]:
        lines += ["", "| dC/db of (n, width) | gpubp kernel | Delta.sum(axis=0) | dC/dW GEMM of the layer |",
                  "|---|---|---|---|"]
        for r in h["bias_grad"]:
            lines.append(f"| ({r['n']}, {r['width']}) | {_time(r.get('cupy_s'))} | {_time(r.get('cupy-sum_s'))} | "
                         f"{_time(r.get('cupy-gemm_s'))} |")
    return lines + [""]
