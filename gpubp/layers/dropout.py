"""Inverted dropout, as torch.nn.Dropout: in training, each output is a * m / (1 - p) with
m = 0 (dropped) with probability p and 1 otherwise; the identity in inference mode and at p = 0.

The masks come from the counter-based generator of :mod:`gpubp.philox`: the network's dropout
seed and the layer's position are the key, the layer's count of training passes and the
element's index the counter, so the same seed gives the same masks on every backend, a
distributed step draws for each rank's rows what one process draws for the concatenated batch,
and no generator state lives on the device (the GPU kernels compute each element's number where
they use it; the NumPy ops fill a mask array of the batch's size). The backward pass multiplies
by the same mask: dC_0/da = dC_0/da_drop * m / (1 - p) (MATH.md, Dropout).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from .. import philox, validation
from .base import Cache, Layer, Pass


class Draw:
    """One training pass's dropout: the keep probability's parameters, the stream position, the
    output array and (on backends that draw on the host) the mask array ``m / (1 - p)``."""

    __slots__ = ("p", "scale", "seed", "stream", "call", "offset", "out", "mask", "host")

    def __init__(self, p: float, seed: int, stream: int, call: int, offset: int, out: Any, mask: Any,
                 host: Optional[philox.Stream]):
        self.p, self.scale = p, 1.0 / (1.0 - p)
        self.seed, self.stream, self.call, self.offset = seed, stream, call, offset
        self.out, self.mask, self.host = out, mask, host

    def fill_mask(self, mask: np.ndarray) -> np.ndarray:
        """Draw this pass's mask m / (1 - p) into the host array ``mask`` (shaped like the output)."""
        return philox.keep_mask_into(self.host, mask, self.call, self.offset, self.p, self.scale)


class Dropout(Layer):
    """Drops each input with probability ``p`` in training mode, scaling the rest by 1/(1 - p).

    Attributes:
        p: the drop probability, in [0, 1).
        calls: the training passes drawn so far (the counter of the next pass's masks; kept in
            checkpoints, so a resumed run draws the masks the uninterrupted one would).
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
            raise TypeError(f"p must be a real number in [0, 1); got {type(p).__name__} {p!r}")
        value = validation.as_float(p, "p")
        if not 0.0 <= value < 1.0:
            raise ValueError(f"p must lie in [0, 1) (the probability of dropping a value); got {p!r}")
        self.p = value
        self.calls = 0
        self.seed: Optional[int] = None  # the network's dropout seed, set when the network is built
        self.fused_into: Optional[Layer] = None  # the layer whose activation pass applies this dropout
        self._host: Optional[philox.Stream] = None

    def get_config(self) -> Dict[str, Any]:
        return {"type": "Dropout", "p": self.p}

    def host_state(self) -> Dict[str, Any]:
        return {"calls": self.calls}

    def check_host_state(self, state: Dict[str, Any]) -> None:
        calls = state.get("calls", 0)
        if isinstance(calls, bool) or not isinstance(calls, int) or not 0 <= calls < 2**63:
            raise ValueError(f"a Dropout's pass count must be an integer in [0, 2^63); got {calls!r}"[:200])

    def set_host_state(self, state: Dict[str, Any]) -> None:
        self.check_host_state(state)
        self.calls = state.get("calls", 0)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"

    # ---- the stream ------------------------------------------------------------------------
    def _stream(self) -> philox.Stream:
        if self._host is None or int(self._host.key[0]) != self.seed or int(self._host.key[1]) != self.index:
            self._host = philox.Stream(self.seed, self.index)
        return self._host

    def mask(self, rows: int, call: Optional[int] = None, row_offset: int = 0, dtype: Any = np.float64) -> np.ndarray:
        """The mask m / (1 - p) (0 where dropped) that training pass ``call`` (default: the last
        one) drew for ``rows`` rows starting at row ``row_offset`` of the step, as a NumPy array
        of ``dtype`` (the network's dtype gives the network's mask)."""
        if self.seed is None:
            raise ValueError("this Dropout is not part of a network yet: it has no stream")
        call = self.calls - 1 if call is None else call
        if call < 0:
            raise ValueError("this Dropout has drawn no mask yet (no training pass ran)")
        out = np.empty((rows, self.units), dtype=dtype)
        return philox.keep_mask_into(self._stream(), out, call, row_offset * self.units, self.p, 1.0 / (1.0 - self.p))

    def draw(self, run: Pass, cache: Cache) -> Optional[Draw]:
        """This pass's draw (advancing the stream when the pass updates), or None when the
        dropout is the identity (inference mode, p = 0)."""
        if not run.training or self.p == 0.0:
            return None
        call = self.calls
        if run.update:
            self.calls += 1
        host = self._stream() if cache.mask is not None else None
        return Draw(self.p, self.seed, self.index, call, run.row_offset * self.units, cache.out, cache.mask, host)

    # ---- passes -----------------------------------------------------------------------------
    def attach_buffers(self, cache: Cache, alloc: Callable[[Tuple[int, ...]], Any], n: int, ops: Any) -> None:
        """Give ``cache`` (this layer's, or the layer's it is fused into) the output and mask arrays."""
        cache.out = alloc((n, self.units))
        cache.mask = None if ops.dropout_in_kernels else alloc((n, self.units))

    def make_cache(self, alloc: Callable[[Tuple[int, ...]], Any], n: int, prev: Optional[Cache], ops: Any) -> Cache:
        # the signal at the output and at the input share one array (the backward pass is in
        # place), except for a first layer, which has no previous array to share
        cache = Cache(dout=prev.dout if prev is not None else alloc((n, self.units)))
        if self.fused_into is None:
            self.attach_buffers(cache, alloc, n, ops)
        else:
            cache.out = cache.mask = None
        return cache

    def forward(self, run: Pass, cache: Cache, X: Any) -> Any:
        if self.fused_into is not None:  # the layer before applied it
            return X
        drop = cache.drop = self.draw(run, cache)
        if drop is None:
            return X
        return run.ops.dropout_forward(X, drop)

    def backward(self, run: Pass, cache: Cache, X: Any, dX: Optional[Any]) -> None:
        if self.fused_into is None and cache.drop is not None and dX is not None:
            run.ops.dropout_backward(cache.dout, cache.drop, out=dX)  # dX is cache.dout: in place

    def forward_collectives(self, run: Pass) -> None:
        if run.training and run.update and self.p > 0.0:
            self.calls += 1  # every rank's stream stays at the same pass

    def reference(self, to_numpy: Callable[[Any], Any], training: bool, rows: int) -> Any:
        from ..reference import RefDropout

        if not training or self.p == 0.0:
            return RefDropout(None)
        dtype = self._network.dtype if self._network is not None else np.float64
        return RefDropout(self.mask(rows, dtype=dtype))
