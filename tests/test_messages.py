"""Clear errors that name what was wrong: IDX files with overflowing dimensions or corrupt
compression, an unknown GPUBP_BACKEND under the command line, benchmark JSON of another shape."""
from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import gpubp
from gpubp import bench
from gpubp.cli import main as cli_main
from gpubp.data import read_idx

pytestmark = pytest.mark.timeout(120)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(gpubp.__file__)))


def _idx(shape, data=b"", code=0x08):
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


# ---- IDX files -----------------------------------------------------------------------------------
BAD_IDX = [
    ("dimensions whose product overflows 64 bits", _idx([0xFFFFFFFF] * 4), "bytes of data"),
    ("dimensions whose product wraps to zero in int64", _idx([2**16, 2**16, 2**16, 2**16]), "bytes of data"),
    ("dimensions wrapping to the data's size", _idx([2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 4], b"\0" * 4),
     "bytes of data"),
    ("too little data", _idx([3, 4], b"\0" * 11), "holds 11"),
    ("too much data", _idx([3, 4], b"\0" * 13), "holds"),
    ("truncated header", bytes([0, 0, 8, 3]) + b"\0\0\0\1", "truncated"),
    ("unknown type code", _idx([1], b"\0", code=0x0A), "type code"),
    ("no magic", b"PK\3\4hello", "magic"),
]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case,blob,fragment", BAD_IDX, ids=[c[0] for c in BAD_IDX])
def test_bad_idx_files_are_value_errors_naming_the_file(tmp_path, case, blob, fragment, compressed):
    path = tmp_path / ("bad-idx1-ubyte" + (".gz" if compressed else ""))
    path.write_bytes(gzip.compress(blob) if compressed else blob)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    assert str(path) in str(info.value) and fragment in str(info.value), info.value


CORRUPT_GZ = [
    ("not gzip at all", lambda gz: b"\x1f\x8b" + b"\xff" * 40),
    ("truncated", lambda gz: gz[: len(gz) // 2]),
    ("damaged data", lambda gz: gz[:12] + bytes(b ^ 0x55 for b in gz[12:-8]) + gz[-8:]),
    ("wrong checksum", lambda gz: gz[:-8] + b"\0\0\0\0" + gz[-4:]),
]


@pytest.mark.parametrize("case,damage", CORRUPT_GZ, ids=[c[0] for c in CORRUPT_GZ])
def test_corrupt_gz_is_a_value_error_naming_the_file(tmp_path, case, damage):
    rng = np.random.default_rng(0)
    good = gzip.compress(_idx([50, 28, 28], rng.integers(0, 255, 50 * 28 * 28, dtype=np.uint8).tobytes()))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(good))
    with pytest.raises(ValueError) as info:
        read_idx(path)
    assert str(path) in str(info.value), info.value


def test_a_gz_bomb_is_not_inflated_beyond_its_header(tmp_path):
    """A header declaring 10 bytes followed by 200 MB of zeros (compressed to ~200 kB): refused
    after reading 11 bytes of data, not after inflating all of it."""
    import tracemalloc

    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(_idx([10], b"\0" * 10))
        for _ in range(200):
            f.write(b"\0" * (1 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="more than 10"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_good_idx_files_still_read(tmp_path):
    data = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    for name, writer in (("a-idx3-ubyte", lambda p, b: p.write_bytes(b)),
                         ("b-idx3-ubyte.gz", lambda p, b: p.write_bytes(gzip.compress(b)))):
        path = tmp_path / name
        writer(path, _idx([2, 3, 4], data.tobytes(), code=0x0C))
        out = read_idx(path)
        assert out.dtype == np.dtype("int32") and out.dtype.isnative
        np.testing.assert_array_equal(out, data)


# ---- GPUBP_BACKEND under the command line -------------------------------------------------------
@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["info"]])
def test_unknown_backend_variable_is_one_line_with_status_2(command):
    env = dict(os.environ, GPUBP_BACKEND="bogus", PYTHONPATH=ROOT)
    argv = command + (["--no-progress"] if command[0] == "train" else [])
    proc = subprocess.run([sys.executable, "-m", "gpubp.cli", *argv], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert "GPUBP_BACKEND" in lines[0] and "'bogus'" in lines[0] and "numpy, cupy, auto" in lines[0]


def test_unknown_backend_variable_is_overridden_by_the_backend_option():
    env = dict(os.environ, GPUBP_BACKEND="bogus", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "gpubp.cli", "train", "--epochs", "1", "--hidden", "8", "--no-progress",
                           "--backend", "numpy"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


# ---- gpubp bench --from-json ---------------------------------------------------------------------
def _result(**changes):
    r = {"group": "step", "backend": "numpy", "shape": "n=256", "dtype": "float32", "seconds": 1e-3, "median": 2e-3,
         "rounds": 5, "flops": 1e9, "nbytes": 0.0, "peak_bytes_per_s": None}
    r.update(changes)
    return r


OTHER_SHAPES = [
    ("a list", [1, 2, 3]),
    ("a number", 3),
    ("a string", "results"),
    ("other keys", {"runs": []}),
    ("results not a list", {"results": {"a": 1}}),
    ("results of numbers", {"results": [1, 2]}),
    ("a result with an unknown field", {"results": [_result(speed=3)]}),
    ("a result missing a field", {"results": [{"group": "step"}]}),
    ("seconds a string", {"results": [_result(seconds="fast")]}),
    ("seconds negative", {"results": [_result(seconds=-1.0)]}),
    ("seconds zero", {"results": [_result(seconds=0)]}),
    ("rounds a float", {"results": [_result(rounds=2.5)]}),
    ("group a number", {"results": [_result(group=3)]}),
    ("benchmarks not a list", {"benchmarks": 3}),
    ("a benchmark without stats", {"benchmarks": [{"extra_info": {"backend": "numpy", "group": "g", "shape": "s",
                                                                  "dtype": "float32"}}]}),
    ("a benchmark entry a string", {"benchmarks": ["x"]}),
    ("another project's benchmarks", {"benchmarks": [{"name": "test_foo", "extra_info": {},
                                                      "stats": {"min": 0.1, "median": 0.1, "rounds": 5}}]}),
    ("no benchmarks", {"benchmarks": []}),
    ("an empty benchmark", {"benchmarks": [{}]}),
    ("no results", {"results": []}),
]


@pytest.mark.parametrize("case,data", OTHER_SHAPES, ids=[c[0] for c in OTHER_SHAPES])
def test_bench_from_json_of_another_shape_is_one_line(tmp_path, capsys, case, data):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as info:
        bench.read_results(str(path))
    assert str(path) in str(info.value)
    assert cli_main(["bench", "--from-json", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and "Traceback" not in err


def test_bench_from_json_that_is_not_json(tmp_path, capsys):
    path = tmp_path / "broken.json"
    path.write_bytes(b"\xff{not json")
    assert cli_main(["bench", "--from-json", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a JSON file" in err and str(path) in err


def test_bench_json_written_by_gpubp_still_reads(tmp_path):
    path = tmp_path / "ok.json"
    bench.write_json(str(path), [bench.Result(**_result())], {"cpu": "x"})
    results, info = bench.read_results(str(path))
    assert results == [bench.Result(**_result())] and info == {"cpu": "x"}
