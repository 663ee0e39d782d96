"""The counter-based generator dropout masks are drawn from: Philox4x64-10, one stream on both backends.

Philox (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) turns a 256-bit
counter and a 128-bit key into four 64-bit words with no state in between, so any element of
a stream can be computed on its own: the GPU kernels compute each element's number where they
use it (no mask array, no generator state on the device), and NumPy's own
:class:`numpy.random.Philox`, which is the same function, fills the host masks. Both read the
stream the same way, so the masks of a seed are the same on NumPy and on CuPy.

The stream of one dropout call: key = (``seed``, ``stream``) (the network's dropout seed and the
layer's position), counter of block b = (b + 1, ``call``, 0, 0) (``call`` counts the layer's
training passes). Element e of the call (row-major over the rows of all ranks, so a rank's
rows continue where the previous rank's end) is

* float64: word e mod 4 of block e div 4, as u = (word >> 11) 2^-53 (NumPy's ``random()``);
* float32: half (e mod 2; low half first) of word (e div 2) mod 4 of block e div 8, as
  u = (half >> 8) 2^-24 (NumPy's ``random(dtype=float32)``),

so u is uniform on [0, 1) with 53 or 24 random bits, and an element is kept when u >= p.
``kernels/gpubp_common.cuh`` (``gpubp_uniform``) is the device side of the same definition.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

#: Stream elements per Philox block (four 64-bit words) for each dtype.
PER_BLOCK = {"float32": 8, "float64": 4}


def dropout_seed(seed: Optional[int]) -> int:
    """The 64-bit key word of a network's dropout streams, derived from the network's ``seed``
    (fresh entropy when ``seed`` is None)."""
    entropy = np.random.SeedSequence(None if seed is None else [int(seed), 0x64726F70])  # "drop"
    return int(entropy.generate_state(1, np.uint64)[0])


class Stream:
    """The host side of one layer's streams: NumPy's Philox, positioned per call."""

    def __init__(self, seed: int, stream: int):
        self.key = np.array([seed, stream], dtype=np.uint64)
        self._bits = np.random.Philox(key=self.key)
        self._gen = np.random.Generator(self._bits)
        self._counter = np.zeros(4, dtype=np.uint64)

    def uniform_into(self, out: np.ndarray, call: int, offset: int = 0) -> np.ndarray:
        """Fill the C-contiguous float32/float64 array ``out`` with elements ``offset``,
        ``offset + 1``, ... of call ``call``'s stream (module docstring)."""
        per = PER_BLOCK[out.dtype.name]
        block, skip = divmod(int(offset), per)
        self._counter[0], self._counter[1] = block, call  # NumPy adds 1 before the first block
        self._bits.state = {"bit_generator": "Philox", "state": {"counter": self._counter, "key": self.key},
                            "buffer": np.zeros(4, dtype=np.uint64), "buffer_pos": 4, "has_uint32": 0,
                            "uinteger": 0}
        if skip:  # the elements of the first block before ``offset``
            self._gen.random(skip, dtype=out.dtype)
        self._gen.random(out=out.reshape(-1), dtype=out.dtype)
        return out


def keep_mask_into(stream: Stream, out: np.ndarray, call: int, offset: int, p: float, scale: float) -> np.ndarray:
    """``out`` = m / (1 - p) with m = [u >= p] for the elements of ``out`` (module docstring):
    ``scale`` = 1 / (1 - p) where the element is kept, 0 where it is dropped."""
    stream.uniform_into(out, call, offset)
    np.greater_equal(out, p, out=out)
    return np.multiply(out, scale, out=out)

