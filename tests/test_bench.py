"""``gpubp bench`` and the benchmark helpers: cases compute the right thing, output reads back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gpubp import bench, cli


@pytest.mark.parametrize("backend", ["loop", "numpy", "gemm", "torch"])
def test_hot_path_cases_compute_the_averaged_gradient(backend):
    try:
        case = bench.hot_path_case(backend, 6, 5, "float64")
    except bench.Unavailable as exc:
        pytest.skip(str(exc))
    D = bench.random_array((6, 5), "float64", 1)  # the case's Delta and A, drawn from the same seeds
    A = bench.random_array((6, 5), "float64", 2)
    case()
    outputs = [np.asarray(o.numpy() if hasattr(o, "numpy") else o) for o in case.outputs]
    expected = sum(np.outer(D[i], A[i]) for i in range(6)) / 6
    if backend == "gemm":  # the bare product, no 1/n
        np.testing.assert_allclose(outputs[0], 6 * expected, rtol=1e-12)
        assert case.flops == 2.0 * 6 * 5 * 5
        return
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(outputs[1], D.mean(axis=0), rtol=1e-12, atol=1e-15)
    assert case.flops == 2.0 * 6 * 5 * 5 + 6 * 5


def test_loop_refuses_large_sizes():
    with pytest.raises(bench.Unavailable, match="per-sample loop"):
        bench.hot_path_case("loop", bench.LOOP_MAX_N + 1, 8)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        bench.hot_path_case("numba", 4, 4)


def test_train_step_gemm_bound_counts_the_steps_products():
    # 784-512-256-10 at n: forward 3 GEMMs, dC/dW 3 GEMMs, Delta W for layers 3 and 2
    w = [784 * 512, 512 * 256, 256 * 10]
    assert bench.train_flops(bench.TRAIN_SIZES, 7) == 2.0 * 7 * (2 * sum(w) + w[1] + w[2])


def test_measure_and_table_report_ratios():
    results, skipped = bench.run_cases([lambda: bench.hot_path_case("numpy", 16, 8),
                                        lambda: bench.hot_path_case("loop", 16, 8),
                                        lambda: bench.hot_path_case("loop", 10**6, 8)], min_time=0.01)
    assert [r.backend for r in results] == ["numpy", "loop"]
    assert skipped and "per-sample loop" in skipped[0]
    numpy_r, loop_r = results
    assert numpy_r.rounds >= 3 and 0 < numpy_r.seconds <= numpy_r.median
    table = bench.format_table(results)
    assert "GFLOP/s" in table and "vs loop" in table
    speedup = loop_r.seconds / numpy_r.seconds
    assert (f"{speedup:7.2f}x" if speedup < 100 else f"{speedup:7.0f}x") in table


def _pytest_benchmark_json(path):
    rows = []
    for backend, t in (("numpy", 2e-3), ("loop", 0.2), ("torch", 1e-3)):
        rows.append({"group": "g", "name": f"test[{backend}]",
                     "extra_info": {"group": "hot path n=256", "backend": backend, "shape": "(256, 512)",
                                    "dtype": "float32", "flops": 1e9, "nbytes": 0.0, "peak_bytes_per_s": None},
                     "stats": {"min": t, "median": 1.5 * t, "rounds": 5}})
    path.write_text(json.dumps({"machine_info": {"cpu": "x"}, "benchmarks": rows}))


def test_from_json_prints_the_side_by_side_table(tmp_path, capsys):
    src = tmp_path / "bench.json"
    _pytest_benchmark_json(src)
    assert cli.main(["bench", "--from-json", str(src)]) == 0
    out = capsys.readouterr().out
    assert "hot path n=256" in out
    assert "500.0 GFLOP/s" in out  # 1e9 flops in 2 ms
    assert "   2.00x" in out  # torch: twice as fast as numpy
    assert "    100x" in out  # numpy: 100 times the per-sample loop


def test_from_json_keeps_the_fits_against_scikit_learn(tmp_path, capsys):
    """benchmarks/bench_sklearn.py's rows (extra_info as it writes them) are read and compared
    with scikit-learn's fit, the group's base, where the group has no NumPy row."""
    rows = []
    for implementation, t, dtype in (("gpubp", 0.5, "float32"), ("sklearn", 1.5, "float64")):
        rows.append({"group": "scikit-learn MLPClassifier fit: digits", "name": f"test_fit[digits-{implementation}]",
                     "extra_info": {"implementation": implementation, "accuracy": 0.95, "epochs": 200, "rows": 1437,
                                    "group": "scikit-learn MLPClassifier fit: digits", "backend": implementation,
                                    "dtype": dtype, "shape": "(1437, 64)"},
                     "stats": {"min": t, "median": t, "rounds": 3}})
    src = tmp_path / "bench.json"
    src.write_text(json.dumps({"machine_info": {"cpu": "x"}, "benchmarks": rows}))
    results, _ = bench.read_results(str(src))
    assert sorted((r.backend, r.dtype, r.seconds) for r in results) == [("gpubp", "float32", 0.5),
                                                                          ("sklearn", "float64", 1.5)]
    assert cli.main(["bench", "--from-json", str(src)]) == 0
    out = capsys.readouterr().out
    assert "vs sklearn" in out and "vs numpy" not in out
    gpubp_line = next(line for line in out.splitlines() if "gpubp.sklearn" in line)
    assert "   3.00x" in gpubp_line  # 1.5 s against 0.5 s


def test_json_round_trip(tmp_path):
    results = [bench.Result("g", "numpy", "(2, 2)", "float32", 1e-3, 2e-3, 4, flops=8.0)]
    path = tmp_path / "r.json"
    bench.write_json(str(path), results, {"cpu": "x"})
    back, info = bench.read_results(str(path))
    assert back == results and info == {"cpu": "x"}


def test_png_without_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    src = tmp_path / "bench.json"
    _pytest_benchmark_json(src)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert cli.main(["bench", "--from-json", str(src), "--png", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "gpubp[plot]" in err


def test_png_is_written_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    src = tmp_path / "bench.json"
    _pytest_benchmark_json(src)
    png = tmp_path / "x.png"
    assert cli.main(["bench", "--from-json", str(src), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_backend_name_is_rejected(capsys):
    assert cli.main(["bench", "--backends", "numpy,fortran"]) == 2
    assert "fortran" in capsys.readouterr().err
