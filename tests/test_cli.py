"""The gpubp console command."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

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
    # 1437 training rows, the last 10% held out for validation: 1293 rows, 21 batches of 64 per epoch
    assert isinstance(opt, gpubp.SGD) and opt.nesterov and opt.t == 3 * 21


def test_train_validation_early_stopping_schedule_clipping_and_plot(tmp_path, capsys):
    """The validation rows come out of the training rows; the test rows are evaluated once, at the end."""
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    argv = ["train", "--no-progress", "--backend", "numpy", "--hidden", "32", "--epochs", "40", "--lr", "0.02",
            "--validation-split", "0.25", "--early-stopping", "2", "--lr-schedule", "step", "--clip-norm", "0.5",
            "--optimizer", "adamw", "--weight-decay", "0.001", "--plot", str(png), "--save", str(tmp_path / "net.npz")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    stopped = re.search(r"early stopping at epoch (\d+): the weights of epoch (\d+) \(validation loss (\d\.\d+)\)", out)
    assert stopped and int(stopped.group(1)) == len(lines) < 40 and int(stopped.group(2)) == len(lines) - 2
    best = re.search(rf"^epoch +{stopped.group(2)}/40 .* val_loss (\d\.\d+) ", out, re.M).group(1)
    assert best == stopped.group(3)
    assert "test loss" not in "\n".join(lines) and "0.25 of the training rows held out" in out
    assert "clipped to a norm of 0.5" in out and "StepLR(step_size=14, gamma=0.1)" in out
    assert " - lr 0.02 - " in lines[0]
    assert png.stat().st_size > 1000
    with gpubp.use_backend("numpy"):
        net = gpubp.load(tmp_path / "net.npz")
        opt = gpubp.load_optimizer(tmp_path / "net.npz", net)
    assert type(opt) is gpubp.AdamW and opt.weight_decay == 0.001 and net.epoch == len(lines)


@pytest.mark.parametrize("argv,fragment", [
    (["--early-stopping", "3", "--validation-split", "0"], "validation_split"),
    (["--lr-schedule", "plateau", "--validation-split", "0"], "validation_split"),
    (["--validation-split", "1"], "--validation-split"),
    (["--clip-norm", "0"], "--clip-norm"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--early-stopping", "-1"], "--early-stopping"),
    (["--plot", "/nonexistent-gpubp-folder/c.png"], "--plot"),
])
def test_train_refuses_bad_new_options_before_training(argv, fragment, capsys):
    assert cli.main(["train", "--backend", "numpy", "--epochs", "1"] + argv) == 2
    captured = capsys.readouterr()
    assert fragment in captured.err and "epoch 1/1" not in captured.out


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


# ---- gpubp explain -----------------------------------------------------------------------------
def test_explain_a_saved_network(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, png = tmp_path / "net.npz", tmp_path / "net.png"
    assert cli.main(["train", "--no-progress", "--backend", "numpy", "--hidden", "16", "--epochs", "2",
                     "--dtype", "float64", "--save", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["explain", "--load", str(path), "--weight", "w_12^(L)", "--samples", "4", "--png", str(png),
                     "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "dC_0/dw_12^(L) = dC_0/da_1^(L) * da_1^(L)/dz_1^(L) * dz_1^(L)/dw_12^(L)" in out
    assert "the first 4 held-out samples" in out and "(fused)" in out
    # the numbers of net.explain on the same rows
    from gpubp.recipe import TrainConfig

    with gpubp.use_backend("numpy"):
        net = gpubp.load(path)
    data = TrainConfig().load()
    e = net.explain(data.X_test[:4], data.Y_test[:4], "w_12^(L)")
    assert f"  {e.value + 0.0:.6g}\n" in out.replace("= ", " ") and f"{e.per_sample[3] + 0.0:.6g}" in out
    assert png.stat().st_size > 10_000 and f"wrote {png}" in out


def test_explain_draws_the_weights_or_the_gradients(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for show in ("weights", "gradients"):
        png = tmp_path / f"{show}.png"
        assert cli.main(["explain", "--epochs", "1", "--samples", "2", "--backend", "numpy", "--show", show,
                         "--png", str(png)]) == 0
        assert png.stat().st_size > 10_000 and f"wrote {png}" in capsys.readouterr().out


def test_explain_checks_the_picture_folder_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "missing" / "net.png"
    assert cli.main(["explain", "--epochs", "1", "--backend", "numpy", "--png", str(png)]) == 2
    err = capsys.readouterr()
    assert "--png" in err.err and "does not exist" in err.err and "training" not in err.out


@pytest.mark.parametrize("name, message", [("", "is a folder"), ("curves", "has no extension")])
def test_a_picture_path_that_would_not_be_written_as_named_is_refused_before_training(tmp_path, capsys, name, message):
    """matplotlib writes 'curves' as curves.png, and a folder not at all: said before any training."""
    pytest.importorskip("matplotlib")
    path = str(tmp_path / name) if name else str(tmp_path)
    for argv in (["train", "--epochs", "1", "--no-progress", "--backend", "numpy", "--plot", path],
                 ["explain", "--epochs", "1", "--backend", "numpy", "--png", path]):
        assert cli.main(argv) == 2
        captured = capsys.readouterr()
        assert message in captured.err and "epoch" not in captured.out and "training" not in captured.out
    assert list(tmp_path.iterdir()) == []


def test_explain_trains_the_network_gpubp_train_trains(tmp_path, capsys):
    """One recipe: the network explain trains first is, bit for bit, the one gpubp train saves
    (the same validation split, optimizer, batches)."""
    path = tmp_path / "t3.npz"
    assert cli.main(["train", "--epochs", "3", "--no-progress", "--backend", "numpy", "--save", str(path)]) == 0
    capsys.readouterr()
    argv = ["explain", "--samples", "3", "--weight", "b_1^(L)", "--backend", "numpy"]
    assert cli.main(argv + ["--load", str(path)]) == 0
    loaded = capsys.readouterr().out.split("the first 3 held-out samples:", 1)[1]
    assert cli.main(argv + ["--epochs", "3"]) == 0
    trained = capsys.readouterr().out.split("the first 3 held-out samples:", 1)[1]
    assert trained == loaded


def test_recipe_names_fold_case_and_name_the_argument():
    from gpubp.recipe import TrainConfig

    assert TrainConfig(optimizer="ADAM").learning_rate == TrainConfig(optimizer="adam").learning_rate
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        assert TrainConfig(optimizer="rmsprop").learning_rate is None


def test_explain_trains_the_default_network_first(capsys):
    assert cli.main(["explain", "--epochs", "1", "--weight", "b_3^(L-1)", "--samples", "2", "--backend", "numpy",
                     "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "training 1 epochs first" in out and "UCI digits" in out
    assert r"\frac{\partial C_0}{\partial b_{3}^{(L-1)}}" in out and "|---:|" in out


def test_explain_refuses_a_parameter_before_training(capsys):
    assert cli.main(["explain", "--weight", "w_1,99^(L)", "--backend", "numpy"]) == 2
    err = capsys.readouterr()
    assert "gpubp explain: error:" in err.err and "k = 1..64" in err.err and "training" not in err.out


@pytest.mark.parametrize("argv, message", [
    (["--split-seed", "-5"], "--split-seed must be an integer >= 0; got -5"),
    (["--optimizer", "sgd", "--momentum", "nan"], "--momentum must lie in [0, 1); got nan"),
    (["--momentum", "1.5"], "--momentum must lie in [0, 1); got 1.5"),
])
def test_train_options_are_named_in_their_errors_before_training(capsys, argv, message):
    assert cli.main(["train", "--epochs", "1", "--backend", "numpy", "--no-progress"] + argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "epoch" not in captured.out
