"""The network: its layers, flat parameter buffers, and batched forward and backward passes.

Notation as in MATH.md: layer 0 is the input; the Dense layers l = 1..L have weights ``W^(l)``
of shape (n_l, n_{l-1}) with ``W[j, k] = w_jk^(l)`` and biases ``b^(l)`` of shape (n_l,);
Dropout and BatchNorm layers may sit between them (:mod:`gpubp.layers`). Rows of ``X``, ``Z``,
``A`` and ``Delta`` are the n samples of a batch; every pass is a handful of matrix products
and elementwise operations over the whole batch per layer, never a loop over samples.

All parameters live in one contiguous buffer (all gradients in another, the layers' state in a
third) of which the layers' arrays are views (:mod:`gpubp.parameters`), so an optimizer updates
every parameter in one fused operation and a distributed run reduces every gradient in one call.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import checkpoint, distributed, memory, parameters, philox, validation
from .errors import CheckpointError
from .activations import Activation, get_activation
from .backend import Backend, get_backend, use_backend
from .layers import BatchNorm, Dense, Dropout, Input, Layer, Pass, layer_from_config
from .losses import Loss, get_loss

if TYPE_CHECKING:  # for annotations only
    from .optim import Optimizer
    from .history import History


class _Workspace:
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

    def arrays(self) -> List[Any]:
        """Every distinct array of the workspace."""
        seen: Dict[int, Any] = {}
        for c in self.caches[1:]:
            for a in vars(c).values():
                if hasattr(a, "shape") and hasattr(a, "dtype"):
                    seen.setdefault(id(a), a)
        return list(seen.values())


class MLP:
    """A network of layers trained by backpropagation (MATH.md).

    Built from sizes, as the tutorial draws it::

        MLP([64, 128, 64, 10], activation="relu", loss="cross_entropy", dropout=0.2, batch_norm=True)

    or from a list of layers (:meth:`from_layers`).

    Args:
        sizes: node counts ``[n_0, n_1, ..., n_L]`` (input width first, at least two sizes).
        activation: g of the hidden layers: one name, or one name per hidden layer.
        output_activation: g^(L); by default the loss's natural one (``sse``: sigmoid,
            ``mse``: identity, ``cross_entropy``: softmax, ``binary_cross_entropy``: sigmoid).
        loss: ``sse`` (the tutorial's C_0 = sum_j (a_j - y_j)^2), ``mse``, ``cross_entropy``
            or ``binary_cross_entropy``.
        dtype: ``"float32"`` (default) or ``"float64"``.
        seed: seeds the initialisation (He for ReLU-like layers, Glorot otherwise), the
            shuffling of :meth:`fit` and the dropout masks; the same seed gives the same numbers
            on every backend.
        bias: ``False`` drops every b^(l), reproducing the tutorial exactly.
        dropout: p > 0 puts a :class:`~gpubp.layers.Dropout` (p) after each hidden activation.
        batch_norm: ``True`` puts a :class:`~gpubp.layers.BatchNorm` after each hidden Dense
            layer's linear part (the hidden activation moves after it).
    """

    def __init__(self, sizes: Sequence[int], activation: Union[str, Sequence[str]] = "relu",
                 output_activation: Optional[str] = None, loss: str = "sse", dtype: Union[str, Any] = "float32",
                 seed: Optional[int] = None, bias: bool = True, dropout: float = 0.0, batch_norm: bool = False):
        self._from_args(sizes, activation, output_activation, loss, dtype, seed, bias, dropout, batch_norm)

    def _from_args(self, sizes: Sequence[int], activation: Any, output_activation: Any, loss: Any, dtype: Any,
                   seed: Any, bias: Any, dropout: Any, batch_norm: Any, params: Any = None, state: Any = None) -> None:
        sizes = validation.check_sizes(sizes)
        L = len(sizes) - 1
        loss_head = get_loss(loss)
        hidden = validation.check_activations(activation, L - 1)
        out_name = output_activation if output_activation is not None else loss_head.default_output_activation
        out_act = get_activation(out_name, "output_activation")
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False; got {type(bias).__name__} {bias!r}")
        p = Dropout(dropout).p  # checks 0 <= p < 1
        batch_norm = validation.check_bool(batch_norm, "batch_norm")
        layers: List[Layer] = []
        for l, act in enumerate(hidden, start=1):
            if not act.elementwise:
                raise ValueError(f"activation of hidden layer {l} must be elementwise; {act.name!r} is for the output layer only")
            if batch_norm:  # BatchNorm after the linear part, the activation after BatchNorm
                layers += [Dense(sizes[l], None, bias=bool(bias), init=act.init), BatchNorm(activation=act)]
            else:
                layers.append(Dense(sizes[l], act, bias=bool(bias)))
            if p > 0.0:
                layers.append(Dropout(p))
        layers.append(Dense(sizes[L], out_act, bias=bool(bias)))
        self._setup(sizes[0], layers, loss_head, dtype, seed, params, state)
        self._config: Optional[Dict[str, Any]] = {
            "sizes": list(sizes), "activation": [a.name for a in hidden], "output_activation": out_act.name,
            "loss": loss_head.name, "dtype": self.dtype.name, "seed": self.seed, "bias": bool(bias),
            "dropout": p, "batch_norm": batch_norm}

    @classmethod
    def from_layers(cls, n_in: int, layers: Sequence[Layer], loss: str = "sse", dtype: Union[str, Any] = "float32",
                    seed: Optional[int] = None) -> "MLP":
        """A network of ``n_in`` inputs and ``layers`` (``gpubp.layers.Dense``, ``Dropout``,
        ``BatchNorm``), the last a Dense layer: the output layer, whose activation the loss head
        differentiates (None there means the loss's natural one). ``net.layers`` lists the same
        objects after the input layer; a layer object belongs to one network only."""
        net = cls.__new__(cls)
        net._setup(validation.check_int(n_in, "n_in", 1), layers, get_loss(loss), dtype, seed)
        net._config = None
        return net

    @classmethod
    def from_config(cls, config: Dict[str, Any], params: Any = None, state: Any = None) -> "MLP":
        """The network :meth:`get_config` describes; with ``params`` (and ``state``), flat arrays of
        its parameters (and state), those values instead of a random initialisation."""
        cfg = dict(config)
        net = cls.__new__(cls)
        if "layers" in cfg:
            layers = [layer_from_config(c) for c in cfg["layers"]]
            net._setup(validation.check_int(cfg["input"], "input", 1), layers, get_loss(cfg["loss"]),
                       cfg.get("dtype", "float32"), cfg.get("seed"), params, state)
            net._config = None
            return net
        hidden = cfg.pop("activation", "relu")
        args = {"activation": hidden if hidden else "relu", "output_activation": None, "loss": "sse",
                "dtype": "float32", "seed": None, "bias": True, "dropout": 0.0, "batch_norm": False}
        unknown = set(cfg) - set(args) - {"sizes"}
        if unknown:
            raise TypeError(f"unknown network settings {sorted(unknown)}")
        args.update(cfg)
        net._from_args(params=params, state=state, **args)
        return net

    def _setup(self, n_in: int, layers: Sequence[Layer], loss: Loss, dtype: Any, seed: Any, params: Any = None,
               state: Any = None) -> None:
        """Check the layer list, number the layers, fuse each Dropout into an activation pass
        before it, then build the buffers."""
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
            raise TypeError(f"layers must be a non-empty list of gpubp.layers objects; got {type(layers).__name__}")
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer) or isinstance(layer, Input):
                raise TypeError(f"layers[{i}] must be a gpubp.layers.Dense, Dropout or BatchNorm; got {type(layer).__name__}")
            layer._check_free()
            if any(other is layer for other in layers[:i]):
                raise ValueError(f"layers[{i}] is the same object as an earlier layer; make a new one")
        last = layers[-1]
        if not isinstance(last, Dense):
            raise ValueError(f"the last layer must be a Dense layer (the output layer); got {type(last).__name__}")
        out_act = last.activation or get_activation(loss.default_output_activation)
        required = loss.requires_output_activation
        if required is not None and out_act.name != required:
            raise ValueError(
                f"loss {loss.name!r} needs output_activation={required!r} (its fused Delta = A - Y); got {out_act.name!r}"
            )
        for i, layer in enumerate(layers[:-1]):
            if layer.activation is not None and not layer.activation.elementwise:
                raise ValueError(f"the activation of layers[{i}] must be elementwise; {layer.activation.name!r} is "
                                 "for the output layer only")
        self.dtype = validation.check_dtype(dtype)
        self.seed = validation.check_seed(seed)
        self.loss: Loss = loss
        self.backend: Backend = get_backend()
        #: The generator of fit's shuffling (seeded by ``seed``; checkpoints keep its state).
        self.rng = np.random.default_rng(self.seed)
        #: Set to True (by a callback) to end :meth:`fit` after the current epoch.
        self.stop_training = False
        self._dropout_seed = philox.dropout_seed(self.seed)
        #: The number of the last epoch :meth:`fit` completed (0 for a new network); checkpoints
        #: keep it, so ``fit(X, Y, epochs=E, initial_epoch=net.epoch)`` resumes a saved run.
        self.epoch = 0
        last._activation = out_act
        width, l = n_in, 0
        for i, layer in enumerate(layers, start=1):
            layer.index = i
            width = layer.build(width)
            if isinstance(layer, Dense):
                l += 1
                layer.l = l
            if isinstance(layer, Dropout):
                layer.seed = self._dropout_seed
                prev = layers[i - 2] if i > 1 else None
                fuse = prev is not None and prev.activation is not None and isinstance(prev, (Dense, BatchNorm))
                layer.fused_into = prev if fuse else None
                if fuse:
                    prev.dropout = layer
        self.layers: List[Layer] = [Input(n_in)] + layers
        self._dense: List[Dense] = [layer for layer in layers if isinstance(layer, Dense)]
        self.sizes: Tuple[int, ...] = (n_in,) + tuple(d.units for d in self._dense)
        self._couples_rows = any(isinstance(layer, BatchNorm) or (isinstance(layer, Dropout) and layer.p > 0)
                                 for layer in layers)
        #: Whether a BatchNorm layer couples the rows of a training pass (which then needs 2 rows or more).
        self.has_batch_norm = any(isinstance(layer, BatchNorm) for layer in layers)
        try:
            self._build(params, state)
        except BaseException:
            for layer in layers:
                layer._network = None
            raise
        for layer in layers:
            layer._network = self

    # ---- construction ----------------------------------------------------------------
    @property
    def L(self) -> int:
        """Number of Dense layers (layer 0 is the input)."""
        return len(self._dense)

    @property
    def n_params(self) -> int:
        """Total number of parameters (length of the flat buffer)."""
        return int(self.params.size)

    @property
    def bias(self) -> bool:
        """Whether every Dense layer has a bias b^(l)."""
        return all(d.bias for d in self._dense)

    @property
    def activations(self) -> Tuple[Optional[Activation], ...]:
        """g^(l) for l = 1..L: the Dense layer's activation, or that of the BatchNorm after it."""
        out: List[Optional[Activation]] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dense):
                out.append(layer.activation)
            elif isinstance(layer, BatchNorm) and out and out[-1] is None and layer.activation is not None:
                out[-1] = layer.activation
        return tuple(out)

    def _build(self, flat: Any = None, state: Any = None) -> None:
        """Allocate the parameter, gradient and state buffers on the backend, fill them (from
        ``flat`` / ``state`` when given, else the initialisation) and hand the layers their views."""
        xp = self.backend.xp
        layers = self.layers[1:]
        slots, P = parameters.layout(layers)
        state_slots, S = parameters.layout(layers, state=True)
        for name, given, length in (("parameter", flat, P), ("state", state, S)):
            if given is not None and tuple(np.shape(given)) != (length,):
                raise ValueError(f"the network has {length} {name} values; got a {name} buffer of shape "
                                 f"{tuple(np.shape(given))}")
        params = xp.empty(P, dtype=self.dtype)
        if flat is None:
            parameters.initialise(self.backend, params, slots, self.rng)
        else:
            parameters.fill(self.backend, params, slots, flat)
        net_state = xp.empty(S, dtype=self.dtype)
        parameters.fill(self.backend, net_state, state_slots, state)
        # two trailing slots beyond the gradients hold a batch's n C and n, so that a distributed
        # step reduces gradients, loss and row count in one call (gpubp.distributed)
        self.grad_buffer = xp.zeros(P + 2, dtype=self.dtype)
        self.params, self.state = params, net_state
        self.grads = self.grad_buffer[:P]
        pv, gv, sv = (parameters.views(buf, s) for buf, s in ((params, slots), (self.grads, slots),
                                                               (net_state, state_slots)))
        for layer in layers:
            layer.bind(pv.get(id(layer), {}), gv.get(id(layer), {}), sv.get(id(layer), {}))
        self._workspaces: Dict[int, _Workspace] = {}

    def workspace(self, n: int) -> _Workspace:
        """The arrays of the passes over n rows, allocated once per n and reused: ``ws.Z[l]``,
        ``ws.A[l]`` and ``ws.Delta[l]`` of Dense layer l after the last such pass (every layer's
        arrays in ``ws.caches``)."""
        ws = self._workspaces.get(n)
        ops = self.backend.ops
        if ws is None or ws.ops is not ops:
            if len(self._workspaces) >= 4:  # a fit uses two sizes at most (full and last batch)
                self._workspaces.clear()
            ws = self._workspaces[n] = _Workspace(self.backend.xp, n, self.layers, self.dtype, ops)
        return ws

    def host_state(self) -> Dict[str, Any]:
        """What lives on the host between steps: the dropout seed and every layer's stream position."""
        return {"dropout_seed": self._dropout_seed, "layers": [layer.host_state() for layer in self.layers[1:]]}

    def set_host_state(self, host: Dict[str, Any]) -> None:
        """Put back what :meth:`host_state` returned."""
        layers = self.layers[1:]
        states = host.get("layers") or [{}] * len(layers)
        if len(states) != len(layers):
            raise ValueError(f"host state for {len(states)} layers; the network has {len(layers)}")
        seed = int(host.get("dropout_seed", self._dropout_seed))
        for layer, s in zip(layers, states):
            layer.set_host_state(s)
        self._dropout_seed = seed
        for layer in layers:
            if isinstance(layer, Dropout):
                layer.seed = seed

    def __repr__(self) -> str:
        if self._config is not None:
            acts = ",".join(a.name for a in self.activations if a is not None)
            extra = "".join(f", {k}={self._config[k]}" for k in ("dropout", "batch_norm") if self._config[k])
            return (f"MLP(sizes={list(self.sizes)}, activations=[{acts}], loss={self.loss.name!r}, "
                    f"dtype={self.dtype.name!r}, bias={self.bias}{extra}, backend={self.backend.name!r})")
        return (f"MLP(n_0={self.sizes[0]}, layers=[{', '.join(map(repr, self.layers[1:]))}], loss={self.loss.name!r}, "
                f"dtype={self.dtype.name!r}, backend={self.backend.name!r})")

    def to(self, backend: str) -> "MLP":
        """Move the parameters and state to another backend (in place); returns ``self``."""
        with use_backend(backend) as target:
            flat, state = self.backend.to_numpy(self.params), self.backend.to_numpy(self.state)
            self.backend = target
            self._build(flat, state)
        return self

    # ---- passes ------------------------------------------------------------------------
    def make_pass(self, training: bool, rows: int, comm: Any = None, row_offset: int = 0, update: bool = True) -> Pass:
        """The settings of one pass over ``rows`` rows (all ranks'): training or inference mode,
        ``update`` of the running statistics and dropout streams; refuses a BatchNorm training pass
        of fewer than 2 rows."""
        if training and self.has_batch_norm and rows < 2:
            raise ValueError(f"BatchNorm in training mode needs at least 2 rows per step (the variance of one row is "
                             f"0); got {rows}")
        return Pass(self.backend.ops, training, rows, update=update, comm=comm, row_offset=row_offset)

    def _rows(self, n: int, comm: Any) -> Tuple[int, int]:
        """(rows of the step over all ranks, rows of the ranks before this one): one small
        collective where a layer couples the rows (BatchNorm statistics, Dropout's stream)."""
        if comm is None or comm.size == 1 or not self._couples_rows:
            return n, 0
        counts = comm.allgather(int(n))
        return sum(counts), sum(counts[: comm.rank])

    def _forward(self, X: Any, ws: _Workspace, run: Optional[Pass] = None, inputs: Optional[List[Any]] = None) -> Any:
        """Every layer forward (Z^(l) = A^(l-1) W^(l)T + b^(l), A^(l) = g^(l)(Z^(l)) for Dense layer l);
        returns A^(L). ``inputs`` (a list as long as the layers) receives each layer's input."""
        if run is None:
            run = Pass(self.backend.ops, False, X.shape[0])
        x = X
        for i in range(1, len(self.layers)):
            if inputs is not None:
                inputs[i] = x
            x = self.layers[i].forward(run, ws.caches[i], x)
        return x

    def infer(self, X: Any, run: Optional[Pass] = None) -> Any:
        """A^(L) of rows already checked, by an inference pass (or ``run``) in :meth:`workspace`
        (no copy: valid until the next pass over as many rows); :meth:`forward` is the checked form."""
        return self._forward(X, self.workspace(X.shape[0]), run)

    def forward(self, X: Any, training: bool = False) -> Any:
        """A^(L) for the n rows of X (shape (n, n_0)), as a new backend array of shape (n, n_L).

        In inference mode (default) Dropout is the identity and BatchNorm uses its running
        statistics; ``training=True`` runs them as a training step does (a new dropout mask,
        the batch's statistics, running statistics updated).
        """
        training = validation.check_bool(training, "training")
        X = validation.check_X(self, X)
        run = self.make_pass(training, X.shape[0])
        with memory.translated_out_of_memory(self.backend, f"in forward on {X.shape[0]} rows",
                                             memory.batch_hint(X.shape[0], "number of rows per call")):
            return self._forward(X, self.workspace(X.shape[0]), run).copy()

    def predict(self, X: Any, training: bool = False) -> Any:
        """The network's outputs A^(L) for X (same as :meth:`forward`)."""
        return self.forward(X, training=training)

    def predict_classes(self, X: Any, training: bool = False) -> Any:
        """Class index per row: argmax of A^(L), or A^(L) > 0.5 for a single output node."""
        A = self.forward(X, training=training)
        xp = self.backend.xp
        if A.shape[1] == 1:
            return (A[:, 0] > 0.5).astype(xp.int64)
        return A.argmax(axis=1)

    def backprop(self, X: Any, Y: Any, run: Optional[Pass] = None) -> Any:
        """One forward and backward pass over the batch (rows already checked, see
        :meth:`loss_and_grads` for the checked form); gradients land in ``self.grads``.

        MATH.md: Delta^(L) = dC_0/dA^(L) * g'^(L)(Z^(L)), then every layer's backward from the top:
        for Dense layer l, dC/dW^(l) = (1/n) Delta^(l)T A^(l-1), dC/db^(l) = (1/n) sum_rows Delta^(l)
        and Delta^(l-1) = (Delta^(l) W^(l)) * g'^(l-1)(Z^(l-1)). Returns C as a 0-d backend array.
        """
        n = X.shape[0]
        if run is None:
            run = self.make_pass(True, n)
        ws = self.workspace(n)
        k = len(self.layers) - 1
        inputs: List[Any] = [None] * (k + 1)
        self._forward(X, ws, run, inputs)
        caches, layers = ws.caches, self.layers
        out = caches[k]
        C = run.ops.loss_head(self.loss, layers[k].activation, out.Z, out.A, Y, out.dout)
        layers[k].backward_from_delta(run, out, inputs[k], caches[k - 1].dout if k > 1 else None)
        for i in range(k - 1, 0, -1):
            layers[i].backward(run, caches[i], inputs[i], caches[i - 1].dout if i > 1 else None)
        return C

    def _collectives_only(self, run: Pass) -> None:
        """This rank's part in a distributed step in which it has no rows (its shard has run out)."""
        for layer in self.layers[1:]:
            layer.forward_collectives(run)
        for layer in reversed(self.layers[1:]):
            layer.backward_collectives(run)

    def loss_and_grads(self, X: Any, Y: Any, comm: Any = None,
                       training: bool = True) -> Tuple[float, List[Tuple[Any, Optional[Any]]]]:
        """C = (1/n) sum_i C_0^(i) and the gradients, averaged over the n rows.

        The gradients come as one tuple per layer with parameters, in order: ``(dC/dW^(l),
        dC/db^(l))`` for a Dense layer (``db`` None without bias), ``(dC/dgamma, dC/dbeta)`` for a
        BatchNorm; copies (backend arrays). The pass is a training pass (a new dropout mask,
        BatchNorm on the batch's statistics, its running statistics updated), or with
        ``training=False`` an inference pass. With ``comm`` (from :func:`gpubp.distributed.init`)
        every rank passes its own rows and gets the averages over all rows of all ranks, as one
        process would on their concatenation; the first call broadcasts rank 0's parameters.
        """
        comm = distributed.check_comm(comm)
        training = validation.check_bool(training, "training")
        X, Y = validation.check_XY(self, X, Y)
        if comm is not None:
            distributed.ensure_synchronized(self, comm)
        rows, offset = self._rows(X.shape[0], comm)
        run = self.make_pass(training, rows, comm, offset)
        with memory.translated_out_of_memory(self.backend, f"in loss_and_grads on {X.shape[0]} rows",
                                             memory.batch_hint(X.shape[0], "batch")):
            C = self.backprop(X, Y, run)
        if comm is not None:
            C = distributed.allreduce_gradients(self, C, X.shape[0], comm)
        grads = []
        for layer in self.layers[1:]:
            names = [spec.name for spec in layer.param_specs()]
            if isinstance(layer, Dense):
                grads.append((layer.dW.copy(), None if layer.db is None else layer.db.copy()))
            elif names:
                grads.append(tuple(getattr(layer, "d" + name).copy() for name in names))
        return float(C), grads

    def train_step(self, X: Any, Y: Any, optimizer: "Optimizer", comm: Any = None,
                   clip_norm: Optional[float] = None) -> Any:
        """One forward, backward and optimizer update on one batch (a training pass); returns C
        as a 0-d array.

        The arguments are checked first (a rejected call changes neither the weights nor the
        optimizer); on the GPU that check is one synchronisation, the only one: the returned
        loss stays on the backend. The step itself does not look for NaN/inf (``fit`` does).
        With ``comm`` the batch is the union of every rank's X, Y: gradients and C are averaged
        over all their rows (one all-reduce) before the same update is applied on every rank.
        ``clip_norm`` clips the gradients' global L2 norm before the update (as in :meth:`fit`).
        """
        comm = distributed.check_comm(comm)
        validation.check_optimizer(optimizer, self)
        if clip_norm is not None:
            clip_norm = validation.check_positive_float(clip_norm, "clip_norm")
        X, Y = validation.check_XY(self, X, Y)
        if comm is not None:
            distributed.ensure_synchronized(self, comm)
        rows, offset = self._rows(X.shape[0], comm)
        self.make_pass(True, rows)  # checked before anything changes
        with memory.translated_out_of_memory(self.backend, f"in train_step on {X.shape[0]} rows",
                                             memory.batch_hint(X.shape[0], "batch")):
            return self.train_batch(X, Y, optimizer, comm, rows, offset, clip_norm=clip_norm)

    def train_batch(self, X: Any, Y: Any, optimizer: Any, comm: Any = None, rows: Optional[int] = None,
                    row_offset: int = 0, clip_norm: Optional[float] = None) -> Any:
        """:meth:`train_step` on arguments already checked (``fit``'s inner loop): backprop, the
        all-reduce with ``comm``, clipping to ``clip_norm``, the update; returns C (0-d).

        ``X is None`` is this rank's empty share of a distributed step (its shard has run out);
        ``rows`` and ``row_offset`` place this rank's rows in the step (default: alone).
        """
        if X is None:
            self._collectives_only(Pass(self.backend.ops, True, rows or 0, comm=comm))
            C = distributed.allreduce_gradients(self, None, 0, comm)
        else:
            run = Pass(self.backend.ops, True, X.shape[0] if rows is None else rows, comm=comm, row_offset=row_offset)
            C = self.backprop(X, Y, run)
            if comm is not None:
                C = distributed.allreduce_gradients(self, C, X.shape[0], comm)
        if clip_norm is not None:
            self.backend.ops.clip_grad_norm(self.grads, clip_norm)
        optimizer.step(self)
        return C

    # ---- evaluation ------------------------------------------------------------------
    def evaluate(self, X: Any, Y: Any, batch_size: int = 4096) -> Tuple[float, Optional[float]]:
        """(C, accuracy) over the whole of X, Y in batches, in inference mode; accuracy is None
        for non-class targets."""
        from .evaluation import evaluate

        return evaluate(self, X, Y, batch_size=batch_size)

    def fit(self, X: Any, Y: Any, epochs: int = 10, batch_size: int = 32, optimizer: Optional["Optimizer"] = None,
            validation_data: Optional[Tuple[Any, Any]] = None, shuffle: bool = True, progress: Optional[bool] = None,
            callback: Any = None, initial_epoch: int = 0, comm: Any = None, callbacks: Optional[Sequence[Any]] = None,
            validation_split: float = 0.0, clip_norm: Optional[float] = None, verbose: Optional[int] = None,
            lr_schedule: Any = None) -> "History":
        """Train by mini-batch gradient descent (training passes); returns the per-epoch
        :class:`~gpubp.history.History`. See :func:`gpubp.train.fit` for the arguments.
        """
        from .train import fit

        return fit(self, X, Y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                   validation_data=validation_data, shuffle=shuffle, progress=progress, callback=callback,
                   initial_epoch=initial_epoch, comm=comm, callbacks=callbacks, validation_split=validation_split,
                   clip_norm=clip_norm, verbose=verbose, lr_schedule=lr_schedule)

    def summary(self, print_fn: Any = None) -> None:
        """Print a table of the layers (type, output shape, activation, parameters) and the totals,
        as Keras's ``model.summary()`` does; ``print_fn`` receives each line (default ``print``)."""
        from .summary import summary_lines

        for line in summary_lines(self):
            (print_fn or print)(line)

    # ---- persistence -----------------------------------------------------------------
    def save(self, path: Any, optimizer: Any = None) -> None:
        """Write weights, state, architecture and dtype (and optimizer state) to ``path`` atomically."""
        checkpoint.save(self, path, optimizer=optimizer)

    def get_config(self) -> Dict[str, Any]:
        """What rebuilds this architecture (:meth:`from_config`): the constructor's arguments for
        a network built from sizes, ``input`` and ``layers`` (each layer's config) otherwise."""
        if self._config is not None:
            return {k: (list(v) if isinstance(v, list) else v) for k, v in self._config.items()}
        return {"input": self.sizes[0], "layers": [layer.get_config() for layer in self.layers[1:]],
                "loss": self.loss.name, "dtype": self.dtype.name, "seed": self.seed}


def load(path: Any, optimizer: Any = None) -> MLP:
    """The network saved at ``path`` (a :mod:`gpubp.checkpoint` file), on the active backend, filled
    with the stored parameters and state (no random initialisation); restores ``optimizer``'s state
    too if given. A file that does not describe a valid network is refused with a
    :class:`~gpubp.errors.CheckpointError` naming it."""
    meta, arrays = checkpoint.read(path)
    name = checkpoint.check_path(path)
    try:
        params = arrays["params"]
        state = arrays.get("state")
        if params.ndim != 1 or (state is not None and state.ndim != 1):
            raise ValueError(f"the parameter and state buffers must be flat; got shapes {params.shape}, "
                             f"{None if state is None else state.shape}")
        cfg = dict(meta["config"])
        if params.dtype != np.dtype(cfg.get("dtype", "float32")):
            raise ValueError(f"parameter buffer of dtype {params.dtype} for a {cfg.get('dtype')!r} network")
        net = MLP.from_config(cfg, params=params, state=state)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name!r} does not describe a valid network ({type(exc).__name__}: {exc})") from None
    try:
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
        epoch = int(meta.get("epoch", 0))
        net.set_host_state(meta.get("host_state") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name!r}: the shuffling generator's or a layer's state is corrupted "
                              f"({type(exc).__name__}: {exc})") from None
    if optimizer is not None:  # checked before the network is returned, so a mismatch changes nothing
        checkpoint.restore_optimizer(optimizer, meta, arrays, net, path, dry_run=True)
    net.rng, net.epoch = rng, epoch
    if optimizer is not None:
        checkpoint.restore_optimizer(optimizer, meta, arrays, net, path)
    return net
