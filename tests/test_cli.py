"""The gpubp console command."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

import gpubp
from gpubp import cli


def test_train_default_digits_reaches_97_percent(capsys):
    assert cli.main(["train", "--no-progress", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "backend numpy" in out and "UCI digits" in out
    assert out.count("epoch ") >= 40
    acc = float(re.search(r"test accuracy (\d\.\d+)\s*$", out.strip()).group(1))
    assert acc >= 0.97


def test_train_options_and_save(tmp_path, capsys):
    path = tmp_path / "net.npz"
    argv = ["train", "--no-progress", "--backend", "numpy", "--hidden", "32", "--activation", "tanh",
            "--optimizer", "sgd", "--lr", "0.1", "--nesterov", "--epochs", "3", "--batch-size", "64",
            "--dtype", "float64", "--loss", "mse", "--save", str(path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "saved to" in out
    with gpubp.use_backend("numpy"):
        net = gpubp.load(path)
    assert net.sizes == (64, 32, 10) and net.dtype == np.float64 and net.loss.name == "mse"
    opt = gpubp.load_optimizer(path, net)
    assert isinstance(opt, gpubp.SGD) and opt.nesterov and opt.t == 3 * 23


def test_train_from_idx_files(tmp_path, capsys):
    from test_data import _write_idx

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60).astype(np.uint8)
    images = (rng.integers(0, 40, (60, 4, 4)) + 200 * (np.arange(16).reshape(4, 4) % 3 == labels[:, None, None])).astype(np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images, 0x08, compress=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels, 0x08, compress=True)
    assert cli.main(["train", "--no-progress", "--backend", "numpy", "--data-dir", str(tmp_path),
                     "--epochs", "40", "--hidden", "8", "--lr", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "MNIST t10k" in out and "48 train / 12 test" in out
    assert float(re.search(r"test accuracy (\d\.\d+)\s*$", out.strip()).group(1)) >= 0.9


def test_errors_print_one_line_and_exit_nonzero(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gpubp.cli", "train", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "gpubp train: error:" in proc.stderr and "t10k-images" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "gpubp.cli", "train", "--hidden", "12,x"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "comma-separated" in proc.stderr and "Traceback" not in proc.stderr


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"numpy {np.__version__}" in out and "active backend:" in out and "GPUBP_BACKEND=" in out and "GPUBP_BLAS=" in out


def test_python_m_gpubp_is_the_command_and_reports_its_version():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "gpubp", "--version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"gpubp {gpubp.__version__}" == f"gpubp {version('gpubp')}"
    out = subprocess.run([sys.executable, "-m", "gpubp", "train", "--epochs", "x"], capture_output=True, text=True)
    assert out.returncode == 2 and "--epochs" in out.stderr  # the same parser as `gpubp`
