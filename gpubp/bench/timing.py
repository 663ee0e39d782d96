"""Timing a :class:`~gpubp.bench.cases.Case`: its best and median call, in a :class:`Result`."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np

from .cases import BACKEND_LABELS, Case
from .machine import Unavailable


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


def fmt_time(s: float) -> str:
    """A time in s, ms or us, 11 characters wide."""
    if s >= 1.0:
        return f"{s:8.3f} s "
    if s >= 1e-3:
        return f"{s * 1e3:8.3f} ms"
    return f"{s * 1e6:8.1f} us"


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
            log(f"  {r.group} | {BACKEND_LABELS.get(r.backend, r.backend)} {r.shape}: {fmt_time(r.seconds)}")
    return results, skipped
