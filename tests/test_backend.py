"""Backend selection: the environment variable, set/get/use_backend, and its errors."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import gpubp
from gpubp import backend as backend_mod


def _run(code: str, env_value: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(backend_mod.ENV_VAR, None)
    if env_value is not None:
        env[backend_mod.ENV_VAR] = env_value
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="numpy, cupy, auto") as info:
        gpubp.set_backend("tensorflow")
    assert "'tensorflow'" in str(info.value)
    with pytest.raises(TypeError, match=r"backend must be a backend name \(str\), one of numpy, cupy, auto"):
        gpubp.set_backend(3)


def test_numpy_backend_has_name_and_xp():
    with gpubp.use_backend("numpy") as be:
        assert gpubp.get_backend() is be
        assert be.name == "numpy" and be.xp is np


def test_use_backend_restores_previous():
    before = gpubp.get_backend()
    with gpubp.use_backend("numpy"):
        pass
    assert gpubp.get_backend() is before


@pytest.mark.skipif(backend_mod.cupy_problem() is None, reason="a CUDA GPU is visible: cupy is available here")
def test_explicit_cupy_without_gpu_is_a_clear_error_not_a_fallback():
    problem = backend_mod.cupy_problem()
    with pytest.raises(gpubp.BackendUnavailableError) as info:
        gpubp.set_backend("cupy")
    msg = str(info.value)
    assert "'cupy' was requested" in msg
    # says which of the two problems it is, and how to install the right wheel
    assert ("not installed" in msg) or ("no CUDA GPU is visible" in msg) or ("could not query" in msg)
    assert "gpubp[cuda12]" in msg and "gpubp[cuda13]" in msg
    assert gpubp.get_backend().name != "cupy" and problem is not None


@pytest.mark.skipif(backend_mod.cupy_problem() is None, reason="a CUDA GPU is visible: auto picks cupy")
def test_auto_falls_back_quietly_to_numpy():
    with gpubp.use_backend("auto") as be:
        assert be.name == "numpy"


def test_cupy_missing_message(monkeypatch):
    from gpubp import _optional

    monkeypatch.setattr(_optional, "cupy", None)
    monkeypatch.setattr(_optional, "CUPY_IMPORT_ERROR", "ModuleNotFoundError: No module named 'cupy'")
    with pytest.raises(gpubp.BackendUnavailableError, match="CuPy is not installed"):
        gpubp.set_backend("cupy")
    with gpubp.use_backend("auto") as be:
        assert be.name == "numpy"


def test_environment_variable_is_read_at_import():
    out = _run("import gpubp; print(gpubp.get_backend().name)", "numpy")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numpy"
    # an unknown name: importing works, the backend it would pick is refused when first needed,
    # and a valid name given in code overrides it
    out = _run("import os, gpubp; os.environ['GPUBP_BACKEND'] = 'numpy'; gpubp.get_backend()", "bogus")
    assert out.returncode != 0
    assert "ValueError" in out.stderr and "GPUBP_BACKEND" in out.stderr and "numpy, cupy, auto" in out.stderr
    out = _run("import gpubp; gpubp.MLP([2, 1])", "bogus")
    assert out.returncode != 0 and "GPUBP_BACKEND" in out.stderr
    out = _run("import gpubp; print(gpubp.set_backend('numpy').name, gpubp.MLP([2, 1]).backend.name)", "bogus")
    assert out.returncode == 0 and out.stdout.split() == ["numpy", "numpy"], out.stderr


def test_import_touches_no_gpu_and_no_backend():
    out = _run("import gpubp, gpubp.backend as b; print(b._current is None)", None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_network_keeps_its_backend_and_moves(backend):
    net = gpubp.MLP([3, 2], seed=0)
    assert net.backend.name == backend.name
    before = backend.to_numpy(net.params).copy()
    net.to("numpy")
    assert net.backend.name == "numpy"
    np.testing.assert_array_equal(net.params, before)
    assert net.layers[1].W.base is not None  # still a view into the flat buffer
