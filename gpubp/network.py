"""The multilayer perceptron: flat parameter buffers, batched forward and backward passes.

Notation as in MATH.md: layer 0 is the input, layers 1..L have weights ``W^(l)`` of shape
(n_l, n_{l-1}) with ``W[j, k] = w_jk^(l)`` and biases ``b^(l)`` of shape (n_l,). Rows of
``X``, ``Z``, ``A`` and ``Delta`` are the n samples of a batch; every pass is a handful of
matrix products and elementwise operations over the whole batch, never a loop over samples.

All parameters live in one contiguous buffer (and all gradients in another) of which the
layers' ``W`` and ``b`` are views, so an optimizer updates every parameter in one fused
operation and a distributed run reduces every gradient in one call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import checkpoint, distributed, memory, validation
from .activations import Activation, get_activation
from .backend import Backend, get_backend, use_backend
from .losses import Loss, get_loss

if TYPE_CHECKING:  # for annotations only
    from .optim import Optimizer
    from .train import History


@dataclass
class Layer:
    """Layer l of the network: ``W`` (n_l, n_{l-1}), ``b`` (n_l,) or None, activation g^(l).

    ``W``, ``b``, ``dW`` and ``db`` are views into the network's flat parameter and gradient
    buffers. Layer 0 (the input layer) has no parameters: its ``W`` and ``b`` are ``None``.
    """

    index: int
    size: int
    activation: Optional[Activation]
    W: Optional[Any] = None
    b: Optional[Any] = None
    dW: Optional[Any] = None
    db: Optional[Any] = None

    def __repr__(self) -> str:
        if self.W is None:
            return f"Layer({self.index}, input, n_0={self.size})"
        act = self.activation.name if self.activation else None
        return f"Layer({self.index}, W{tuple(self.W.shape)}, bias={self.b is not None}, g={act})"


class _Workspace:
    """Z^(l), A^(l) and Delta^(l) buffers for one batch size n, allocated once and reused."""

    def __init__(self, xp: Any, n: int, sizes: Sequence[int], dtype: Any):
        L = len(sizes) - 1
        self.n = n
        self.Z: List[Any] = [None] + [xp.empty((n, sizes[l]), dtype=dtype) for l in range(1, L + 1)]
        self.A: List[Any] = [None] + [xp.empty((n, sizes[l]), dtype=dtype) for l in range(1, L + 1)]
        self.Delta: List[Any] = [None] + [xp.empty((n, sizes[l]), dtype=dtype) for l in range(1, L + 1)]


class MLP:
    """A fully connected network trained by backpropagation (MATH.md).

    Args:
        sizes: node counts ``[n_0, n_1, ..., n_L]`` (input width first, at least two sizes).
        activation: g of the hidden layers: one name, or one name per hidden layer.
        output_activation: g^(L); by default the loss's natural one (``sse``: sigmoid,
            ``mse``: identity, ``cross_entropy``: softmax, ``binary_cross_entropy``: sigmoid).
        loss: ``sse`` (the tutorial's C_0 = sum_j (a_j - y_j)^2), ``mse``, ``cross_entropy``
            or ``binary_cross_entropy``.
        dtype: ``"float32"`` (default) or ``"float64"``.
        seed: an integer in [0, 2**128) or None; seeds the initialisation (He for ReLU-like
            layers, Glorot otherwise) and the shuffling of :meth:`fit`; the same seed gives the
            same numbers on every backend.
        bias: ``False`` drops every b^(l), reproducing the tutorial exactly.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: Union[str, Sequence[str]] = "relu",
        output_activation: Optional[str] = None,
        loss: str = "sse",
        dtype: Union[str, Any] = "float32",
        seed: Optional[int] = None,
        bias: bool = True,
    ):
        self._configure(sizes, activation, output_activation, loss, dtype, seed, bias)
        with self._allocation_errors():
            self._build(self._initial_parameters(), copy=False)

    def _allocation_errors(self) -> Any:
        """A context in which running out of memory is a :class:`gpubp.OutOfMemoryError` naming
        ``sizes`` and the bytes its parameters and gradients need."""
        P = self.n_params
        return memory.translated_out_of_memory(
            self.backend, f"building a network of sizes {list(self.sizes)}",
            f"its {P:,} parameters need {2 * P * self.dtype.itemsize:,} bytes ({self.dtype.name} weights and "
            f"their gradients): choose smaller sizes")

    def _configure(self, sizes: Sequence[int], activation: Union[str, Sequence[str]] = "relu",
                   output_activation: Optional[str] = None, loss: str = "sse", dtype: Union[str, Any] = "float32",
                   seed: Optional[int] = None, bias: bool = True) -> None:
        """Check the constructor's arguments and set the architecture; allocates nothing."""
        self.sizes: Tuple[int, ...] = validation.check_sizes(sizes)
        L = len(self.sizes) - 1
        self.loss: Loss = get_loss(loss)
        hidden = validation.check_activations(activation, L - 1)
        out_name = output_activation if output_activation is not None else self.loss.default_output_activation
        out_act = get_activation(out_name, "output_activation")
        for l, act in enumerate(hidden, start=1):
            if not act.elementwise:
                raise ValueError(f"activation of hidden layer {l} must be elementwise; {act.name!r} is for the output layer only")
        required = self.loss.requires_output_activation
        if required is not None and out_act.name != required:
            raise ValueError(
                f"loss {self.loss.name!r} needs output_activation={required!r} (its fused Delta = A - Y); got {out_act.name!r}"
            )
        self.activations: Tuple[Activation, ...] = tuple(hidden) + (out_act,)
        self.dtype = validation.check_dtype(dtype)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False; got {type(bias).__name__} {bias!r}")
        self.bias = bool(bias)
        self.seed = validation.check_seed(seed)
        self.backend: Backend = get_backend()
        self._rng = np.random.default_rng(self.seed)
        #: The number of the last epoch :meth:`fit` completed (0 for a new network); checkpoints
        #: keep it, so ``fit(X, Y, epochs=E, initial_epoch=net.epoch)`` resumes a saved run.
        self.epoch = 0

    @classmethod
    def from_parameters(cls, params: Any, **config: Any) -> "MLP":
        """The network ``config`` describes (the constructor's arguments, as :meth:`get_config`
        gives them) with the flat parameter buffer ``params`` (shape (n_params,), the network's
        dtype) in place of a random initialisation. A NumPy ``params`` on the NumPy backend
        becomes the network's buffer itself, not a copy; the shuffling generator is seeded from
        ``seed`` as in the constructor.
        """
        net = cls.__new__(cls)
        net._configure(**config)
        shape, dtype = getattr(params, "shape", None), getattr(params, "dtype", None)
        if shape != (net.n_params,) or dtype != net.dtype:
            raise ValueError(f"params must be an array of shape ({net.n_params},) and dtype {net.dtype} for sizes "
                             f"{list(net.sizes)} (bias={net.bias}); got {validation._describe(params)}")
        with net._allocation_errors():
            net._build(params, copy=False)
        return net

    # ---- construction ----------------------------------------------------------------
    @property
    def L(self) -> int:
        """Number of layers with weights (layer 0 is the input)."""
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        """Total number of parameters (length of the flat buffer)."""
        return sum(self._shapes_sizes())

    def _shapes_sizes(self) -> List[int]:
        out = []
        for l in range(1, self.L + 1):
            out.append(self.sizes[l] * self.sizes[l - 1])
            if self.bias:
                out.append(self.sizes[l])
        return out

    def _initial_parameters(self) -> np.ndarray:
        """He (ReLU-like g) or Glorot initialisation, drawn in float64 on the host from ``seed``."""
        chunks = []
        for l in range(1, self.L + 1):
            fan_out, fan_in = self.sizes[l], self.sizes[l - 1]
            if self.activations[l - 1].init == "he":
                W = self._rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                W = self._rng.uniform(-limit, limit, size=(fan_out, fan_in))
            chunks.append(W.ravel())
            if self.bias:
                chunks.append(np.zeros(fan_out))
        return np.concatenate(chunks).astype(self.dtype)

    def _build(self, flat: Any, copy: bool = True) -> None:
        """Put ``flat`` on the backend as the parameter buffer; make the per-layer views.

        The buffer is ``flat`` itself where ``copy`` is False and ``flat`` is already a
        C-contiguous, aligned, writable backend array of the dtype, and the array converting
        ``flat`` made where that is new (another dtype, or moved between host and device);
        otherwise a copy, so the network never shares memory its caller keeps.
        """
        xp = self.backend.xp
        params = self.backend.asarray(flat, dtype=self.dtype)
        if params is flat:
            reuse = not copy
        else:  # converted: new memory, unless NumPy made a view of flat (of a subclass such as memmap)
            reuse = not (isinstance(flat, np.ndarray) and isinstance(params, np.ndarray)
                         and np.may_share_memory(params, flat))
        flags = params.flags
        reuse = reuse and flags.c_contiguous and getattr(flags, "writeable", True) and getattr(flags, "aligned", True)
        self.params = params if reuse else params.copy()
        # two trailing slots beyond the gradients hold a batch's n C and n, so that a distributed
        # step reduces gradients, loss and row count in one call (gpubp.distributed)
        self._grad_buffer = xp.zeros(self.params.size + 2, dtype=self.dtype)
        self.grads = self._grad_buffer[: self.params.size]
        self.layers: List[Layer] = [Layer(0, self.sizes[0], None)]
        offset = 0
        for l in range(1, self.L + 1):
            shape = (self.sizes[l], self.sizes[l - 1])
            size = shape[0] * shape[1]
            layer = Layer(l, self.sizes[l], self.activations[l - 1])
            layer.W = self.params[offset : offset + size].reshape(shape)
            layer.dW = self.grads[offset : offset + size].reshape(shape)
            offset += size
            if self.bias:
                layer.b = self.params[offset : offset + shape[0]]
                layer.db = self.grads[offset : offset + shape[0]]
                offset += shape[0]
            self.layers.append(layer)
        self._workspaces: Dict[int, _Workspace] = {}

    def _workspace(self, n: int) -> _Workspace:
        ws = self._workspaces.get(n)
        if ws is None:
            if len(self._workspaces) >= 4:  # a fit uses two sizes at most (full and last batch)
                self._workspaces.clear()
            ws = self._workspaces[n] = _Workspace(self.backend.xp, n, self.sizes, self.dtype)
        return ws

    def __repr__(self) -> str:
        acts = ",".join(a.name for a in self.activations)
        return (
            f"MLP(sizes={list(self.sizes)}, activations=[{acts}], loss={self.loss.name!r}, "
            f"dtype={self.dtype.name!r}, bias={self.bias}, backend={self.backend.name!r})"
        )

    def to(self, backend: str) -> "MLP":
        """Move the parameters to another backend (in place); returns ``self``."""
        with use_backend(backend) as target:
            flat = self.backend.to_numpy(self.params)
            self.backend = target
            self._build(flat)
        return self

    # ---- forward ---------------------------------------------------------------------
    def _forward(self, X: Any, ws: _Workspace) -> Any:
        """Z^(l) = A^(l-1) W^(l)T + b^(l), A^(l) = g^(l)(Z^(l)) for l = 1..L; returns A^(L)."""
        ops = self.backend.ops
        A_prev = X
        for l in range(1, self.L + 1):
            layer = self.layers[l]
            ops.layer_forward(A_prev, layer.W, layer.b, layer.activation, ws.Z[l], ws.A[l])
            A_prev = ws.A[l]
        return A_prev

    def forward(self, X: Any) -> Any:
        """A^(L) for the n rows of X (shape (n, n_0)), as a new backend array of shape (n, n_L)."""
        X = validation.check_X(self, X)
        with memory.translated_out_of_memory(self.backend, f"in forward on {X.shape[0]} rows",
                                             memory.batch_hint(X.shape[0], "number of rows per call")):
            return self._forward(X, self._workspace(X.shape[0])).copy()

    def predict(self, X: Any) -> Any:
        """The network's outputs A^(L) for X (same as :meth:`forward`)."""
        return self.forward(X)

    def predict_classes(self, X: Any) -> Any:
        """Class index per row: argmax of A^(L), or A^(L) > 0.5 for a single output node."""
        A = self.forward(X)
        xp = self.backend.xp
        if A.shape[1] == 1:
            return (A[:, 0] > 0.5).astype(xp.int64)
        return A.argmax(axis=1)

    # ---- backward --------------------------------------------------------------------
    def _loss_and_grads(self, X: Any, Y: Any) -> Any:
        """One forward and backward pass over the batch; gradients land in ``self.grads``.

        MATH.md: Delta^(L) = dC_0/dA^(L) * g'^(L)(Z^(L)); Delta^(l-1) = (Delta^(l) W^(l)) *
        g'^(l-1)(Z^(l-1)); dC/dW^(l) = (1/n) Delta^(l)T A^(l-1); dC/db^(l) = (1/n) sum_rows Delta^(l).
        Returns C as a 0-d backend array.
        """
        ops = self.backend.ops
        n = X.shape[0]
        ws = self._workspace(n)
        self._forward(X, ws)
        L = self.L
        out = self.layers[L]
        C = ops.loss_head(self.loss, out.activation, ws.Z[L], ws.A[L], Y, ws.Delta[L])
        for l in range(L, 0, -1):
            layer = self.layers[l]
            A_prev = ws.A[l - 1] if l > 1 else X
            ops.grad_weights(ws.Delta[l], A_prev, out=layer.dW)
            if layer.db is not None:
                ops.grad_bias(ws.Delta[l], out=layer.db)
            if l > 1:
                below = self.layers[l - 1]
                ops.backprop_linear(ws.Delta[l], layer.W, out=ws.Delta[l - 1])
                ops.activation_backward(ws.Delta[l - 1], ws.Z[l - 1], ws.A[l - 1], below.activation, out=ws.Delta[l - 1])
        return C

    def loss_and_grads(self, X: Any, Y: Any, comm: Any = None) -> Tuple[float, List[Tuple[Any, Optional[Any]]]]:
        """C = (1/n) sum_i C_0^(i) and [(dC/dW^(l), dC/db^(l)) for l = 1..L], averaged over the n rows.

        The gradients are copies (backend arrays); ``db`` is ``None`` when ``bias=False``.
        With ``comm`` (from :func:`gpubp.distributed.init`) every rank passes its own rows and
        gets the averages over all rows of all ranks, as one process would on their
        concatenation; the first call broadcasts rank 0's parameters to every rank.
        """
        comm = distributed.check_comm(comm, "loss_and_grads")
        X, Y = validation.check_XY(self, X, Y)
        if comm is not None:
            distributed.ensure_synchronized(self, comm, "loss_and_grads")
        with memory.translated_out_of_memory(self.backend, f"in loss_and_grads on {X.shape[0]} rows",
                                             memory.batch_hint(X.shape[0], "batch")):
            C = self._loss_and_grads(X, Y)
        if comm is not None:
            C = distributed.allreduce_gradients(self, C, X.shape[0], comm)
        grads = [
            (layer.dW.copy(), None if layer.db is None else layer.db.copy()) for layer in self.layers[1:]
        ]
        return float(C), grads

    def train_step(self, X: Any, Y: Any, optimizer: "Optimizer", comm: Any = None) -> Any:
        """One forward, backward and optimizer update on one batch; returns C as a 0-d array.

        The arguments are checked first (a rejected call changes neither the weights nor the
        optimizer); on the GPU that check is one synchronisation, the only one: the returned
        loss stays on the backend. The step itself does not look for NaN/inf (``fit`` does).
        With ``comm`` the batch is the union of every rank's X, Y: gradients and C are averaged
        over all their rows (one all-reduce) before the same update is applied on every rank.
        """
        comm = distributed.check_comm(comm, "train_step")
        validation.check_optimizer(optimizer, self)
        X, Y = validation.check_XY(self, X, Y)
        if comm is not None:
            distributed.ensure_synchronized(self, comm, "train_step", optimizer)
        with memory.translated_out_of_memory(self.backend, f"in train_step on {X.shape[0]} rows",
                                             memory.batch_hint(X.shape[0], "batch")):
            return self._train_step(X, Y, optimizer, comm)

    def _train_step(self, X: Any, Y: Any, optimizer: Any, comm: Any = None) -> Any:
        """:meth:`train_step` on arguments already checked (``fit``'s inner loop).

        ``X is None`` is this rank's empty share of a distributed step (its shard has run out).
        """
        if X is None:
            C = distributed.allreduce_gradients(self, None, 0, comm)
        else:
            C = self._loss_and_grads(X, Y)
            if comm is not None:
                C = distributed.allreduce_gradients(self, C, X.shape[0], comm)
        optimizer.step(self)
        return C

    # ---- evaluation ------------------------------------------------------------------
    def evaluate(self, X: Any, Y: Any, batch_size: int = 4096) -> Tuple[float, Optional[float]]:
        """(C, accuracy) over the whole of X, Y in batches; accuracy is None for non-class targets."""
        from .train import evaluate

        return evaluate(self, X, Y, batch_size=batch_size)

    def fit(self, X: Any, Y: Any, epochs: int = 10, batch_size: int = 32, optimizer: Optional["Optimizer"] = None,
            validation_data: Optional[Tuple[Any, Any]] = None, shuffle: bool = True,
            progress: bool = True, callback: Any = None, initial_epoch: int = 0, comm: Any = None) -> "History":
        """Train by mini-batch gradient descent; returns the per-epoch :class:`~gpubp.train.History`.

        See :func:`gpubp.train.fit` for the arguments.
        """
        from .train import fit

        return fit(self, X, Y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                   validation_data=validation_data, shuffle=shuffle, progress=progress, callback=callback,
                   initial_epoch=initial_epoch, comm=comm)

    # ---- persistence -----------------------------------------------------------------
    def save(self, path: Any, optimizer: Any = None) -> None:
        """Write weights, architecture and dtype (and optimizer state) to ``path`` atomically."""
        checkpoint.save(self, path, optimizer=optimizer)

    @classmethod
    def describe(cls, config: Any) -> Tuple["MLP", Dict[str, Tuple[Tuple[int, ...], np.dtype]]]:
        """(the architecture ``config`` describes, configured but not allocated; the arrays a
        checkpoint of it holds, {name: (shape, dtype)}) for ``config`` as :meth:`get_config`
        gives it. TypeError or ValueError, as the constructor's, for anything else: this is how
        :mod:`gpubp.checkpoint` checks a file's metadata before reading its arrays.
        """
        keys = sorted(("sizes", "activation", "output_activation", "loss", "dtype", "seed", "bias"))
        if not isinstance(config, dict) or sorted(config) != keys:
            raise ValueError(f"config must hold exactly {', '.join(keys)}; got {config!r}"[:300])
        if not isinstance(config["dtype"], str):
            raise TypeError(f"config dtype must be a name; got {config['dtype']!r}")
        net = cls.__new__(cls)
        net._configure(**config)  # every rule of the constructor, no allocation
        return net, {"params": ((net.n_params,), net.dtype)}

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments that rebuild this architecture."""
        return {
            "sizes": list(self.sizes),
            "activation": [a.name for a in self.activations[:-1]],
            "output_activation": self.activations[-1].name,
            "loss": self.loss.name,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "bias": self.bias,
        }


def load(path: Any, optimizer: Any = None) -> MLP:
    """The network saved at ``path`` (a :mod:`gpubp.checkpoint` file), on the active backend;
    restores ``optimizer``'s state too if given.

    The file is untrusted (see :mod:`gpubp.checkpoint`): its metadata are checked by the
    constructor's rules and against the stored arrays' headers before any array is read; the
    parameters are then read straight into the network's buffer (no random initialisation:
    the peak is about twice the parameters' size). Anything malformed is a
    :class:`~gpubp.errors.CheckpointError` naming the file, and nothing (``optimizer``
    included) changes unless the whole file is valid.
    """
    if optimizer is not None:
        validation.check_optimizer(optimizer)
    with checkpoint.Checkpoint(path, MLP.describe) as ck:
        if optimizer is not None:
            ck.check_optimizer(optimizer, ck.n_params)
        params = ck.read("params")
        loaded = {"params": params}
        state = ck.optimizer_state() if optimizer is not None else None
        if state is not None:
            loaded.update({f"optimizer/{k}": v for k, v in state["state"].items()})
        ck.verify(loaded)
        del loaded
        net = MLP.from_parameters(params, **ck.config)  # out of memory: an error naming the sizes
        net._rng, net.epoch = ck.rng, ck.epoch
    if optimizer is not None:
        optimizer.load_state_dict(state, net)
    return net
