"""Data sets: the bundled UCI digits (offline) and MNIST from user-supplied IDX files.

The digits (1,797 8x8 images, the UCI optdigits test set, CC BY 4.0; see
``DIGITS-LICENSE.txt``) ship inside the package, 57 kB, so ``gpubp train`` works after a
plain ``pip install .`` with no network and without scikit-learn's heavy dependency chain.
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from importlib import resources
from typing import Any, Tuple

import numpy as np

__all__ = ["load_digits", "load_mnist", "read_idx", "train_test_split", "one_hot"]

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """X (1797, 64) float32 pixels scaled to [0, 1] and y (1797,) int64 labels 0..9."""
    with resources.files(__package__).joinpath("digits.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return (table[:, :64] / 16.0).astype(np.float32), table[:, 64].astype(np.int64)


def read_idx(path: "str | os.PathLike[str]") -> np.ndarray:
    """One IDX file (plain or ``.gz``) as an array: magic 0x0000TTDD, D big-endian sizes, data.

    Raises ValueError naming the file when the header, the length or the compression is wrong.
    The header is read first and the data only up to the size it declares (computed exactly,
    so dimensions whose product overflows 64 bits are refused, not wrapped): a plain file is
    checked against its size before anything is read, and a ``.gz`` file is never inflated
    beyond what its header declares.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        try:
            return _read_idx(path, f)
        except (OSError, EOFError, zlib.error) as exc:  # a corrupt or truncated .gz, a read error
            raise ValueError(f"{path!r} cannot be read as {'a gzip-compressed' if opener is gzip.open else 'an'} IDX "
                             f"file ({type(exc).__name__}: {exc})") from None


def _read_idx(path: str, f: Any) -> np.ndarray:
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise ValueError(f"{path!r} is not an IDX file: expected magic bytes 00 00, got {head[:4].hex() or 'nothing'}")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path!r}: unknown IDX data type code 0x{code:02x}; expected one of {[hex(c) for c in IDX_DTYPES]}")
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path!r}: truncated IDX header ({4 + len(dims)} bytes, expected at least {4 + 4 * ndim})")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = np.dtype(IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize  # exact: Python integers do not overflow
    if not isinstance(f, gzip.GzipFile):
        stored = os.fstat(f.fileno()).st_size - 4 - 4 * ndim
        if stored != expected:
            raise ValueError(f"{path!r}: IDX header says shape {shape} ({expected} bytes of data) but the file holds {stored}")
    chunks, size = [], 0
    while size <= expected:  # one byte past the declared size tells a longer file
        chunk = f.read(min(1 << 24, expected + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size != expected:
        held = f"{size}" if size <= expected else f"more than {expected}"
        raise ValueError(f"{path!r}: IDX header says shape {shape} ({expected} bytes of data) but the file holds {held}")
    return np.frombuffer(b"".join(chunks), dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(data_dir: str, stem: str) -> str:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"no {stem}[.gz] in {data_dir!r}")


def load_mnist(data_dir: "str | os.PathLike[str]", kind: str = "t10k") -> Tuple[np.ndarray, np.ndarray]:
    """MNIST images as X (n, 784) float32 in [0, 1] and labels y (n,) int64, from IDX files.

    ``kind`` is ``"train"`` or ``"t10k"``: reads ``{kind}-images-idx3-ubyte[.gz]`` and
    ``{kind}-labels-idx1-ubyte[.gz]`` in ``data_dir``.
    """
    data_dir = os.fspath(data_dir)
    images = read_idx(_find(data_dir, f"{kind}-images-idx3-ubyte"))
    labels = read_idx(_find(data_dir, f"{kind}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST files in {data_dir!r} disagree: images {images.shape}, labels {labels.shape}; "
            "expected (n, rows, cols) and (n,)"
        )
    X = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
    return X, labels.astype(np.int64)


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """Shuffle rows with ``seed`` and split off ``test_fraction`` of them: (X_tr, X_te, y_tr, y_te)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = max(1, int(round(X.shape[0] * test_fraction)))
    te, tr = order[:n_test], order[n_test:]
    return X[tr], X[te], y[tr], y[te]


def one_hot(y: np.ndarray, m: int, dtype: "np.dtype | str" = np.float32) -> np.ndarray:
    """Rows of length m with a 1 in column y_i."""
    out = np.zeros((y.shape[0], m), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out
