"""What fit prints: a line per epoch in a pipe (verbose 1 and 2), nothing at verbose 0, and a
progress bar with the running loss on a terminal."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import gpubp
from gpubp.progress import format_epoch

SCRIPT = """
import gpubp
from gpubp.data import load_digits
X, y = load_digits()
net = gpubp.MLP([64, 16, 10], loss="cross_entropy", seed=0)
net.fit(X[:300], y[:300], epochs=3, batch_size=8, validation_split=0.2, {args})
print("done")
"""
LINE = re.compile(r"^epoch ([1-3])/3 - loss \d\.\d{4} - accuracy \d\.\d{4} - val_loss \d\.\d{4} - "
                  r"val_accuracy \d\.\d{4} - lr 0\.001 - \d+\.\d\d s$")


def _run(args: str, **kw):
    env = dict(os.environ, GPUBP_BACKEND="numpy")
    return subprocess.run([sys.executable, "-c", SCRIPT.format(args=args)], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


@pytest.mark.parametrize("args", ["", "verbose=1", "verbose=2", "progress=True"])
def test_a_line_per_epoch_in_a_pipe(args):
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [LINE.match(line).group(1) for line in lines[:-1]] == ["1", "2", "3"], proc.stdout
    assert lines[-1] == "done"
    assert "\r" not in proc.stdout and "\r" not in proc.stderr and "batch" not in proc.stderr  # no bar in a pipe


@pytest.mark.parametrize("args", ["verbose=0", "progress=False"])
def test_silent(args):
    proc = _run(args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n" and proc.stderr == ""


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_progress_bar_with_the_running_loss_on_a_terminal():
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a terminal 160 columns wide
    try:
        env = dict(os.environ, GPUBP_BACKEND="numpy")
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(args="verbose=1")], stdout=subprocess.PIPE,
                                stderr=slave, env=env, text=True)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    bar = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert re.search(r"epoch 1/3:.*batch.*loss \d\.\d{4}", bar), bar[-2000:]  # tqdm's bar with the running loss
    assert [LINE.match(line) is not None for line in out.splitlines()[:-1]] == [True] * 3  # the lines too


def test_format_epoch_leaves_out_missing_values():
    line = format_epoch(7, 120, {"loss": 0.5, "accuracy": None, "val_loss": 2e-5, "lr": 0.1}, 1.234)
    assert line == "epoch   7/120 - loss 0.5000 - val_loss 2e-05 - lr 0.1 - 1.23 s"


def test_verbose_prints_to_stdout_in_process(capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    gpubp.MLP([3, 2], loss="mse", seed=0).fit(X, Y, epochs=2, verbose=2)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("epoch 1/2 - loss ") and " - accuracy" not in out[0]
