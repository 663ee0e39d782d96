"""The benchmark suite's two modes.

* Quick mode (plain ``pytest``, what CI runs): every benchmark is built and called once with
  no timing kept (pytest-benchmark's ``--benchmark-disable``), and the largest shapes (marked
  ``full_run_only``) are deselected, so the files cannot rot and the run stays short.
* Timed mode (``pytest benchmarks --benchmark-enable`` or ``--benchmark-only``): every shape,
  timed by pytest-benchmark; at the end the results are printed side by side per shape with
  GFLOP/s (or GB/s) and speed-ups, by :func:`gpubp.bench.format_table`. ``--benchmark-json
  FILE`` keeps them; ``gpubp bench --from-json FILE [--png FILE]`` prints and plots them again.
"""
from __future__ import annotations

import os
from typing import Any, Callable, List

import pytest

from gpubp import bench

RESULTS: List[bench.Result] = []
_STATE = {"timed": False, "threads": None, "limit": None}


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--bench-threads", type=int, default=None,
                     help="threads for NumPy's BLAS and PyTorch in the timed run (default: all logical CPUs)")


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "full_run_only: a large shape, measured in the timed run only")
    timed = bool(config.getoption("benchmark_enable", False) or config.getoption("benchmark_only", False))
    _STATE["timed"] = timed
    if not timed:
        config.option.benchmark_disable = True
        return
    threads = config.getoption("bench_threads") or os.cpu_count() or 1
    _STATE["threads"] = threads
    _STATE["limit"] = bench.set_threads(threads)


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    """Quick mode leaves out the shapes marked ``full_run_only`` (deselected, not skipped); without
    pytest-benchmark (the bench or test extra) every benchmark is skipped, not an error."""
    if not config.pluginmanager.hasplugin("benchmark"):
        skip = pytest.mark.skip(reason="the benchmarks need pytest-benchmark (pip install 'gpubp[bench]')")
        for item in items:
            if "benchmark" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)
    if timed():
        return
    large = [item for item in items if item.get_closest_marker("full_run_only")]
    if large:
        config.hook.pytest_deselected(items=large)
        items[:] = [item for item in items if not item.get_closest_marker("full_run_only")]


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-benchmark, which may be missing
def pytest_benchmark_update_machine_info(config: Any, machine_info: dict) -> None:
    machine_info["gpubp"] = bench.machine_info()


def timed() -> bool:
    """True in the timed run, False in quick mode."""
    return bool(_STATE["timed"])


@pytest.fixture
def measure(benchmark: Any) -> Callable[..., None]:
    """``measure(builder, *args)``: build a :class:`gpubp.bench.Case` (skip if unavailable) and time it."""

    def run(build: Callable[..., bench.Case], *args: Any, **kwargs: Any) -> None:
        try:
            case = build(*args, **kwargs)
        except bench.Unavailable as exc:
            pytest.skip(str(exc))
        benchmark.group = case.group
        benchmark.extra_info.update(case.info())
        benchmark(case)
        if timed() and benchmark.stats is not None:
            s = benchmark.stats.stats
            RESULTS.append(bench.Result(case.group, case.backend, case.shape, case.dtype, float(s.min),
                                        float(s.median), int(s.rounds), case.flops, case.nbytes,
                                        case.peak_bytes_per_s))

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("gpubp: backends side by side (best time; speed-up = reference time / time)")
    terminalreporter.write_line(bench.format_machine(bench.machine_info()))
    terminalreporter.write_line(f"threads: {_STATE['threads']}")
    terminalreporter.write_line("")
    terminalreporter.write_line(bench.format_table(RESULTS))
