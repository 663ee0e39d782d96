"""The command line checks every path before training and turns sizes that cannot be allocated
into one line naming them and the bytes they need, with exit status 2 and no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import gpubp
from gpubp.cli import main as cli_main

pytestmark = pytest.mark.timeout(120)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(gpubp.__file__)))
QUICK = ["--epochs", "1", "--hidden", "8", "--no-progress"]


def _one_line_error(capsys, argv):
    with gpubp.use_backend("numpy"):
        code = cli_main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return out, err


def _bad_save_targets(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    return [
        ("an existing folder", str(tmp_path), "folder"),
        ("a missing folder", str(tmp_path / "no" / "m.npz"), "does not exist"),
        ("an empty path", "", "empty"),
        ("a FIFO", str(fifo), "not a regular file"),
    ]


def test_save_path_is_checked_before_training(tmp_path, capsys):
    for case, target, fragment in _bad_save_targets(tmp_path):
        out, err = _one_line_error(capsys, ["train", *QUICK, "--save", target])
        assert "--save" in err and fragment in err, (case, err)
        assert "epoch" not in out, f"{case}: trained before refusing the path"


@pytest.mark.parametrize("hidden", ["100000000000", "64,100000000000"])
def test_sizes_that_cannot_be_allocated_are_one_clear_line(capsys, hidden):
    _, err = _one_line_error(capsys, ["train", "--epochs", "1", "--no-progress", "--hidden", hidden])
    assert "sizes" in err and "bytes" in err and "100000000000" in err, err


def test_network_that_cannot_be_allocated_raises_out_of_memory_naming_sizes():
    with gpubp.use_backend("numpy"):
        with pytest.raises(gpubp.OutOfMemoryError) as info:
            gpubp.MLP([10**6, 10**7, 10])
    err = info.value
    assert isinstance(err, MemoryError)
    assert "sizes [1000000, 10000000, 10]" in str(err)
    n = 10**6 * 10**7 + 10**7 + 10**7 * 10 + 10
    assert f"{n:,} parameters" in str(err) and f"{8 * n:,} bytes" in str(err)


def test_hidden_100_million_as_a_process(tmp_path):
    """The reported case, as the console command runs it: on a machine where 7.5 billion float32
    parameters (60 GB with their gradients) do fit, it trains, so it runs with a memory limit."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30));"
            "from gpubp.cli import main; sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, GPUBP_BACKEND="numpy", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code, "train", "--hidden", "100000000", "--epochs", "1",
                           "--no-progress"], capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "sizes [64, 100000000, 10]" in proc.stderr
    assert "bytes" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_good_save_path_still_saves(tmp_path, capsys):
    target = tmp_path / "m.npz"
    with gpubp.use_backend("numpy"):
        assert cli_main(["train", *QUICK, "--save", str(target)]) == 0
        assert gpubp.load(target).sizes == (64, 8, 10)
    assert np.isfinite(gpubp.load(target).params).all()
