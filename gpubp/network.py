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

from . import checkpoint, memory, parameters, philox, sparse, steps, validation
from .activations import Activation, get_activation
from .backend import Backend, get_backend, use_backend
from .layers import (BatchNorm, Dense, Dropout, Input, Layer, Pass, connect, host_state, layer_from_config,
                     mlp_layers, restored_on_failure, set_host_state)
from .workspace import Workspace
from .losses import Loss, get_loss

if TYPE_CHECKING:  # for annotations only
    from .explain import Explanation
    from .optim import Optimizer
    from .history import History
    from .trace import Trace


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
        l2: lambda >= 0 of the L2 penalty on the Dense layers' weights (not the biases, not
            BatchNorm's gamma and beta) that training adds to each batch's loss,
            C = (1/n) sum_i C_0^(i) + (lambda/2n) sum_l ||W^(l)||^2 (MATH.md, L2 penalty;
            scikit-learn's ``alpha``); 0 (the default) leaves it out. ``net.l2`` changes it.
    """

    def __init__(self, sizes: Sequence[int], activation: Union[str, Sequence[str]] = "relu",
                 output_activation: Optional[str] = None, loss: str = "sse", dtype: Union[str, Any] = "float32",
                 seed: Optional[int] = None, bias: bool = True, dropout: float = 0.0, batch_norm: bool = False,
                 l2: float = 0.0):
        self._from_args(sizes, activation, output_activation, loss, dtype, seed, bias, dropout, batch_norm, l2)
        self._allocate()

    def _from_args(self, sizes: Sequence[int], activation: Any, output_activation: Any, loss: Any, dtype: Any,
                   seed: Any, bias: Any, dropout: Any, batch_norm: Any, l2: Any = 0.0) -> None:
        """Check the constructor's arguments and lay out its layers (:meth:`_setup`); allocates nothing."""
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
        layers = mlp_layers(sizes, hidden, out_act, bool(bias), p, batch_norm)
        self._setup(sizes[0], layers, loss_head, dtype, seed, l2)
        self._config: Optional[Dict[str, Any]] = {
            "sizes": list(sizes), "activation": [a.name for a in hidden], "output_activation": out_act.name,
            "loss": loss_head.name, "dtype": self.dtype.name, "seed": self.seed, "bias": bool(bias),
            "dropout": p, "batch_norm": batch_norm}

    @classmethod
    def from_layers(cls, n_in: int, layers: Sequence[Layer], loss: str = "sse", dtype: Union[str, Any] = "float32",
                    seed: Optional[int] = None, l2: float = 0.0) -> "MLP":
        """A network of ``n_in`` inputs and ``layers`` (``gpubp.layers.Dense``, ``Dropout``,
        ``BatchNorm``), the last a Dense layer: the output layer, whose activation the loss head
        differentiates (None there means the loss's natural one). ``net.layers`` lists the same
        objects after the input layer; a layer object belongs to one network only."""
        net = cls.__new__(cls)
        with restored_on_failure(layers):  # e.g. out of memory: the layer objects as they were
            net._setup(validation.check_int(n_in, "n_in", 1), layers, get_loss(loss), dtype, seed, l2)
            net._config = None
            net._allocate()
        return net

    @classmethod
    def configured(cls, config: Dict[str, Any]) -> "MLP":
        """The architecture ``config`` describes (either form of :meth:`get_config`), checked by the
        constructor's rules and laid out, with nothing allocated: what :meth:`from_config` and
        :meth:`from_parameters` allocate, and what a checkpoint's metadata are checked against."""
        net = cls.__new__(cls)
        net._configure(config)
        return net

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "MLP":
        """A new (randomly initialised) network of the architecture :meth:`get_config` describes."""
        net = cls.configured(config)
        net._allocate()
        return net

    @classmethod
    def from_parameters(cls, params: Any, state: Any = None, **config: Any) -> "MLP":
        """The network ``config`` describes (as :meth:`get_config` gives it) with the flat parameter
        buffer ``params`` (shape (n_params,), the network's dtype), and the flat ``state`` buffer
        of its layers (running statistics; their first values when None), in place of a random
        initialisation. A NumPy ``params`` on the NumPy backend becomes the network's buffer itself,
        not a copy; the shuffling generator is seeded from ``seed`` as in the constructor.
        """
        net = cls.configured(config)
        for name, given, length in (("params", params, net.n_params), ("state", state, net._n_state)):
            shape, dtype = getattr(given, "shape", None), getattr(given, "dtype", None)
            if (given is not None or name == "params") and (shape != (length,) or dtype != net.dtype):
                raise ValueError(f"{name} must be an array of shape ({length},) and dtype {net.dtype} for the "
                                 f"network of sizes {list(net.sizes)}; got {validation._describe(given)}")
        net._allocate(params, state)
        return net

    def _configure(self, config: Any) -> None:
        """Check ``config`` (either form of :meth:`get_config`) and lay out the network; allocates nothing."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a mapping as get_config() gives; got {type(config).__name__}")
        cfg = dict(config)
        if "layers" in cfg:
            keys = sorted(("input", "layers", "loss", "dtype", "seed"))
            if sorted(set(cfg) - {"l2"}) != keys:
                raise ValueError(f"config must hold exactly {', '.join(keys)} (and l2); got {config!r}"[:300])
            if not isinstance(cfg["layers"], list) or not isinstance(cfg["dtype"], str):
                raise TypeError("config layers must be a list of layer configs and dtype a name")
            layers = [layer_from_config(c) for c in cfg["layers"]]
            self._setup(validation.check_int(cfg["input"], "input", 1), layers, get_loss(cfg["loss"]), cfg["dtype"],
                        cfg["seed"], cfg.get("l2", 0.0))
            self._config = None
            return
        # a network from sizes; version 1 checkpoints lack dropout and batch_norm (and l2)
        keys = ["activation", "bias", "dtype", "loss", "output_activation", "seed", "sizes"]
        if sorted(set(cfg) - {"dropout", "batch_norm", "l2"}) != keys:
            raise ValueError(f"config must hold exactly {', '.join(keys)} (and dropout, batch_norm, l2); got "
                             f"{config!r}"[:300])
        if not isinstance(cfg["dtype"], str):
            raise TypeError(f"config dtype must be a name; got {cfg['dtype']!r}")
        self._from_args(**{"dropout": 0.0, "batch_norm": False, **cfg})

    def _setup(self, n_in: int, layers: Sequence[Layer], loss: Loss, dtype: Any, seed: Any, l2: Any = 0.0) -> None:
        """Check the layer list, number the layers and fuse each Dropout into an activation pass
        before it; allocates nothing (:meth:`_allocate` does)."""
        dtype, seed = validation.check_dtype(dtype), validation.check_seed(seed)
        self.l2 = l2
        dropout_seed = philox.dropout_seed(seed)
        layers = connect(n_in, layers, loss, dropout_seed)
        self.dtype, self.seed, self.loss = dtype, seed, loss
        self.backend: Backend = get_backend()
        #: The generator of fit's shuffling (seeded by ``seed``; checkpoints keep its state).
        self.rng = np.random.default_rng(self.seed)
        #: Set to True (by a callback) to end :meth:`fit` after the current epoch.
        self.stop_training = False
        self._dropout_seed = dropout_seed
        #: The number of the last epoch :meth:`fit` completed (0 for a new network); checkpoints
        #: keep it, so ``fit(X, Y, epochs=E, initial_epoch=net.epoch)`` resumes a saved run.
        self.epoch = 0
        self.layers: List[Layer] = [Input(n_in)] + layers
        self._dense: Tuple[Dense, ...] = tuple(layer for layer in layers if isinstance(layer, Dense))
        self.sizes: Tuple[int, ...] = (n_in,) + tuple(d.units for d in self._dense)
        #: Whether a layer couples the rows of a training pass (BatchNorm's statistics, Dropout's stream).
        self.couples_rows = any(isinstance(layer, BatchNorm) or (isinstance(layer, Dropout) and layer.p > 0)
                                 for layer in layers)
        #: Whether a BatchNorm layer couples the rows of a training pass (which then needs 2 rows or more).
        self.has_batch_norm = any(isinstance(layer, BatchNorm) for layer in layers)
        self._slots, self._n_params = parameters.layout(layers)
        self._state_slots, self._n_state = parameters.layout(layers, state=True)

    def _allocate(self, params: Any = None, state: Any = None) -> None:
        """Build the buffers (:meth:`_build`; out of memory is an error naming the sizes) and make
        the layers this network's."""
        layers = self.layers[1:]
        P = self._n_params
        try:
            with memory.translated_out_of_memory(
                    self.backend, f"building a network of sizes {list(self.sizes)}",
                    f"its {P:,} parameters need {2 * P * self.dtype.itemsize:,} bytes ({self.dtype.name} weights and "
                    f"their gradients): choose smaller sizes"):
                self._build(params, state, copy=False)
        except BaseException:
            for layer in layers:
                layer._network = None
            raise
        for layer in layers:
            layer._network = self

    # ---- construction ----------------------------------------------------------------
    @property
    def l2(self) -> float:
        """lambda of the L2 penalty on the weights (MATH.md, L2 penalty); 0 leaves it out."""
        return self._l2

    @l2.setter
    def l2(self, value: float) -> None:
        self._l2 = validation.check_positive_float(value, "l2", allow_zero=True)

    @property
    def L(self) -> int:
        """Number of Dense layers (layer 0 is the input)."""
        return len(self._dense)

    @property
    def n_params(self) -> int:
        """Total number of parameters (length of the flat buffer)."""
        return self._n_params

    @property
    def n_state(self) -> int:
        """Number of the layers' state values (length of the flat state buffer: running statistics)."""
        return self._n_state

    @property
    def dense_layers(self) -> Tuple[Dense, ...]:
        """The Dense layers l = 1..L (without the Dropout and BatchNorm layers between them)."""
        return self._dense

    @property
    def bias(self) -> bool:
        """Whether every Dense layer has a bias b^(l)."""
        return all(d.bias for d in self._dense)

    @property
    def activations(self) -> Tuple[Optional[Activation], ...]:
        """g^(l) for l = 1..L: the Dense layer's activation, or that of the BatchNorm after it."""
        out: List[Optional[Activation]] = []
        for layer in self.layers:
            if isinstance(layer, Dense):
                out.append(layer.activation)
            elif isinstance(layer, BatchNorm) and out and out[-1] is None and layer.activation is not None:
                out[-1] = layer.activation
        return tuple(out)

    def _build(self, flat: Any = None, state: Any = None, copy: bool = True) -> None:
        """Allocate the parameter, gradient and state buffers on the backend (from ``flat`` /
        ``state`` when given, else the initialisation; :func:`gpubp.parameters.allocate`) and hand
        the layers their views."""
        params, self.grad_buffer, net_state = parameters.allocate(
            self.backend, self.dtype, self._slots, self._state_slots, self.rng, flat, state, copy)
        self.params, self.state = params, net_state
        self.grads = self.grad_buffer[: self._n_params]
        pv, gv, sv = (parameters.views(buf, slots) for buf, slots in ((params, self._slots), (self.grads, self._slots),
                                                                       (net_state, self._state_slots)))
        for layer in self.layers[1:]:
            layer.bind(pv.get(id(layer), {}), gv.get(id(layer), {}), sv.get(id(layer), {}))
        self._workspaces: Dict[int, Workspace] = {}

    def workspace(self, n: int) -> Workspace:
        """The arrays of the passes over n rows, allocated once per n and reused: ``ws.Z[l]``,
        ``ws.A[l]`` and ``ws.Delta[l]`` of Dense layer l after the last such pass (every layer's
        arrays in ``ws.caches``)."""
        ws = self._workspaces.get(n)
        ops = self.backend.ops
        if ws is None or ws.ops is not ops:
            if len(self._workspaces) >= 4:  # a fit uses two sizes at most (full and last batch)
                self._workspaces.clear()
            ws = self._workspaces[n] = Workspace(self.backend.xp, n, self.layers, self.dtype, ops)
        return ws

    def host_state(self) -> Dict[str, Any]:
        """What lives on the host between steps: the dropout seed and every layer's stream position."""
        return host_state(self.layers[1:], self._dropout_seed)

    def set_host_state(self, host: Any) -> None:
        """Put back what :meth:`host_state` returned."""
        self._dropout_seed = set_host_state(self.layers[1:], host, self._dropout_seed)

    def __repr__(self) -> str:
        if self._config is not None:
            acts = ",".join(a.name for a in self.activations if a is not None)
            extra = "".join(f", {k}={self._config[k]}" for k in ("dropout", "batch_norm") if self._config[k])
            extra += f", l2={self.l2}" if self.l2 else ""
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

    def _forward(self, X: Any, ws: Workspace, run: Optional[Pass] = None, inputs: Optional[List[Any]] = None) -> Any:
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

        A SciPy sparse X (any format) is inferred in chunks of rows, each densified in turn
        (:func:`gpubp.evaluation.infer_sparse`); a training pass over it is one batch, densified.
        """
        training = validation.check_bool(training, "training")
        X = validation.check_X(self, X, keep_sparse=not training)
        if sparse.is_sparse(X):
            from .evaluation import infer_sparse

            with memory.translated_out_of_memory(self.backend, f"in forward on {X.shape[0]} sparse rows"):
                return infer_sparse(self, X)
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

    def backprop(self, X: Any, Y: Any, run: Optional[Pass] = None, watch: Any = None) -> Any:
        """One forward and backward pass over the batch (rows already checked, see
        :meth:`loss_and_grads` for the checked form); gradients land in ``self.grads``.

        MATH.md: Delta^(L) = dC_0/dA^(L) * g'^(L)(Z^(L)), then every layer's backward from the top:
        for Dense layer l, dC/dW^(l) = (1/n) Delta^(l)T A^(l-1), dC/db^(l) = (1/n) sum_rows Delta^(l)
        and Delta^(l-1) = (Delta^(l) W^(l)) * g'^(l-1)(Z^(l-1)). Returns C as a 0-d backend array.

        ``watch(i, ws, inputs)`` (:mod:`gpubp.trace`) is called as the backward pass reaches layer
        i = k (the last; after the forward pass), k-1, ..., 1 and 0 (the end), before layer i runs.
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
        if watch is not None:
            watch(k, ws, inputs)
        C = run.ops.loss_head(self.loss, layers[k].activation, out.Z, out.A, Y, out.dout)
        layers[k].backward_from_delta(run, out, inputs[k], caches[k - 1].dout if k > 1 else None)
        for i in range(k - 1, 0, -1):
            if watch is not None:
                watch(i, ws, inputs)
            layers[i].backward(run, caches[i], inputs[i], caches[i - 1].dout if i > 1 else None)
        if watch is not None:
            watch(0, ws, inputs)
        return C

    def add_l2(self, C: Any, n: Any) -> Any:
        """C plus the L2 penalty on the weights, and its gradient added to dC/dW^(l) (MATH.md, L2
        penalty; :func:`gpubp.steps.add_l2`); ``n``: the rows the step averages over."""
        return steps.add_l2(self, C, n)

    def loss_and_grads(self, X: Any, Y: Any, comm: Any = None,
                       training: bool = True) -> Tuple[float, List[Tuple[Any, Optional[Any]]]]:
        """C = (1/n) sum_i C_0^(i) and the gradients, averaged over the n rows (with ``l2`` > 0, C and
        dC/dW^(l) include the penalty on the weights: MATH.md, L2 penalty).

        The gradients come as one tuple per layer with parameters, in order: ``(dC/dW^(l),
        dC/db^(l))`` for a Dense layer (``db`` None without bias), ``(dC/dgamma, dC/dbeta)`` for a
        BatchNorm; copies (backend arrays). The pass is a training pass (a new dropout mask,
        BatchNorm on the batch's statistics, its running statistics updated), or with
        ``training=False`` an inference pass. With ``comm`` (from :func:`gpubp.distributed.init`)
        every rank passes its own rows and gets the averages over all rows of all ranks, as one
        process would on their concatenation; the first call broadcasts rank 0's parameters.
        """
        return steps.loss_and_grads(self, X, Y, comm, training)

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
        return steps.train_step(self, X, Y, optimizer, comm, clip_norm)

    def train_batch(self, X: Any, Y: Any, optimizer: Any, comm: Any = None, rows: Optional[int] = None,
                    row_offset: int = 0, clip_norm: Optional[float] = None) -> Any:
        """:meth:`train_step` on arguments already checked (``fit``'s inner loop; :func:`gpubp.steps.train_batch`)."""
        return steps.train_batch(self, X, Y, optimizer, comm, rows, row_offset, clip_norm)

    # ---- looking inside -----------------------------------------------------------------
    def trace(self, X: Any, Y: Any, training: bool = True) -> "Trace":
        """One pass over X, Y with its inside kept (``trace[l]``: copies of Z^(l), A^(l), Delta^(l),
        dC/dW^(l), dC/db^(l)); the pass the next training step runs, leaving the network as it was
        (:mod:`gpubp.trace`)."""
        from .trace import trace

        return trace(self, X, Y, training=training)

    def explain(self, X: Any, Y: Any, weight: Optional[str] = None, *, layer: Any = None, j: Optional[int] = None,
                k: Optional[int] = None, training: bool = True) -> "Explanation":
        """The tutorial's chain rule for one parameter in the numbers of this batch's pass (MATH.md,
        One parameter, in numbers): ``weight`` as the tutorial writes it (``"w_12^(L)"``,
        ``"w_22^(L-1)"``, ``"b_1^(2)"``; layers l = 1..L or ``L``, ``L-1``; nodes from 1), or
        ``layer=``, ``j=``, ``k=`` (no ``k``: the bias b_j^(l)). See :mod:`gpubp.explain`."""
        from .explain import explain

        return explain(self, X, Y, weight, layer=layer, j=j, k=k, training=training)

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

        if print_fn is not None and not callable(print_fn):
            raise TypeError(f"print_fn must be a function taking each line (such as print); got {type(print_fn).__name__}")
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
            return {**{k: (list(v) if isinstance(v, list) else v) for k, v in self._config.items()}, "l2": self.l2}
        return {"input": self.sizes[0], "layers": [layer.get_config() for layer in self.layers[1:]],
                "loss": self.loss.name, "dtype": self.dtype.name, "seed": self.seed, "l2": self.l2}
