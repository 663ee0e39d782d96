"""The host-overhead measurement of the CuPy path on the stand-in device: what it counts, and
that the stand-in refuses launches a GPU would refuse (performance itself is never asserted)."""
from __future__ import annotations

import numpy as np
import pytest

from gpubp.bench import launch_overhead
from gpubp.ops import cuda_kernels as ck
from gpubp.ops.standin import StandInDevice, StandInFunction, check_launch


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_step_of_784_512_256_10_is_19_launches(optimizer):
    r = launch_overhead.measure(optimizer=optimizer, steps=3, repeats=1)
    assert r["launches_per_step"] == 19
    assert r["kernels_per_step"] == {"gemm": 8, "bias_act_forward": 2, "bias_softmax_forward": 1,
                                     "head_xent_labels": 1, "bias_grad": 4, "act_backward": 2, optimizer: 1}
    assert r["host_us_per_step"] > 0 and r["host_us_per_launch"] == pytest.approx(r["host_us_per_step"] / 19)
    text = launch_overhead.format_result(r)
    assert "19 launches per step" in text and "us per launch" in text


def test_command_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert launch_overhead.main(["--optimizer", "sgd", "--steps", "2", "--repeats", "1", "--json", str(out)]) == 0
    assert "784-512-256-10 sgd n=256" in capsys.readouterr().out
    import json

    (r,) = json.loads(out.read_text())
    assert r["launches_per_step"] == 19 and r["n"] == 256


def _fn(name="act_backward", dtype=np.float32):
    return StandInFunction(ck.KERNELS[name], np.dtype(dtype), "x")


def test_the_standin_refuses_what_the_driver_would():
    a = np.zeros(12, np.float32)
    good = (a, a, a, a.copy(), np.int64(12))
    check_launch(_fn(), (1,), (256,), good)
    for grid, block, match in (((0,), (256,), "grid"), ((1,), (2048,), "block"), ((1,), (64, 32), "1024 threads"),
                               ((2**31,), (32,), "grid"), ((1.0,), (32,), "grid")):
        with pytest.raises(ValueError, match=match):
            check_launch(_fn(), grid, block, good)
    bad_args = [
        ((a, a, a, a), "5 arguments expected"),
        ((a, a, a, a, 12), "size must be int64"),
        ((a, a, a, a.astype(np.float64), np.int64(12)), "float32 device array"),
        ((a, a, a, a[:6], np.int64(12)), "holds 6 elements; the kernel reads 12"),
        ((a, a, a, a[::2], np.int64(6)), "C-contiguous"),
    ]
    for args, match in bad_args:
        with pytest.raises((TypeError, ValueError), match=match):
            check_launch(_fn(), (1,), (32,), args)
    p = np.zeros(4, np.float64)
    with pytest.raises(TypeError, match="lr must be float64; got float"):
        check_launch(_fn("sgd", np.float64), (1,), (32,), (p, p, np.int64(4), 0.1, np.float64(0)))
    ro = np.zeros(12, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        check_launch(_fn(), (1,), (32,), (a, a, a, ro, np.int64(12)))


def test_the_standin_gemm_checks_and_counts():
    d = StandInDevice(name="gemm")
    a, b, out = np.zeros((5, 3)), np.zeros((4, 3)), np.zeros((5, 4))
    d.gemm("N", "T", a, b, out, 1.0, 0.0)
    assert d.launches == 1 and d.kernels["gemm"] == 1
    with pytest.raises(ValueError, match="out must be"):
        d.gemm("N", "N", a, b, out, 1.0, 0.0)
    with pytest.raises(TypeError, match="alpha and beta must be floats"):
        d.gemm("N", "T", a, b, out, 1, 0.0)


def test_gpubp_bench_reports_the_host_side_of_a_cupy_step(capsys):
    from gpubp import cli

    assert cli.main(["bench", "--backends", "cupy", "--min-time", "0.01", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "host side of a CuPy step" in out
    assert "784-512-256-10 sgd n=256 float32: 19 launches per step" in out
    assert "784-512-256-10 adam n=256 float32: 19 launches per step" in out


@pytest.mark.parametrize("argv, option", [(["--steps", "0"], "--steps"), (["--n", "0"], "--n"),
                                          (["--repeats", "0"], "--repeats"), (["--json", "DIR"], "--json"),
                                          (["--json", "DIR/missing/x.json"], "--json")])
def test_bad_arguments_are_refused_before_measuring(tmp_path, capsys, argv, option):
    argv = [a.replace("DIR", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as info:
        launch_overhead.main(argv)
    captured = capsys.readouterr()
    assert info.value.code == 2 and option in captured.err and "us per" not in captured.out
