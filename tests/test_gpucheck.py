"""``python -m gpubp.gpucheck`` on the CPU: its comparisons against the host build of the
kernels, the shapes it checks (they wrap every loop on an H100/H200), the tests it selects,
its phases and their timeouts within the 6-minute budget, and its one-screen report.
Without a GPU the command itself refuses."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import host_kernels
from gpubp import bench, gpucheck
from gpubp.backend import Backend, cupy_problem
from gpubp.gpucheck import phases as gphases
from gpubp.gpucheck import runner
from gpubp.ops import cuda_kernels as ck
from gpubp.ops.numpy_ops import NumpyOps

ROOT = Path(__file__).resolve().parents[1]
needs_cxx = pytest.mark.skipif(host_kernels.compiler_missing() is not None, reason=str(host_kernels.compiler_missing()))
NUMPY = Backend("numpy", np, NumpyOps(), "cpu")


def test_rel_err_is_normwise_and_strict_about_nan_and_inf():
    assert gpucheck.rel_err([1.0, 2.0, 4.0], [1.0, 2.0, 4.0]) == 0.0
    assert gpucheck.rel_err([1.0, 2.0, 4.0 + 4e-6], [1.0, 2.0, 4.0]) == pytest.approx(1e-6)
    assert gpucheck.rel_err([1e-3 + 1e-9, 4.0], [1e-3, 4.0]) == pytest.approx(2.5e-10)  # scaled by max|want|
    assert gpucheck.rel_err([np.nan, 1.0], [np.nan, 1.0]) == 0.0
    assert gpucheck.rel_err([0.0, 1.0], [np.nan, 1.0]) == np.inf
    assert gpucheck.rel_err([np.inf, 1.0], [-np.inf, 1.0]) == np.inf
    assert gpucheck.rel_err(np.zeros(3), np.zeros((3, 1))) == np.inf


@pytest.fixture(scope="module")
def host():
    return host_kernels.host_backend()


@needs_cxx
def test_compare_ops_passes_for_the_kernels_and_catches_a_wrong_one(host):
    # on the host device (3 SMs of 256 threads) 300 x 300 wraps the flat and row grids and the
    # column stride, 1000 x 20 splits dC/db's rows in two passes, 3 x 2 is tiny
    shapes = [(33, 19), (300, 300), (1000, 20), (3, 2)]
    checks = gpucheck.compare_ops(host, NUMPY, shapes=shapes)
    names = {c.name for c in checks}
    assert len(checks) == len({(c.name, c.dtype, c.shape) for c in checks})
    assert {c.shape for c in checks} == {f"{n}x{w}" for n, w in shapes}
    for name in ("forward gelu, bias", "backward softmax", "loss head cross_entropy:labels / softmax",
                 "dC/dW (1/n) Delta^T A", "dC/db (1/n) sum Delta", "SGD Nesterov + decay", "Adam step 3, decay 0.01"):
        assert name in names
    failed = [(c.name, c.dtype, c.shape, c.rel_err) for c in checks if not c.passed]
    assert not failed
    assert max(c.rel_err for c in checks if c.dtype == "float64") < 1e-13

    class WrongSSE(type(host.ops)):  # the tutorial's trap: sse without its factor 2
        def loss_head(self, loss, act, Z, A, Y, Delta):
            C = super().loss_head(loss, act, Z, A, Y, Delta)
            if loss.name == "sse":
                Delta *= 0.5
            return C

    wrong = Backend("numpy", np, WrongSSE(host.ops.kernels), "cpu")
    bad = {c.name for c in gpucheck.compare_ops(wrong, NUMPY, dtypes=["float64"], shapes=[(9, 5)]) if not c.passed}
    assert bad == {f"loss head sse / {a}" for a in gpucheck.ELEMENTWISE + ("softmax",)}


@needs_cxx
def test_compare_training_passes_for_the_kernels(host):
    shapes = [(128, 64), (3, 2)]
    checks = gpucheck.compare_training(host, NUMPY, steps=2, shapes=shapes)
    assert len(checks) == len(shapes) * 2 * len(gpucheck.TRAINING_CASES) * (2 + 3)
    assert all(c.passed for c in checks), [(c.name, c.dtype, c.rel_err) for c in checks if not c.passed]
    assert max(c.rel_err for c in checks if c.dtype == "float64") < 1e-13


def _work(shape: str, sizes: dict) -> int:
    if shape == "flat":
        return int(np.prod(list(sizes.values())))
    return sizes["rows"]


def test_the_checked_shapes_wrap_every_loop_on_an_h100():
    """At n = 4099, width = 1031 every kernel gpucheck compares runs with a grid smaller than
    its work on 132 SMs: each grid-stride loop, the row kernels' column stride (width > 256
    threads) and both strides of the column reduction go round more than once."""
    assert (4099, 1031) in gpucheck.SHAPES and min(n * w for n, w in gpucheck.SHAPES) < 32
    n, width = 4099, 1031
    sms = 132
    for spec in ck.KERNELS.values():
        if spec.shape == "flat":
            sizes = {p.name: 1 for p in spec.params if p.kind == "index"}
            sizes[next(iter(sizes))] = n * width  # activations over the batch; optimizers over n * width + 1
            (grid,), (block,) = ck.launch_shape("flat", sizes, sms)
            assert grid * block < n * width, spec.name
        elif spec.shape == "rows":
            (grid,), (block,) = ck.launch_shape("rows", {"rows": n, "cols": width}, sms)
            assert grid < n and block < width, spec.name
        else:
            chunks = ck.column_chunks(n, width, sms)
            (gx, gy), (bx, by) = ck.launch_shape("columns", {"rows": n, "cols": width, "chunks": chunks}, sms)
            assert chunks > 1 and by < -(-n // chunks)  # rows split, each chunk's rows strided
            wide = ck.launch_shape("columns", {"rows": 4099, "cols": 40000, "chunks": 1}, sms)
            assert wide[0][0] * wide[1][0] < 40000  # and the column tiles strided where they outnumber blocks


def test_gpucheck_selects_the_gpu_touching_tests_by_marker():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", *gphases.TEST_ARGS], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(ids) > 400 and all(i.startswith("tests/") for i in ids)
    explicit = {"tests/test_distributed.py::test_nccl_collectives_and_gradients",
                "tests/test_validation.py::test_arrays_of_the_other_backend_are_moved_once"}
    assert explicit <= set(ids)
    assert all("cupy" in i or i in explicit for i in ids)  # CuPy-parametrised, NCCL, cross-backend
    cpu_only = ("test_kernels_host.py", "test_blas.py", "test_kernels_packaging.py", "test_kernel_cache.py",
                "test_numpy_ops.py", "test_gpucheck.py")
    assert not [i for i in ids if i.split("::")[0].endswith(cpu_only)]
    bench_proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only",
                                 *[a for a in gphases.BENCH_ARGS if not a.startswith("--benchmark")]],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
    bench_ids = [line for line in bench_proc.stdout.splitlines() if "::" in line]
    assert bench_ids and all("cupy" in i or "torch-cuda" in i or "bench_gpu.py" in i for i in bench_ids)
    assert any("test_train_step_torch_cuda" in i for i in bench_ids)


def test_the_phases_fit_the_budget():
    assert gpucheck.TOTAL_BUDGET_S <= 360
    assert [p.name for p in gpucheck.PHASES] == ["device", "compare", "tests", "bench"]
    assert all(p.budget_s > 0 for p in gpucheck.PHASES)
    assert sum(p.budget_s for p in gpucheck.PHASES) <= gpucheck.TOTAL_BUDGET_S - 5  # start-up of each process


_FAKE = {
    "ok": "write(True, 'all good')",
    "bad": "write(False, '1 check failed', {'comparisons': [{'name': 'x', 'dtype': 'float32', 'shape': '3x2', "
           "'rel_err': 1.0, 'tol': 1e-5, 'passed': False}]})",
    "hang": "import subprocess; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)",
    "crash": "raise SystemExit(3)",
}


def _fake_command(phase, out_dir, deadline):
    code = ("import json, sys, time\n"
            "from gpubp.gpucheck.runner import write_phase_result\n"
            f"def write(ok, summary, details=None): write_phase_result(__import__('pathlib').Path({str(out_dir)!r}), "
            f"{phase.name!r}, ok, summary, details or {{}})\n" + _FAKE[phase.name])
    return [sys.executable, "-c", code]


def test_each_phase_runs_under_its_own_timeout_and_the_total_budget(tmp_path):
    phases = [runner.Phase("ok", 30, "passes"), runner.Phase("bad", 30, "fails"),
              runner.Phase("hang", 2, "runs past its limit"), runner.Phase("crash", 30, "dies"),
              runner.Phase("ok", 30, "too late")]
    lines = []
    t0 = time.monotonic()
    results = runner.run_phases(phases, tmp_path, total_budget_s=20, command=_fake_command, root=ROOT,
                                log=lines.append)
    elapsed = time.monotonic() - t0
    assert [r.status for r in results] == ["PASS", "FAIL", "TIMEOUT", "ERROR", "PASS"]
    hang = results[2]
    assert hang.seconds < 10 and "timed out after 2 s" in hang.summary  # killed, with its child, at 2 s
    assert "exit status 3" in results[3].summary
    assert elapsed < 20
    assert any(line.startswith("gpucheck [3/5] hang: TIMEOUT") for line in lines)
    spent = runner.run_phases([runner.Phase("ok", 30, "")] * 2, tmp_path, total_budget_s=0.5,
                              command=_fake_command, root=ROOT, log=lines.append)
    assert [r.status for r in spent] == ["TIMEOUT", "TIMEOUT"] and "not started" in spent[0].summary
    report = gpucheck.build_report(results, "2000-01-01", 20, elapsed, "Test GPU")
    assert report["passed"] is False
    md = gpucheck.render_markdown(report)
    assert "- compare: x [float32, 3x2]: 1.0e+00 >= 1e-05" in md
    assert "- hang: timed out after 2 s and was stopped" in md and "- crash: exit status 3" in md
    assert "| hang | TIMEOUT |" in md and "# gpucheck: Test GPU, 2000-01-01: FAIL" in md


def test_a_phase_that_cannot_run_reports_why(tmp_path):
    if cupy_problem() is None:
        pytest.skip("a GPU is visible: the compare phase would run")
    results = runner.run_phases([gpucheck.PHASES[1]], tmp_path, total_budget_s=60, root=ROOT, log=lambda s: None)
    (r,) = results
    assert r.status == "FAIL" and "BackendUnavailableError" in r.summary
    assert json.loads((tmp_path / "phase-compare.json").read_text())["passed"] is False


def _report_with_everything():
    results = [bench.Result(f"train step 784-512-256-10 {opt}  n={n} float32", b, f"n={n}", "float32", t, t, 5)
               for n in (256, 4096) for opt in ("sgd", "adam") for b, t in (("cupy", 3e-4), ("torch-cuda", 2.4e-4))]
    results += [bench.Result("hot path dC/dW, dC/db  n=8192 width=2048 float32", b, "(8192, 2048)", "float32", t, t,
                             5, flops=2.0 * 8192 * 2048 * 2048) for b, t in (("cupy", 2e-3), ("torch-cuda", 1.9e-3))]
    results += [bench.Result(f"bias gradient dC/db  n={n} width={w} float32", b, f"({n}, {w})", "float32", t, t, 5)
                for n, w in ((65536, 128), (256, 512)) for b, t in (("cupy", 1e-5), ("cupy-sum", 2e-5),
                                                                   ("cupy-gemm", 9e-5))]
    h = gpucheck.headline(results)
    checks = [gpucheck.Check(f"check {i}", "float32", 1e-3, 1e-5, "4099x1031").as_dict() for i in range(12)]
    phases = [
        runner.PhaseResult("device", "PASS", 5.0, 40, "NVIDIA H200: 8 kernel programs ready in 2.1 s",
                           {"device": {"gpu": "NVIDIA H200", "compute_capability": "90", "multiprocessors": 132,
                                       "memory_gib": 139.8, "cuda_driver": 13000, "cuda_runtime": 13000,
                                       "nvrtc": "13.0", "cupy": "14.2.0", "numpy": "2.3.0", "python": "3.12.3",
                                       "torch": "2.9.0"}}),
        runner.PhaseResult("compare", "FAIL", 30.0, 90, "1000/1012 checks passed", {"comparisons": checks}),
        runner.PhaseResult("tests", "FAIL", 60.0, 120, "500 passed, 1 failed, 0 skipped",
                           {"failures": ["tests.test_network::test_x[cupy]"]}),
        runner.PhaseResult("bench", "PASS", 80.0, 100, "62 cases timed", {"headline": h, "cases": 62}),
    ]
    return gpucheck.build_report(phases, "2026-01-01", 360, 175.0, "NVIDIA H200"), h


def test_the_report_fits_one_screen_and_leads_with_the_numbers():
    report, h = _report_with_everything()
    assert [(r["n"], r["optimizer"]) for r in h["train"]] == [(256, "sgd"), (256, "adam"), (4096, "sgd"), (4096, "adam")]
    assert h["train"][0]["torch_over_gpubp"] == pytest.approx(0.8)
    assert h["hot_path_tflops"][0]["cupy"] == pytest.approx(2 * 8192 * 2048 * 2048 / 2e-3 / 1e12)
    md = gpucheck.render_markdown(report)
    lines = md.splitlines()
    assert len(lines) <= 50 and max(len(line) for line in lines) <= 320
    assert lines[0] == "# gpucheck: NVIDIA H200, 2026-01-01: FAIL"
    assert "compute capability 9.0, 132 SMs" in md
    assert "| compare | FAIL | 30 (90) | 1000/1012 checks passed |" in md
    assert "- compare: check 0 [float32, 4099x1031]: 1.0e-03 >= 1e-05" in md
    assert "- tests: tests.test_network::test_x[cupy]" in md
    assert "- compare: 9 more in gpucheck.json" in md  # 12 comparisons failed, 3 shown
    assert "| train step 784-512-256-10 sgd, n=256 | 300.0 us | 240.0 us | 0.80 |" in md
    assert "| hot path dC/dW 8192x2048x2048 | 34.4 TFLOP/s | 36.2 TFLOP/s | |" in md
    assert "| (65536, 128) | 10.0 us | 20.0 us | 90.0 us |" in md


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1" time="2.5">'
                   '<testcase classname="tests.test_a" name="test_ok"/>'
                   '<testcase classname="tests.test_a" name="test_bad[cupy]"><failure message="x"/></testcase>'
                   '<testcase classname="tests.test_b" name="test_err"><error message="y"/></testcase>'
                   '</testsuite></testsuites>')
    assert gphases.junit_counts(xml) == {"passed": 2, "failed": 2, "skipped": 1, "seconds": 2.5,
                                         "failures": ["tests.test_a::test_bad[cupy]", "tests.test_b::test_err"]}


@needs_cxx
def test_compare_layer_training_passes_for_the_kernels(host):
    checks = gpucheck.compare_layer_training(host, NUMPY, steps=2)
    assert len(checks) == 2 * (3 * 5 + 3 * 4)  # the networks without BatchNorm have no running statistics
    assert all(c.passed for c in checks), [(c.name, c.dtype, c.rel_err) for c in checks if not c.passed]
    assert max(c.rel_err for c in checks if c.dtype == "float64") < 1e-12


@pytest.mark.skipif(cupy_problem() is None, reason="a GPU is visible: gpucheck would run")
def test_gpucheck_refuses_without_a_gpu(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gpubp.gpucheck", "--output", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "gpucheck needs a CUDA GPU and refuses to run without one" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_the_headline_finds_the_groups_the_benchmarks_write():
    from gpubp.bench import gpu as bench_gpu
    from gpubp.gpucheck import report

    step = bench.train_step_case("numpy", 8, "adam")
    assert report.TRAIN_GROUP.match(step.group).groups() == ("adam", "8")
    hot = bench.hot_path_case("numpy", 16, 8)
    assert report.HOT_PATH_GROUP.match(hot.group).groups() == ("16", "8")
    assert report.BIAS_GROUP.match(bench_gpu.bias_grad_group(65536, 128, "float32")).groups() == ("65536", "128")


@pytest.mark.parametrize("bad", ["tests", "tests=abc", "nope=10", "tests=0", "tests=nan", "tests=inf"])
def test_limit_must_name_a_phase_and_seconds(bad, capsys):
    with pytest.raises(SystemExit) as info:
        gpucheck.main(["--limit", bad])
    assert info.value.code == 2 and "--limit" in capsys.readouterr().err


@pytest.mark.parametrize("argv, option", [(["--budget", "0"], "--budget"), (["--budget", "-5"], "--budget"),
                                          (["--budget", "nan"], "--budget"), (["--output", "FILE"], "--output")])
def test_bad_budget_or_output_is_refused_before_the_gpu_is_looked_for(tmp_path, capsys, argv, option):
    """Checked first: on the GPU machine a mistake found after start-up costs device time."""
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    with pytest.raises(SystemExit) as info:
        gpucheck.main(argv)
    assert info.value.code == 2 and option in capsys.readouterr().err


def test_main_writes_the_report_and_exits_non_zero_when_a_comparison_fails(tmp_path, monkeypatch, capsys):
    """The whole command with its phases' processes replaced by stand-ins that report fixed
    results: the report files, the printed summary, and the exit status."""
    import gpubp.backend

    outcomes = {"device": "write(True, 'ready', {'device': {'gpu': 'Stand-in GPU'}})",
                "compare": "write(False, '1/2 checks passed', {'comparisons': [{'name': 'x', 'dtype': 'float32', "
                           "'shape': '3x2', 'rel_err': 1.0, 'tol': 1e-5, 'passed': False}]})",
                "tests": "write(True, '5 passed')", "bench": "write(True, '3 cases timed')"}

    def command(phase, out_dir, deadline):
        code = ("from pathlib import Path\nfrom gpubp.gpucheck.runner import write_phase_result\n"
                f"def write(ok, summary, details=None): write_phase_result(Path({str(out_dir)!r}), {phase.name!r}, ok, "
                f"summary, details or {{}})\n" + outcomes[phase.name])
        return [sys.executable, "-c", code]

    real = gpucheck.run_phases
    monkeypatch.setattr(gpucheck, "run_phases", lambda *a, **k: real(*a, command=command, **k))
    monkeypatch.setattr(gpubp.backend, "cupy_problem", lambda: None)
    monkeypatch.setattr(gpucheck, "_gpu_name", lambda: "Stand-in GPU")
    assert gpucheck.main(["--output", str(tmp_path / "a")]) == 1
    out = capsys.readouterr().out
    assert "gpucheck [2/4] compare: FAIL" in out and "- compare: x [float32, 3x2]" in out
    report = json.loads((tmp_path / "a" / "gpucheck.json").read_text())
    assert [p["status"] for p in report["phases"]] == ["PASS", "FAIL", "PASS", "PASS"] and not report["passed"]
    assert (tmp_path / "a" / "gpucheck.md").read_text().startswith("# gpucheck: Stand-in GPU, ")
    outcomes["compare"] = "write(True, '2/2 checks passed')"
    assert gpucheck.main(["--output", str(tmp_path / "b"), "--phases", "compare,tests"]) == 0
    report = json.loads((tmp_path / "b" / "gpucheck.json").read_text())
    assert [p["name"] for p in report["phases"]] == ["compare", "tests"] and report["passed"]


_MARKER_AUDIT = """
import sys, pytest
class Audit:
    def pytest_collection_finish(self, session):
        for item in session.items:
            reasons = [m.kwargs.get("reason", "") for m in item.iter_markers("skipif")]
            needs_gpu = any(("GPU" in r or "CuPy" in r) and "is visible" not in r for r in reasons)
            if needs_gpu and item.get_closest_marker("gpu") is None:
                print("UNMARKED", item.nodeid)
        print("AUDITED", len(session.items))
sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"], plugins=[Audit()]))
"""


def test_every_test_that_needs_a_gpu_carries_the_gpu_marker():
    """A test skipped without a GPU that gpucheck would not select would never run anywhere."""
    proc = subprocess.run([sys.executable, "-c", _MARKER_AUDIT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "AUDITED" in proc.stdout
    assert [line for line in proc.stdout.splitlines() if line.startswith("UNMARKED")] == []


def test_the_comparisons_launch_every_kernel():
    """"Compares every kernel": the comparisons gpucheck runs launch each kernel of the table at
    least once (on the stand-in device, which checks and counts launches without a GPU)."""
    import gpubp
    from gpubp.gpucheck import compare
    from gpubp.ops.cuda_kernels import KERNELS
    from gpubp.ops.standin import StandInDevice, standin_backend, standin_kernels

    device = StandInDevice()
    candidate = standin_backend(standin_kernels(device))
    with gpubp.use_backend("numpy") as reference:
        compare.compare_ops(candidate, reference, shapes=[(257, 131), (3, 2)])
        compare.compare_training(candidate, reference, shapes=[(128, 64), (3, 2)])
        compare.compare_layer_training(candidate, reference, shapes=[(128, 64), (3, 2)])
    assert sorted(set(KERNELS) - set(device.kernels)) == []
