"""Benchmarks of the gradient-averaging hot path and of training, NumPy against CuPy.

One implementation of every benchmark, shared by ``gpubp bench`` (its own timer, a table,
JSON and a PNG) and the pytest-benchmark suite in ``benchmarks/``:

* :mod:`~gpubp.bench.cases`: the benchmarks, each a :class:`Case` built for one backend;
* :mod:`~gpubp.bench.timing`: timing a case into a :class:`Result`;
* :mod:`~gpubp.bench.report`: results side by side, as a table, JSON or a PNG;
* :mod:`~gpubp.bench.machine`: what the machine has (CPU, BLAS, threads, GPU, bandwidths).
"""
from __future__ import annotations

from .cases import (
    BACKEND_LABELS,
    BACKENDS,
    CORE_ACTIVATION_SHAPE,
    CORE_HOT_PATH,
    CORE_LAYER_TRAIN,
    CORE_TRAIN,
    LOOP_MAX_N,
    LOOP_MAX_WIDTH,
    TRAIN_DROPOUT,
    TRAIN_LAYERS,
    TRAIN_SIZES,
    Case,
    activation_grad_case,
    core_cases,
    epoch_case,
    hot_path_case,
    random_array,
    train_flops,
    train_step_case,
)
from .machine import Unavailable, cpu_model, device_bandwidth, host_bandwidth, machine_info, set_threads
from .report import MissingExtraError, format_machine, format_table, plot, plot_available, read_results, write_json
from .timing import Result, measure, run_cases

__all__ = [
    "BACKENDS",
    "BACKEND_LABELS",
    "CORE_ACTIVATION_SHAPE",
    "CORE_HOT_PATH",
    "CORE_LAYER_TRAIN",
    "CORE_TRAIN",
    "Case",
    "LOOP_MAX_N",
    "LOOP_MAX_WIDTH",
    "MissingExtraError",
    "Result",
    "TRAIN_DROPOUT",
    "TRAIN_LAYERS",
    "TRAIN_SIZES",
    "Unavailable",
    "activation_grad_case",
    "core_cases",
    "cpu_model",
    "device_bandwidth",
    "epoch_case",
    "format_machine",
    "format_table",
    "host_bandwidth",
    "hot_path_case",
    "machine_info",
    "measure",
    "plot",
    "plot_available",
    "random_array",
    "read_results",
    "run_cases",
    "set_threads",
    "train_flops",
    "train_step_case",
    "write_json",
]
