"""Batch normalisation over the features of each row, as torch.nn.BatchNorm1d (MATH.md, BatchNorm).

For node j and the n samples i of the batch (in training mode):

    mu_j = (1/n) sum_i z_ij        sigma_j^2 = (1/n) sum_i (z_ij - mu_j)^2
    zhat_ij = (z_ij - mu_j) / sqrt(sigma_j^2 + eps)        y_ij = gamma_j zhat_ij + beta_j

then an optional activation a_ij = g(y_ij). ``running_mean`` and ``running_var`` follow the
batches (``momentum`` in PyTorch's sense, the unbiased variance n/(n-1) sigma^2 in the running
estimate) and replace mu and sigma^2 in inference mode.

The statistics come from the shifted sums s1_j = sum_i (z_ij - K_j), s2_j = sum_i (z_ij - K_j)^2
with K the previous training batch's mean (``batch_mean``, the same on every rank): a
distributed step sums them over all ranks' rows in one all-reduce and normalises exactly as one
process on the concatenated batch, and since K lies close to this batch's mean, s2/n - (s1/n)^2
loses no digits to cancellation even for features far from 0. The very first training pass,
which has no previous mean, takes its own mean first (one more sum). The backward pass couples
the samples through mu and sigma (two more sums, one more all-reduce when distributed).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from .. import validation
from ..activations import Activation, get_activation
from .base import Cache, Layer, ParamSpec, Pass


def _check_real(value: Any, name: str, low: float, high: float, closed_low: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    v = validation.as_float(value, name)
    ok = (v >= low if closed_low else v > low) and v <= high
    if not ok or not np.isfinite(v):
        raise ValueError(f"{name} must lie in {'[' if closed_low else '('}{low}, {high}]; got {value!r}")
    return v


class BatchNorm(Layer):
    """Normalises each feature over the batch, then scales by ``gamma`` and shifts by ``beta``.

    Args:
        momentum: weight of the newest batch in the running statistics, in [0, 1].
        eps: added to the variance (> 0).
        activation: an activation applied after the affine step (the ``batch_norm=True``
            shortcut of :class:`gpubp.MLP` moves the hidden layer's activation here), or None.

    Attributes: ``gamma``, ``beta`` (parameters, views into the flat buffer; gradients ``dgamma``,
    ``dbeta``), ``running_mean``, ``running_var``, ``batch_mean`` (state, views into the network's
    state buffer), ``passes`` (training passes so far).
    """

    def __init__(self, momentum: float = 0.1, eps: float = 1e-5, activation: Union[str, Activation, None] = None):
        super().__init__()
        self.momentum = _check_real(momentum, "momentum", 0.0, 1.0, True)
        self.eps = _check_real(eps, "eps", 0.0, float("inf"), False)
        self._activation: Optional[Activation] = None if activation is None else get_activation(activation)
        if self._activation is not None and not self._activation.elementwise:
            raise ValueError(f"BatchNorm's activation must be elementwise; {self._activation.name!r} is for the "
                             "output layer only")
        self.gamma: Any = None
        self.beta: Any = None
        self.dgamma: Any = None
        self.dbeta: Any = None
        self.running_mean: Any = None
        self.running_var: Any = None
        self.batch_mean: Any = None
        self.passes = 0

    @property
    def activation(self) -> Optional[Activation]:
        return self._activation

    def param_specs(self) -> Tuple[ParamSpec, ...]:
        return (ParamSpec("gamma", (self.units,), "ones"), ParamSpec("beta", (self.units,), "zeros"))

    def state_specs(self) -> Tuple[ParamSpec, ...]:
        return (ParamSpec("running_mean", (self.units,), "zeros"), ParamSpec("running_var", (self.units,), "ones"),
                ParamSpec("batch_mean", (self.units,), "zeros"))

    def get_config(self) -> Dict[str, Any]:
        return {"type": "BatchNorm", "momentum": self.momentum, "eps": self.eps,
                "activation": None if self._activation is None else self._activation.name}

    def host_state(self) -> Dict[str, Any]:
        return {"passes": self.passes}

    def check_host_state(self, state: Dict[str, Any]) -> None:
        passes = state.get("passes", 0)
        if isinstance(passes, bool) or not isinstance(passes, int) or not 0 <= passes < 2**63:
            raise ValueError(f"a BatchNorm's pass count must be an integer in [0, 2^63); got {passes!r}"[:200])

    def set_host_state(self, state: Dict[str, Any]) -> None:
        self.check_host_state(state)
        self.passes = state.get("passes", 0)

    def __repr__(self) -> str:
        act = None if self._activation is None else self._activation.name
        return f"BatchNorm(momentum={self.momentum}, eps={self.eps}, g={act})"

    # ---- passes -----------------------------------------------------------------------
    def make_cache(self, alloc: Callable[[Tuple[int, ...]], Any], n: int, prev: Optional[Cache], ops: Any) -> Cache:
        u = self.units
        Y = alloc((n, u))
        sums = alloc((2 * u,))
        cache = Cache(Xhat=alloc((n, u)), Y=Y, A=Y if self._activation is None else alloc((n, u)),
                      dout=alloc((n, u)), sums=sums, s1=sums[:u], s2=sums[u:], mean=alloc((u,)),
                      inv_std=alloc((u,)), coef=alloc((u,)))
        if self.dropout is not None:
            self.dropout.attach_buffers(cache, alloc, n, ops)
        return cache

    def forward(self, run: Pass, cache: Cache, X: Any) -> Any:
        """Statistics (summed over the ranks), running statistics, then zhat, y, a (and dropout)."""
        ops = run.ops
        shift = self.batch_mean
        if run.training:
            if run.rows < 2:
                raise ValueError(f"BatchNorm in training mode needs at least 2 rows per step (the variance of one "
                                 f"row is 0); got {run.rows}")
            if self.passes == 0:  # no previous batch mean: centre on this batch's own mean, summed first
                cache.coef.fill(0.0)
                ops.batch_norm_sums(X, cache.coef, cache.s1, cache.s2, work=cache.Xhat, work2=cache.Y)
                self._reduce(run, cache.sums)
                shift = ops.xp.multiply(cache.s1, 1.0 / run.rows, out=cache.mean)
            ops.batch_norm_sums(X, shift, cache.s1, cache.s2, work=cache.Xhat, work2=cache.Y)
            self._reduce(run, cache.sums)
        self._stats(run, cache.s1, cache.s2, shift, cache.mean, cache.inv_std)
        drop = self.dropout.draw(run, cache) if self.dropout is not None else None
        cache.drop = drop
        ops.batch_norm_forward(X, cache.mean, cache.inv_std, self.gamma, self.beta, cache.Xhat, cache.Y,
                               self._activation, cache.A, dropout=drop)
        return cache.A if drop is None else drop.out

    @staticmethod
    def _reduce(run: Pass, sums: Any) -> None:
        if run.comm is not None:
            run.comm.allreduce_(sums)

    def _stats(self, run: Pass, s1: Any, s2: Any, shift: Any, mean: Any, inv_std: Any) -> None:
        run.ops.batch_norm_stats(s1, s2, shift, self.running_mean, self.running_var, mean, inv_std, float(run.rows),
                                 self.momentum, self.eps, run.training, run.update)
        if run.update:
            run.ops.xp.copyto(self.batch_mean, mean)  # the next pass's shift
            self.passes += 1

    def backward(self, run: Pass, cache: Cache, X: Any, dX: Optional[Any]) -> None:
        """Delta_Y = dout * g'(Y); dC/dgamma, dC/dbeta; the coupled signal at the input (MATH.md)."""
        ops = run.ops
        ops.batch_norm_backward_sums(cache.dout, cache.Y, cache.A, self._activation, cache.Xhat, cache.s1, cache.s2,
                                     dropout=cache.drop, work=cache.Y)
        if run.training and run.comm is not None:
            run.comm.allreduce_(cache.sums)
        rows = float(run.rows) if run.training else float(cache.dout.shape[0])
        ops.batch_norm_backward(cache.dout, cache.Xhat, cache.s1, cache.s2, self.gamma, cache.inv_std, rows,
                                run.training, self.dgamma, self.dbeta, dX, work=cache.Y, coef=cache.coef)

    # ---- a rank without rows in a distributed step ------------------------------------------
    def _empty_sums(self, run: Pass) -> Any:
        xp = run.ops.xp
        if getattr(self, "_empty", None) is None or self._empty.dtype != self.gamma.dtype or not isinstance(
                self._empty, xp.ndarray):
            self._empty = xp.zeros(2 * self.units, dtype=self.gamma.dtype)
        self._empty[...] = 0
        return self._empty

    def forward_collectives(self, run: Pass) -> None:
        if not run.training:
            return
        sums = self._empty_sums(run)
        u = self.units
        xp = run.ops.xp
        mean, inv_std = xp.empty(u, dtype=sums.dtype), xp.empty(u, dtype=sums.dtype)
        shift = self.batch_mean
        if self.passes == 0:  # as forward: the first pass's mean first
            run.comm.allreduce_(sums)
            shift = xp.multiply(sums[:u], 1.0 / run.rows, out=mean)
            sums = self._empty_sums(run)
        run.comm.allreduce_(sums)
        self._stats(run, sums[:u], sums[u:], shift, mean, inv_std)

    def backward_collectives(self, run: Pass) -> None:
        if run.training:
            run.comm.allreduce_(self._empty_sums(run))

    def reference(self, to_numpy: Callable[[Any], Any], training: bool, rows: int) -> Any:
        from ..reference import RefBatchNorm

        act = None if self._activation is None else self._activation.name
        return RefBatchNorm(to_numpy(self.gamma), to_numpy(self.beta), to_numpy(self.running_mean),
                            to_numpy(self.running_var), self.eps, act, training)
