"""gpubp with NumPy alone: importing it, training and the command line need no optional
package (tqdm, CuPy, SciPy, mpi4py, PyTorch, ... are blocked in a child process)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from gpubp import progress

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("tqdm", "cupy", "cupyx", "cupy_backends", "scipy", "mpi4py", "torch", "threadpoolctl", "matplotlib",
           "hypothesis", "sklearn", "pandas", "mkl", "pytest")

_BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError(f"No module named {{name!r}} (blocked: gpubp must work with NumPy alone)")
        return None
sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GPUBP_BACKEND="auto")
    return subprocess.run([sys.executable, "-c", _BLOCKER + code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_import_train_and_the_command_line_need_only_numpy():
    code = """
import gpubp
from gpubp.data import load_digits
X, y = load_digits()
net = gpubp.MLP([64, 32, 10], loss="cross_entropy", seed=0)
h = net.fit(X[:300], y[:300], epochs=2, batch_size=50, progress=True)
assert len(h["loss"]) == 2 and h["loss"][1] < h["loss"][0], h
assert gpubp.get_backend().name == "numpy"
from gpubp import cli
assert cli.main(["train", "--epochs", "1", "--hidden", "16"]) == 0
print("third-party modules:", sorted({m.split(".")[0] for m in sys.modules} & {"tqdm", "cupy", "scipy", "numpy"}))
"""
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert "third-party modules: ['numpy']" in proc.stdout


def test_plain_bar_counts_batches_in_place_and_clears_its_line():
    out = io.StringIO()
    bar = progress.PlainBar(3, "epoch 1/2", stream=out, interval=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    text = out.getvalue()
    assert "\repoch 1/2: 1/3 batches" in text and "\repoch 1/2: 3/3 batches" in text
    assert text.endswith("\r" + " " * len("epoch 1/2: 3/3 batches") + "\r")  # nothing left behind


def test_without_tqdm_the_plain_bar_shows_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(progress, "_tqdm", lambda: None)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert isinstance(progress.progress_bar(5, "epoch 1/1", True), progress.PlainBar)
    assert not isinstance(progress.progress_bar(5, "epoch 1/1", False), progress.PlainBar)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not isinstance(progress.progress_bar(5, "epoch 1/1", True), progress.PlainBar)


EXTRAS = ("hypothesis", "pytest_benchmark", "pytest_timeout", "torch", "matplotlib", "mpi4py", "tqdm", "scipy",
          "sklearn", "threadpoolctl", "mkl", "cupy", "cupyx", "cupy_backends")


def test_test_files_that_need_extras_skip_cleanly_without_them():
    """With the optional packages (and their pytest plugins) missing, the whole suite still
    collects, and the files that need them skip instead of failing."""
    blocker = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, Block())
import pytest
plugins = ["-p", "no:cacheprovider", "-p", "no:benchmark", "-p", "no:hypothesispytest", "-p", "no:timeout"]
code = pytest.main(plugins + ["--collect-only", "-q", "tests", "benchmarks"])
if code == 0:
    code = pytest.main(plugins + ["-q", "tests/test_properties.py", "benchmarks/bench_training.py"])
sys.exit(code)
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "the property tests need hypothesis" in proc.stdout
    assert "the benchmarks need pytest-benchmark" in proc.stdout
