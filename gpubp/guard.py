"""Snapshots of a network's state, and the divergence guard of ``fit`` built on them.

A :class:`Snapshot` copies the weights, the layers' state (BatchNorm's running statistics;
with ``host=True`` also each Dropout's position in its stream) and optionally the optimizer's
state into buffers allocated once, and puts them back into the same buffers (the layers' views
stay valid). The :class:`DivergenceGuard` keeps two of them to stop ``fit`` at the first
non-finite step with the newest finite state; early stopping keeps one for the best epoch.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

#: Mini-batches between two verifications (and snapshots) of the divergence guard in ``fit``.
CHECK_EVERY = 32


def optimizer_buffers(optimizer: Any, net: Any) -> Dict[str, Any]:
    """The optimizer's state buffers that live beside ``net``'s parameters (moments, velocity)."""
    state = getattr(optimizer, "state", None)
    if not isinstance(state, dict):
        return {}
    return {k: v for k, v in state.items() if isinstance(v, type(net.params))}


class Snapshot:
    """A copy of ``net``'s parameters and layer state (and of ``optimizer``'s state buffers and
    step count, when given), in buffers allocated once; ``index`` says what it was taken before
    (-1: nothing yet).

    ``host=True`` also keeps what lives on the host between steps (each Dropout's stream
    position, :meth:`MLP.host_state`), which the divergence guard needs to replay batches
    exactly; a copy of the weights alone (early stopping) leaves the streams running on.
    """

    def __init__(self, net: Any, optimizer: Any = None, host: bool = True):
        xp = net.backend.xp
        self.net, self.optimizer, self.keep_host = net, optimizer, host
        self.xp = xp
        self.params = xp.empty_like(net.params)
        self.layer_state = xp.empty_like(net.state)
        self.host: Any = None
        self.state = {k: xp.empty_like(v) for k, v in optimizer_buffers(optimizer, net).items()}
        self.t: Any = None
        self.index = -1

    def take(self, index: int = 0) -> None:
        """Copy the network's (and optimizer's) current state in; remember ``index``."""
        net, xp = self.net, self.xp
        xp.copyto(self.params, net.params)
        xp.copyto(self.layer_state, net.state)
        if self.keep_host:
            self.host = net.host_state()
        for k, v in optimizer_buffers(self.optimizer, net).items():
            xp.copyto(self.state[k], v)
        self.t = getattr(self.optimizer, "t", None)
        self.index = index

    def put(self) -> int:
        """Copy the kept state back into the network's (and optimizer's) own buffers; returns ``index``."""
        net, xp = self.net, self.xp
        xp.copyto(net.params, self.params)
        xp.copyto(net.state, self.layer_state)
        if self.host is not None:
            net.set_host_state(self.host)
        for k, v in optimizer_buffers(self.optimizer, net).items():
            xp.copyto(v, self.state[k])
        if self.t is not None:
            self.optimizer.t = self.t
        return self.index


class DivergenceGuard:
    """Stops ``fit`` at the first non-finite loss, gradient or weight and puts back the newest finite state.

    After every step the guard records s = C + sum_w dC/dw, one reduction over the flat
    gradient buffer: s is NaN or inf when the loss or any gradient is (or when the gradients
    sum beyond the dtype's range, which is divergence too). On the GPU s is written into a small
    device vector that is read back once every ``CHECK_EVERY`` batches and at the end of the
    epoch: one synchronisation per window, none per batch. At the end of every window (and so
    of every epoch) the weights the window's updates left are checked too, sum_w w in the same
    read-back: an update can overflow the weights while the loss and gradients it was computed
    from are finite (the last update of a run, which no later step would see, or weights gone
    to -inf into a ReLU that then never fires); the window is then replayed from the verified
    state to find the first update that did it. So ``fit`` never returns with non-finite weights.

    On NumPy the loss is tested at once after every step (a 0-d value already on the host). With
    an optimizer whose updates carry every non-finite gradient into the weight it updates
    (``spreads_nonfinite``: SGD, Adam and AdamW), that is all a step costs: a batch with a
    non-finite gradient leaves non-finite weights, which the next batch's loss or the window's
    weight check sees, and the replay from the verified state then finds the first failing
    batch by its s, exactly as a check of s after every step would have (the sum over the
    gradients, up to 4% of a step, is paid only on failure). With any other optimizer s itself
    is tested after every step.

    Restore point: when batch k (of the epoch, from 0) is the first with a NaN or inf, the
    weights P_k it was computed from are useless (their loss or gradient is not finite, at
    any learning rate); the newest useful state is P_{k-1}, the one before batch k-1's update,
    whose loss and gradient were finite: retaking that step with a lower learning rate is how
    training goes on (for k = 0 it is P_0, the state at the start of the epoch). Weights made
    non-finite by batch i's update count as batch k = i + 1 failing (the restore point is P_i,
    before that update). Two snapshots
    make it reachable without a copy per step: ``verified`` holds the state before the last
    batch of the previous window (whose check passed), ``spare`` receives the state before
    the last batch of the current window and replaces ``verified`` when the window passes. On
    failure ``verified`` is restored and the batches from it to k-2 are replayed (failure
    only; bit-identical on NumPy). Cost: 2P extra floats for the weights (plus twice the
    optimizer state: 2P for SGD with momentum, 4P for Adam) and one device-to-device copy of
    them per window and per epoch.
    """

    def __init__(self, net: Any, optimizer: Any, every: int):
        self.net, self.optimizer = net, optimizer
        self.xp = net.backend.xp
        self.on_host = net.backend.name == "numpy"
        self.every = every
        bind = getattr(optimizer, "_bind", None)
        if callable(bind):  # allocate the (zero) state now so the snapshots cover it
            bind(net)
        self.verified, self.spare = Snapshot(net, optimizer), Snapshot(net, optimizer)
        # whether a non-finite gradient always reaches the weights (see loss_only)
        self.spreads = bool(getattr(optimizer, "spreads_nonfinite", False))
        # the window's s values, and one slot for the weights' sum at the window's end
        self.sums = None if self.on_host else self.xp.empty(every + 1, dtype=net.dtype)
        self.window = 0  # the epoch's batch index where the current window starts
        self.count = 0  # steps recorded in the current window

    @property
    def loss_only(self) -> bool:
        """Whether each step tests its loss alone (on the host, with a ``spreads_nonfinite`` optimizer)."""
        return self.on_host and self.spreads

    def restore(self) -> int:
        """Put the verified snapshot back; returns the batch index it was taken before."""
        return self.verified.put()

    def begin_epoch(self, step: Callable[[int], Any]) -> None:
        """Start an epoch whose batch ``i`` is re-run by ``step(i)`` (gather, forward, backward,
        update; returns C) when the guard replays."""
        self.step = step
        self.verified.take(0)
        self.spare.index = -1
        self.window, self.count = 0, 0
        self.weights_failed = False

    def before_step(self, b: int, last: bool) -> None:
        """Called before batch ``b``: keep the state before a window's last batch in ``spare``."""
        if (last or b == self.window + self.every - 1) and b > self.verified.index:
            self.spare.take(b)

    def _value(self, C: Any) -> Any:
        if self.on_host:  # the reduction itself, without ndarray.sum's Python layer
            return C + np.add.reduce(self.net.grads)
        return C + self.net.grads.sum()

    def _weights_finite(self) -> bool:
        return bool(self.xp.isfinite(self.net.params.sum()))

    def after_step(self, b: int, C: Any, last: bool) -> Optional[int]:
        """Record batch ``b``'s check; the index k of the first non-finite batch once known (k = i + 1
        when batch i's update made the weights non-finite; ``weights_failed`` says which), else None."""
        self.count += 1
        if self.loss_only:
            if not math.isfinite(C):  # find the first batch whose loss or gradient failed
                return self._locate(b)
        elif self.on_host:
            if not math.isfinite(self._value(C)):
                return b
        else:
            self.sums[self.count - 1] = self._value(C)
        if self.count < self.every and not last:
            return None
        if self.on_host:
            weights_ok = self._weights_finite()
        else:  # the one synchronisation of the window: every step's s and the weights' sum
            self.sums[self.count] = self.net.params.sum()
            flags = self.xp.isfinite(self.sums[: self.count + 1]).get()
            if not flags[: self.count].all():
                return self.window + int(np.argmin(flags[: self.count]))
            weights_ok = bool(flags[self.count])
        if not weights_ok:
            return self._locate(b)
        if self.spare.index == b:  # the window passed: the state before its last batch is verified
            self.verified, self.spare = self.spare, self.verified
            self.spare.index = -1
        self.window, self.count = b + 1, 0
        return None

    def _first_failure(self, i: int) -> Tuple[Optional[int], bool]:
        """Re-run batch ``i``: (i, False) if its loss or gradient is not finite, (i + 1, True) if its
        update made the weights non-finite, else (None, False)."""
        if not bool(self.xp.isfinite(self._value(self.step(i)))):
            return i, False
        if not self._weights_finite():
            return i + 1, True
        return None, False

    def _locate(self, end: int) -> int:
        """The weights (or, with ``loss_only``, the loss) are not finite after batch ``end``: replay
        from the verified state (whose weights are finite) to the first batch that fails, and
        return its k."""
        start = self.restore()
        for i in range(start, end + 1):
            k, self.weights_failed = self._first_failure(i)
            if k is not None:
                return k
        self.weights_failed = True  # a replay that rounds differently (GPU): blame the last update
        return end + 1

    def rewind(self, k: int) -> int:
        """Batch ``k`` is the first non-finite one: put back the state before batch k-1 (or
        before k = 0); returns the index of the batch the restored state comes before."""
        target = max(k - 1, self.verified.index)
        while True:
            start = self.restore()
            for i in range(start, target):
                failed, _ = self._first_failure(i)
                if failed is not None:
                    target = max(failed - 1, start)  # replay met an earlier failure: go before it
                    break
            else:
                return target
