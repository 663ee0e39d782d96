"""The fully connected layer of the tutorial: Z^(l) = A^(l-1) W^(l)T + b^(l), A^(l) = g^(l)(Z^(l)).

``W[j, k] = w_jk^(l)`` has shape (n_l, n_{l-1}), ``b`` shape (n_l,) (None without bias). Its
backward pass is MATH.md's: Delta^(l) = dA^(l) * g'^(l)(Z^(l)), dC/dW^(l) = (1/n) Delta^(l)T
A^(l-1), dC/db^(l) = (1/n) sum_rows Delta^(l), and the signal below Delta^(l) W^(l).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple, Union

from .. import validation
from ..activations import Activation, get_activation
from .base import Cache, Layer, ParamSpec, Pass

INITS = ("he", "glorot")


class Dense(Layer):
    """A fully connected layer of ``units`` nodes.

    Args:
        units: n_l, the number of nodes.
        activation: g^(l), a name of the activation table, or None for the linear part alone
            (A^(l) = Z^(l)); for the output layer None means the loss's natural activation.
        bias: ``False`` drops b^(l) (the tutorial exactly).
        init: ``"he"`` or ``"glorot"``; by default the activation's own scheme (He for
            ReLU-like g, Glorot otherwise and without an activation).
    """

    def __init__(self, units: int, activation: Union[str, Activation, None] = None, bias: bool = True,
                 init: Optional[str] = None):
        super().__init__()
        self.units = validation.check_int(units, "units", 1)
        self._activation: Optional[Activation] = None if activation is None else get_activation(activation)
        self.bias = validation.check_bool(bias, "bias")
        if init is not None and init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)} or None; got {init!r}")
        self.init = init
        self.l: Optional[int] = None  # the tutorial's layer number among the network's Dense layers
        self.W: Any = None
        self.b: Any = None
        self.dW: Any = None
        self.db: Any = None

    @property
    def activation(self) -> Optional[Activation]:
        return self._activation

    def build(self, n_in: int) -> int:
        self.n_in = n_in
        return self.units

    def param_specs(self) -> Tuple[ParamSpec, ...]:
        init = self.init or (self._activation.init if self._activation is not None else "glorot")
        W = ParamSpec("W", (self.units, self.n_in), init)
        return (W, ParamSpec("b", (self.units,))) if self.bias else (W,)

    def get_config(self) -> Dict[str, Any]:
        return {"type": "Dense", "units": self.units,
                "activation": None if self._activation is None else self._activation.name,
                "bias": self.bias, "init": self.init}

    def __repr__(self) -> str:
        act = None if self._activation is None else self._activation.name
        where = f"l={self.l}, W{(self.units, self.n_in)}" if self.n_in is not None else f"units={self.units}"
        return f"Dense({where}, bias={self.bias}, g={act})"

    # ---- passes -----------------------------------------------------------------------
    def make_cache(self, alloc: Callable[[Tuple[int, ...]], Any], n: int, prev: Optional[Cache], ops: Any) -> Cache:
        Z = alloc((n, self.units))
        A = Z if self._activation is None else alloc((n, self.units))
        cache = Cache(Z=Z, A=A, dout=alloc((n, self.units)))
        if self.dropout is not None:
            self.dropout.attach_buffers(cache, alloc, n, ops)
        return cache

    def forward(self, run: Pass, cache: Cache, X: Any) -> Any:
        """Z = X W^T + b, A = g(Z), and the fused Dropout's output where there is one."""
        drop = self.dropout.draw(run, cache) if self.dropout is not None else None
        cache.drop = drop
        run.ops.layer_forward(X, self.W, self.b, self._activation, cache.Z, cache.A, dropout=drop)
        return cache.A if drop is None else drop.out

    def backward(self, run: Pass, cache: Cache, X: Any, dX: Optional[Any]) -> None:
        """Delta = dout * g'(Z) in place (the fused Dropout's mask first), then :meth:`backward_from_delta`."""
        if self._activation is not None:
            run.ops.activation_backward(cache.dout, cache.Z, cache.A, self._activation, out=cache.dout,
                                        dropout=cache.drop)
        self.backward_from_delta(run, cache, X, dX)

    def backward_from_delta(self, run: Pass, cache: Cache, X: Any, dX: Optional[Any]) -> None:
        """With Delta^(l) in ``cache.dout``: dC/dW = (1/n) Delta^T X, dC/db, and dX = Delta W."""
        ops = run.ops
        ops.grad_weights(cache.dout, X, out=self.dW)
        if self.db is not None:
            ops.grad_bias(cache.dout, out=self.db)
        if dX is not None:
            ops.backprop_linear(cache.dout, self.W, out=dX)

    def reference(self, to_numpy: Callable[[Any], Any], training: bool, rows: int) -> Any:
        from ..reference import RefDense

        act = None if self._activation is None else self._activation.name
        return RefDense(to_numpy(self.W), None if self.b is None else to_numpy(self.b), act)
