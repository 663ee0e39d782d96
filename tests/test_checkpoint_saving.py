"""Saving checkpoints: every network the constructor accepts round-trips."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp

pytestmark = pytest.mark.timeout(120)

# every spelling of the two dtypes NumPy accepts, native or not
DTYPE_SPELLINGS = ["float32", "float64", "f4", "f8", ">f4", "<f4", ">f8", "<f8", "=f4", "single", "double",
                   np.float32, np.float64, np.dtype(">f4"), np.dtype(">f8")]


@pytest.mark.parametrize("dtype", DTYPE_SPELLINGS, ids=[str(d) for d in DTYPE_SPELLINGS])
def test_every_accepted_dtype_round_trips(backend, tmp_path, dtype):
    net = gpubp.MLP([3, 4, 2], loss="mse", dtype=dtype, seed=1)
    assert net.dtype.isnative and net.dtype.name in ("float32", "float64")
    assert net.params.dtype == net.dtype
    opt = gpubp.SGD(0.1, momentum=0.9)
    X = np.linspace(-1, 1, 15).reshape(5, 3)
    net.train_step(X, np.ones((5, 2)), opt)
    net.save(tmp_path / "m.npz", optimizer=opt)
    back = gpubp.load(tmp_path / "m.npz")
    assert back.dtype == net.dtype and back.get_config() == net.get_config()
    assert net.backend.to_numpy(back.params).tobytes() == net.backend.to_numpy(net.params).tobytes()
    opt2 = gpubp.load_optimizer(tmp_path / "m.npz", back)
    assert opt2.t == 1
