"""Benchmark results side by side: the table, the machine's description, JSON and a PNG."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import MissingExtraError
from .cases import BACKEND_LABELS, BACKENDS
from .timing import Result, fmt_time


def _ratio(x: Optional[float]) -> str:
    if x is None:
        return "       -"
    return f"{x:7.2f}x" if x < 100 else f"{x:7.0f}x"


# The row a group's first speed-up column compares with: NumPy, or in the fits against
# scikit-learn's MLP (benchmarks/bench_sklearn.py) scikit-learn.
SPEED_UP_BASES = ("numpy", "sklearn")


def format_table(results: Sequence[Result]) -> str:
    """One block per group, backends side by side: time, rate, speed-up over NumPy (or over
    scikit-learn, in a group without NumPy) and over the loop.

    A speed-up is the reference's time divided by this row's time (above 1: faster).
    """
    groups: Dict[str, List[Result]] = {}
    for r in results:
        groups.setdefault(r.group, []).append(r)
    lines: List[str] = []
    order = {b: i for i, b in enumerate(BACKENDS)}
    for group, rows in groups.items():
        present = {r.backend for r in rows}
        base = next((b for b in SPEED_UP_BASES if b in present), SPEED_UP_BASES[0])
        lines.append(group)
        lines.append(f"  {'backend':<18} {'shape':<16} {'time':>11} {'rate':>30} {'vs ' + base:>10} {'vs loop':>9}")
        for r in sorted(rows, key=lambda r: (r.shape, order.get(r.backend, 99))):
            same = [x for x in rows if x.shape == r.shape]
            ref = {x.backend: x.seconds for x in same}
            lines.append(
                f"  {BACKEND_LABELS.get(r.backend, r.backend):<18} {r.shape:<16} {fmt_time(r.seconds):>11} {r.rate:>30} "
                f"{_ratio(ref[base] / r.seconds if base in ref else None):>10} "
                f"{_ratio(ref['loop'] / r.seconds if 'loop' in ref else None):>9}"
            )
        lines.append("")
    return "\n".join(lines)


def format_machine(info: Dict[str, Any]) -> str:
    """The machine of :func:`gpubp.bench.machine.machine_info` in a few lines."""
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
    """``{"machine": info, "results": [...]}``, what ``gpubp bench --json`` writes."""
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
        if not data["results"]:
            raise ValueError("its 'results' list is empty")
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
    if not results:  # another project's benchmarks, or none: nothing of gpubp's to show
        raise ValueError(f"none of its {len(data['benchmarks'])} benchmarks is one of gpubp's (extra_info with "
                         f"group, backend, shape and dtype)")
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
