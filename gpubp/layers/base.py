"""The layer protocol: what every layer of a network knows about itself.

A network (:class:`gpubp.MLP`) is its input layer followed by a sequence of layers. Each
layer knows

* its output width ``units`` from its input width (:meth:`Layer.build`);
* its parameters (:meth:`Layer.param_specs`: names, shapes, initialisation), which live one
  after another in the network's one flat parameter buffer, their gradients in the flat
  gradient buffer: :meth:`Layer.bind` hands the layer its views (``W``, ``dW``, ...);
* its non-trainable state (:meth:`Layer.state_specs`, e.g. running statistics), views into the
  network's flat state buffer;
* its forward and backward pass on the backend's ops (:meth:`Layer.forward`,
  :meth:`Layer.backward`), in training or inference mode (:class:`Pass`), with its arrays in a
  per-batch-size :class:`Cache` allocated once and reused;
* its reference formulas (:meth:`Layer.reference`, from :mod:`gpubp.reference`), for the oracle.

Backward convention (MATH.md): ``cache.dout`` holds the error signal at the layer's output, one
row per sample and not divided by n (for a layer above a coupling layer it is n dC/dA); a
layer's backward writes its parameter gradients (averaged over the n rows) and the signal at
its input into ``dX``, the previous layer's ``dout`` (``None`` for the first layer, whose input
gradient nobody needs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple


@dataclass(frozen=True)
class ParamSpec:
    """One parameter array of a layer: ``init`` is ``he`` or ``glorot`` (a weight matrix of shape
    (fan_out, fan_in), drawn from the network's seed), ``zeros`` or ``ones``."""

    name: str
    shape: Tuple[int, ...]
    init: str = "zeros"

    @property
    def size(self) -> int:
        out = 1
        for s in self.shape:
            out *= s
        return out


class Pass:
    """The settings of one pass through the network.

    ``training``: Dropout active and BatchNorm on the batch's statistics (else inference mode).
    ``update``: a training pass advances the Dropout streams and BatchNorm's running statistics
    (False for a pass that must leave the network as it is, as gradcheck's).
    ``comm``: the communicator whose ranks share the batch (None when alone); ``rows`` the
    batch's rows over all ranks, ``row_offset`` the rows of the ranks before this one.
    """

    __slots__ = ("ops", "training", "update", "comm", "rows", "row_offset")

    def __init__(self, ops: Any, training: bool, rows: int, update: bool = True, comm: Any = None,
                 row_offset: int = 0):
        self.ops = ops
        self.training = training
        self.update = update and training
        self.comm = comm if comm is not None and comm.size > 1 else None
        self.rows = rows
        self.row_offset = row_offset


class Cache:
    """One layer's arrays for one batch size (Z, A, dout, ...), allocated once and reused."""

    def __init__(self, **arrays: Any):
        self.__dict__.update(arrays)
        self.drop: Any = None  # the Dropout draw of the last training pass, if the layer applied one


Alloc = Callable[[Tuple[int, ...]], Any]


class Layer:
    """Base class of the layers of a network (see the module docstring)."""

    #: A Dropout right after this layer is applied inside its activation pass (one fused pass
    #: on the GPU), when the layer has an activation; set by the network.
    dropout: Any = None

    def __init__(self) -> None:
        self.index: Optional[int] = None  # position in net.layers (0 is the input layer)
        self.n_in: Optional[int] = None
        self.units: Optional[int] = None
        self._network: Any = None

    # ---- structure --------------------------------------------------------------------
    @property
    def size(self) -> Optional[int]:
        """The output width (``units``)."""
        return self.units

    @property
    def activation(self) -> Any:
        """The activation g applied at the end of the layer, or None."""
        return None

    def build(self, n_in: int) -> int:
        """Fix the input width; returns the output width."""
        self.n_in = n_in
        self.units = n_in
        return n_in

    def param_specs(self) -> Tuple[ParamSpec, ...]:
        """The layer's parameters, in their order in the flat buffer."""
        return ()

    def state_specs(self) -> Tuple[ParamSpec, ...]:
        """The layer's non-trainable state arrays (``init`` ``zeros`` or ``ones``)."""
        return ()

    def bind(self, params: Dict[str, Any], grads: Dict[str, Any], state: Dict[str, Any]) -> None:
        """Take the views into the network's buffers: parameter ``p`` as ``self.p``, its gradient
        as ``self.dp``, state ``s`` as ``self.s``."""
        for name, view in params.items():
            setattr(self, name, view)
            setattr(self, "d" + name, grads[name])
        for name, view in state.items():
            setattr(self, name, view)

    def host_state(self) -> Dict[str, Any]:
        """Host-side state kept in checkpoints (JSON-able), e.g. a Dropout stream's position."""
        return {}

    def check_host_state(self, state: Dict[str, Any]) -> None:
        """Raise a ValueError unless ``state`` is one :meth:`host_state` could have given."""

    def set_host_state(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`host_state` gave (checked by :meth:`check_host_state` first)."""

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments, with ``type``: what :func:`gpubp.layers.layer_from_config` takes."""
        raise NotImplementedError

    # ---- passes -----------------------------------------------------------------------
    def make_cache(self, alloc: Alloc, n: int, prev: Optional[Cache], ops: Any) -> Cache:
        """The layer's arrays for batches of ``n`` rows; ``prev`` is the previous layer's cache."""
        raise NotImplementedError

    def forward(self, run: Pass, cache: Cache, X: Any) -> Any:
        """The layer's output for input ``X`` (n rows); it may be one of ``cache``'s arrays or ``X``."""
        raise NotImplementedError

    def backward(self, run: Pass, cache: Cache, X: Any, dX: Optional[Any]) -> None:
        """From ``cache.dout``: the parameter gradients, and the signal at the input into ``dX``."""
        raise NotImplementedError

    def forward_collectives(self, run: Pass) -> None:
        """A rank without rows in a distributed step: take part in what :meth:`forward` would do
        together with the other ranks (collectives, shared state), with no rows of its own."""

    def backward_collectives(self, run: Pass) -> None:
        """As :meth:`forward_collectives`, for the backward pass."""

    def reference(self, to_numpy: Callable[[Any], Any], training: bool, rows: int) -> Any:
        """This layer for :func:`gpubp.reference.layers_loss_and_grads` (NumPy copies of its arrays)."""
        raise NotImplementedError

    def _check_free(self) -> None:
        if self._network is not None:
            raise ValueError(f"{self!r} already belongs to a network; a layer object is part of one network only "
                             "(make a new one)")


class Input(Layer):
    """Layer 0: the n_0 inputs of a sample. It has no parameters (``W`` and ``b`` are None)."""

    W = None
    b = None

    def __init__(self, units: int):
        super().__init__()
        self.index = 0
        self.units = self.n_in = units

    def __repr__(self) -> str:
        return f"Input(n_0={self.units})"
