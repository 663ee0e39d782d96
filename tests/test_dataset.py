"""The rows of one fit served by mini-batch (gpubp.dataset): each gather is the fancy-indexed rows
of X, Y and the class indices, on either backend and from host memory (streaming)."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp import memory
from gpubp.dataset import Dataset
from gpubp.ops.base import Ops
from gpubp.ops.numpy_ops import NumpyOps


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("targets", ["labels", "one-hot", "values"])
def test_gather_is_the_indexed_rows(backend, monkeypatch, stream, targets):
    monkeypatch.setattr(memory, "should_stream", lambda backend, nbytes: stream)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6)).astype(np.float32)
    y = rng.integers(0, 4, 50)
    loss = "mse" if targets == "values" else "cross_entropy"
    Y = {"labels": y, "one-hot": np.eye(4, dtype=np.float32)[y], "values": rng.normal(size=(50, 4))}[targets]
    net = gpubp.MLP([6, 5, 4], loss=loss, seed=0)
    data = Dataset(net, X, Y)
    order = data.order(np.random.default_rng(1))
    to_np = net.backend.to_numpy
    seen = []
    for s in range(0, 50, 16):  # three full batches and a short one: two buffer sizes
        Xb, Yb, Cb = data.gather(order[s: s + 16])
        idx = np.asarray(to_np(order) if not isinstance(order, np.ndarray) else order)[s: s + 16]
        np.testing.assert_array_equal(to_np(Xb), X[idx])
        np.testing.assert_array_equal(to_np(Yb), np.asarray(Y, dtype=Yb.dtype)[idx])
        if targets == "values":
            assert Cb is None
        else:
            np.testing.assert_array_equal(to_np(Cb), y[idx])
            assert (Cb is Yb) == (targets == "labels")  # integer labels are their own class indices
        seen.append(Xb)
    assert seen[0] is seen[1] is seen[2] and seen[3] is not seen[0]  # reused buffers per batch size


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_take_rows_is_the_reference_gather(dtype):
    rng = np.random.default_rng(2)
    src = rng.normal(size=(40, 7)).astype(dtype)
    idx = rng.permutation(40)[:13]
    out, ref = np.empty((13, 7), dtype), np.empty((13, 7), dtype)
    assert NumpyOps().take_rows(src, idx, out) is out
    Ops(np).take_rows(src, idx, ref)
    np.testing.assert_array_equal(out, src[idx])
    np.testing.assert_array_equal(ref, src[idx])
