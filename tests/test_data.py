"""IDX reading (on small files the tests write, and on the real MNIST test set) and the digits."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from gpubp import data


def _write_idx(path: Path, array: np.ndarray, code: int, compress: bool = False) -> None:
    big = array.astype(np.dtype(data.IDX_DTYPES[code]).newbyteorder(">"))
    blob = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, 0x08, compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, 0x08, compress)
    X, y = data.load_mnist(tmp_path, "t10k")
    assert X.shape == (5, 12) and X.dtype == np.float32
    np.testing.assert_array_equal(X, images.reshape(5, 12) / np.float32(255))
    np.testing.assert_array_equal(y, labels)


def test_idx_other_dtypes(tmp_path):
    arr = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    _write_idx(tmp_path / "a.idx", arr, 0x0C)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.idx"), arr)
    f = np.linspace(-1, 1, 6).reshape(2, 3)
    _write_idx(tmp_path / "f.idx", f, 0x0E)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "f.idx"), f)


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x01\x02\x08\x01abcd")
    with pytest.raises(ValueError, match="bad.idx.*not an IDX file"):
        data.read_idx(bad)
    short = tmp_path / "short.idx"
    _write_idx(short, np.arange(10, dtype=np.uint8), 0x08)
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(ValueError, match="short.idx.*holds 7"):
        data.read_idx(short)
    code = tmp_path / "code.idx"
    code.write_bytes(bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(ValueError, match="unknown IDX data type"):
        data.read_idx(code)
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        data.load_mnist(tmp_path, "t10k")


def test_real_mnist_test_set(mnist_dir):
    X, y = data.load_mnist(mnist_dir, "t10k")
    assert X.shape == (10000, 784) and y.shape == (10000,)
    assert X.min() == 0.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_bundled_digits():
    X, y = data.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() == 1.0
    assert sorted(set(y.tolist())) == list(range(10))
    np.testing.assert_array_equal(np.bincount(y), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])


def test_split_and_one_hot():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, 0.3, seed=1)
    assert len(y_te) == 3 and len(y_tr) == 7
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(10))
    np.testing.assert_array_equal(X_te[:, 0], 2 * y_te)
    oh = data.one_hot(np.array([2, 0]), 3)
    np.testing.assert_array_equal(oh, [[0, 0, 1], [1, 0, 0]])
