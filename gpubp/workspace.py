"""The arrays of one pass: every layer's buffers for one batch size, allocated once and reused."""
from __future__ import annotations

from typing import Any, List, Sequence

from .layers import Dense, Layer


class Workspace:
    """Every layer's arrays for one batch size n (:meth:`Layer.make_cache`), allocated once and
    reused; ``Z[l]``, ``A[l]``, ``Delta[l]`` are those of Dense layer l."""

    def __init__(self, xp: Any, n: int, layers: Sequence[Layer], dtype: Any, ops: Any):
        self.n, self.ops = n, ops
        self.caches: List[Any] = [None]
        prev = None
        for layer in layers[1:]:
            prev = layer.make_cache(lambda shape: xp.empty(shape, dtype=dtype), n, prev, ops)
            self.caches.append(prev)
        dense = [c for layer, c in zip(layers[1:], self.caches[1:]) if isinstance(layer, Dense)]
        self.Z: List[Any] = [None] + [c.Z for c in dense]
        self.A: List[Any] = [None] + [c.A for c in dense]
        self.Delta: List[Any] = [None] + [c.dout for c in dense]
