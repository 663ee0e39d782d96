"""What gpubp's MLPClassifier and MLPRegressor share: scikit-learn's parameters, the gpubp
network they build, the fitted attributes, prediction and pickling.

scikit-learn's MLP (``sklearn/neural_network/_multilayer_perceptron.py``) is the specification:
the same parameters with the same names, defaults, constraints and meaning; the same Glorot
initialisation drawn from ``random_state`` in the same order; the same fitted attributes. The
training itself is gpubp's: :class:`gpubp.MLP` with the L2 penalty ``l2`` (MATH.md) on its
flat parameter buffer, on NumPy or CuPy, driven epoch by epoch by :mod:`._solvers`.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from numbers import Integral, Real
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from scipy.sparse import issparse
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..activations import ACTIVATIONS
from ..backend import BACKEND_NAMES, cupy_problem, get_backend, is_device_array, use_backend
from ..network import MLP
from ..validation import DTYPES, as_float, check_dtype
from . import _solvers

#: Hidden activations by name: scikit-learn's four (``logistic`` is gpubp's ``sigmoid``) and
#: every elementwise activation of gpubp's table under its own name.
HIDDEN_ACTIVATIONS: Dict[str, str] = {
    "identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
    **{name: name for name, act in ACTIVATIONS.items() if act.elementwise},
}
STOCHASTIC_SOLVERS = ("sgd", "adam")


class Run(NamedTuple):
    """The arrays of one ``fit`` / ``partial_fit`` call, checked and on the network's backend."""

    X: Any  # training rows
    Y: Any  # the network's targets: class indices (softmax) or a float matrix
    n_samples: int
    val: Optional[Tuple[Any, np.ndarray]]  # early stopping: (X_val on the backend, y_val to score)


class BaseMLP(BaseEstimator, ABC):
    """The base of gpubp's scikit-learn estimators (not to be used directly)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "backend": [None, StrOptions(set(BACKEND_NAMES))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        "dtype": [StrOptions(set(DTYPES)), type, np.dtype],
    }

    #: The network's loss divided by scikit-learn's objective J: 1 for the classifiers, 2 for
    #: the regressor (gpubp's sse is twice scikit-learn's half squared error; MATH.md, L2 penalty).
    _loss_scale = 1.0

    @abstractmethod
    def __init__(self, hidden_layer_sizes: Any, activation: str, *, solver: str, alpha: float, batch_size: Any,
                 learning_rate: str, learning_rate_init: float, power_t: float, max_iter: int, shuffle: bool,
                 random_state: Any, tol: float, verbose: Any, warm_start: bool, momentum: float,
                 nesterovs_momentum: bool, early_stopping: bool, validation_fraction: float, beta_1: float,
                 beta_2: float, epsilon: float, n_iter_no_change: Any, max_fun: int, backend: Optional[str],
                 dtype: Any, dropout: float, batch_norm: bool):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout
        self.batch_norm = batch_norm

    # ---- what each estimator defines ------------------------------------------------------
    @abstractmethod
    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Tuple[np.ndarray, np.ndarray]:
        """X (n, n_features) and the targets as scikit-learn trains on them (2-D)."""

    @abstractmethod
    def _head(self) -> Tuple[str, str, str]:
        """(gpubp loss, gpubp output activation, scikit-learn's ``out_activation_``)."""

    @abstractmethod
    def _network_targets(self, Y: np.ndarray) -> np.ndarray:
        """The targets the network's loss takes, from the 2-D targets of :meth:`_validate_input`."""

    @abstractmethod
    def _score_targets(self, Y: np.ndarray) -> np.ndarray:
        """The targets :meth:`score` compares predictions with, from the same 2-D targets."""

    @abstractmethod
    def _score(self, X: Any, y: np.ndarray) -> float:
        """The validation score of early stopping (accuracy or R^2), without input checks."""

    def _partial_fit_first_call(self, y: Any, classes: Any) -> None:
        """Set up what the first ``partial_fit`` needs beyond the data (the classifier's classes)."""

    # ---- the network ------------------------------------------------------------------
    def _hidden_sizes(self) -> List[int]:
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if not all(isinstance(s, Integral) and not isinstance(s, (bool, np.bool_)) for s in sizes):
            raise ValueError(f"hidden_layer_sizes must hold whole numbers of nodes, got {sizes}.")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _initial_coefs(self, layer_units: Sequence[int], rs: np.random.RandomState) -> List[Tuple[np.ndarray, np.ndarray]]:
        """scikit-learn's initialisation, drawn from ``rs`` in its order: per layer the weights
        (n_in, n_out), then the intercepts, uniform in +-sqrt(f / (n_in + n_out)) with f = 2 for
        the logistic activation and 6 otherwise (Glorot & Bengio)."""
        factor = 2.0 if HIDDEN_ACTIVATIONS[self.activation] == "sigmoid" else 6.0
        layers = []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            coef = rs.uniform(-bound, bound, (fan_in, fan_out))
            intercept = rs.uniform(-bound, bound, fan_out)
            layers.append((coef, intercept))
        return layers

    def _new_network(self, layer_units: Sequence[int], layers: List[Tuple[np.ndarray, np.ndarray]], seed: int) -> MLP:
        """The gpubp network for ``layer_units`` holding ``layers`` (on ``backend``, in ``dtype``)."""
        loss, output, _ = self._head()
        with _on_backend(self.backend):
            net = MLP(list(layer_units), activation=HIDDEN_ACTIVATIONS[self.activation], output_activation=output,
                      loss=loss, dtype=self.dtype, seed=seed, dropout=self.dropout, batch_norm=self.batch_norm)
        _write_layers(net, layers)
        return net

    def _check_warm_network(self, layer_units: Sequence[int]) -> None:
        """warm_start and partial_fit go on with the fitted network: it must be the one asked for."""
        net = self.network_
        loss, _, _ = self._head()
        cfg = net.get_config()
        asked = {"sizes": list(layer_units), "activation": [HIDDEN_ACTIVATIONS[self.activation]] * (len(layer_units) - 2),
                 "loss": loss, "dtype": check_dtype(self.dtype).name, "dropout": float(self.dropout),
                 "batch_norm": bool(self.batch_norm)}
        have = {key: cfg[key] for key in asked}
        if asked != have:
            raise ValueError(
                f"warm_start / partial_fit continue the fitted network ({have}) but the data and parameters now ask "
                f"for {asked}; fit with warm_start=False to start again")

    def _fitted_network(self, attribute: str) -> MLP:
        net = self.__dict__.get("network_")
        if net is None:
            raise AttributeError(f"{type(self).__name__} has no attribute {attribute!r} before it is fitted")
        return net

    @property
    def coefs_(self) -> List[np.ndarray]:
        """Weights per layer as NumPy arrays of shape (n_in, n_out), scikit-learn's orientation
        (the transpose of gpubp's W^(l), whose W[j, k] is w_jk^(l)); assigning writes them in."""
        net = self._fitted_network("coefs_")
        return [net.backend.to_numpy(layer.W).T.copy() for layer in net.dense_layers]

    @coefs_.setter
    def coefs_(self, coefs: Sequence[Any]) -> None:
        net = self._fitted_network("coefs_")
        _write_layers(net, list(zip(_checked(coefs, [(layer.W.shape[1], layer.W.shape[0]) for layer in net.dense_layers],
                                             "coefs_"), [None] * net.L)))

    @property
    def intercepts_(self) -> List[np.ndarray]:
        """Biases per layer as NumPy arrays of shape (n_out,); assigning writes them in."""
        net = self._fitted_network("intercepts_")
        return [net.backend.to_numpy(layer.b).copy() for layer in net.dense_layers]

    @intercepts_.setter
    def intercepts_(self, intercepts: Sequence[Any]) -> None:
        net = self._fitted_network("intercepts_")
        _write_layers(net, list(zip([None] * net.L, _checked(intercepts, [layer.b.shape for layer in net.dense_layers],
                                                             "intercepts_"))))

    # ---- fitting ------------------------------------------------------------------------
    def _check_solver(self) -> bool:
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic.")
        return True

    @contextlib.contextmanager
    def _unchanged_on_error(self) -> Iterator[None]:
        """A call rejected while its arguments are checked leaves the estimator as it was."""
        saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None) -> "BaseMLP":
        self._validate_params()
        for name in ("alpha", "learning_rate_init", "power_t", "tol", "epsilon"):  # open-ended: 10**400 passes
            as_float(getattr(self, name), name)
        before = dict(self.__dict__)
        with self._unchanged_on_error():
            if incremental:
                self._partial_fit_first_call(y, classes)
            run = self._prepare(X, y, incremental)
        net = self.network_
        net.l2 = self._loss_scale * float(self.alpha)
        start = (net.epoch, net.backend.to_numpy(net.params).copy())
        try:
            if self.solver in STOCHASTIC_SOLVERS:
                _solvers.fit_stochastic(self, run, incremental)
            else:
                _solvers.fit_lbfgs(self, run)
        except BaseException:
            # refused by the network's own checks before any step (a value beyond float32, a
            # BatchNorm step of one row): the estimator as it was, fitted model included
            if net.epoch == start[0] and np.array_equal(net.backend.to_numpy(net.params), start[1]):
                self.__dict__.clear()
                self.__dict__.update(before)
            raise
        if not bool(net.backend.xp.isfinite(net.params).all()):
            raise ValueError(_solvers.NON_FINITE)
        return self

    def _prepare(self, X: Any, y: Any, incremental: bool) -> Run:
        """Check the data, build the network (first fit) and the solver; set the initial attributes."""
        hidden = self._hidden_sizes()
        stochastic = self.solver in STOCHASTIC_SOLVERS
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = "network_" not in self.__dict__ or (not self.warm_start and not incremental)
        X, Y = self._validate_input(X, y, incremental, reset=first_pass)
        if Y.ndim == 1:
            Y = Y.reshape((-1, 1))
        layer_units = [X.shape[1]] + hidden + [Y.shape[1]]
        rs = self._random_state = check_random_state(self.random_state)
        if first_pass:
            layers = self._initial_coefs(layer_units, rs)
        else:
            self._check_warm_network(layer_units)
        val = None
        if stochastic and self.early_stopping:
            stratify = Y if is_classifier(self) and Y.shape[1] == 1 else None  # as scikit-learn: not multi-label
            X, X_val, Y, Y_val = train_test_split(X, Y, random_state=rs, test_size=self.validation_fraction,
                                                  stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your dataset.")
        if first_pass:
            # the network's own generator (mini-batch shuffling) is seeded from random_state too
            self.network_ = self._new_network(layer_units, layers, seed=int(rs.randint(np.iinfo(np.int32).max)))
            self._initialize(layer_units)
        net = self.network_
        if stochastic and (not incremental or self.__dict__.get("_solver") is None):
            self._solver = _solvers.LearningRate(self)
        if stochastic:
            self._prepare_stopping_state()
        backend = net.backend
        if stochastic and self.early_stopping:  # scored every epoch: moved to the backend once (sparse: kept as CSR)
            val = (_network_rows(net, X_val), self._score_targets(Y_val))
        X_net = _network_rows(net, X, on_host=True)
        Y_net = self._network_targets(Y)
        if Y_net.dtype.kind == "f":
            with np.errstate(over="ignore"):  # reported by the network's finiteness check
                Y_net = Y_net.astype(net.dtype, copy=False)
        if not stochastic:  # L-BFGS evaluates every row at every step: on the backend once (sparse: in host memory)
            X_net, Y_net = _network_rows(net, X_net), backend.asarray(Y_net)
        # else MLP.fit moves the data set to a GPU once, or streams it where it does not fit (or is sparse)
        return Run(X_net, Y_net, X.shape[0], val)

    def _initialize(self, layer_units: Sequence[int]) -> None:
        """The attributes a first fit starts from (scikit-learn's ``_initialize``)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = int(layer_units[-1])
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._head()[2]
        self._best_params = self.network_.params.copy()
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_: Optional[List[float]] = []
                self.best_validation_score_: Optional[float] = -np.inf
                self.best_loss_: Optional[float] = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
        else:  # L-BFGS keeps no curve: drop a stochastic fit's
            for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
                self.__dict__.pop(name, None)

    def _prepare_stopping_state(self) -> None:
        """warm_start after a fit with the other ``early_stopping``: start that bookkeeping afresh."""
        if "loss_curve_" not in self.__dict__:
            self.loss_curve_ = []
            self._no_improvement_count = 0
        if self.early_stopping and self.__dict__.get("validation_scores_") is None:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        elif not self.early_stopping and self.__dict__.get("best_loss_") is None:
            self.best_loss_, self.validation_scores_, self.best_validation_score_ = np.inf, None, None

    # ---- prediction ---------------------------------------------------------------------
    def _forward(self, X: Any, check_input: bool = True) -> np.ndarray:
        """The network's outputs A^(L) as a NumPy array in X's float dtype (float64 unless X is float32)."""
        if check_input:
            X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32), accept_sparse="csr")
        net = self.network_
        return net.backend.to_numpy(net.forward(X)).astype(X.dtype, copy=False)

    def _score_with_function(self, X: Any, y: np.ndarray, score_function: Any) -> float:
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return float(score_function(y, y_pred))

    @abstractmethod
    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        """Predictions for X (labels or values)."""

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self._predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # SciPy sparse X, as scikit-learn's MLP takes it
        return tags

    # ---- pickling: the network pickles itself to NumPy; the rest of the state follows it ------
    def __getstate__(self) -> Dict[str, Any]:
        state = super().__getstate__()
        best, net = state.get("_best_params"), state.get("network_")
        if best is not None and net is not None:
            state["_best_params"] = net.backend.to_numpy(best).copy()
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        super().__setstate__(state)
        net = self.__dict__.get("network_")
        if net is None:
            return
        if self.__dict__.get("_best_params") is not None:
            self._best_params = net.backend.asarray(self._best_params, dtype=net.dtype).copy()
        if self.__dict__.get("_solver") is not None:
            self._solver.attach(net)


def _on_backend(name: Optional[str]) -> Any:
    """``use_backend(name)``, or nothing where ``name`` is None or picks the active backend (a new
    backend brings new ops: on CuPy, every kernel compiled again for each network)."""
    if name is None:
        return contextlib.nullcontext()
    wanted = name if name != "auto" else ("cupy" if cupy_problem() is None else "numpy")
    return contextlib.nullcontext() if get_backend().name == wanted else use_backend(name)


def _network_rows(net: MLP, X: Any, on_host: bool = False) -> Any:
    """X in the network's dtype: a CSR matrix in host memory where X is sparse (served batch by batch,
    densified a batch at a time), else a C-contiguous array on the backend (on the host if ``on_host``)."""
    if issparse(X):
        return X.tocsr().astype(net.dtype, copy=False)
    with np.errstate(over="ignore"):  # a value beyond the dtype's range is reported by the network's check
        X = np.ascontiguousarray(X, dtype=net.dtype) if on_host or not is_device_array(X) else X
    return X if on_host else net.backend.asarray(X, dtype=net.dtype)


def _checked(arrays: Sequence[Any], shapes: Sequence[Tuple[int, ...]], name: str) -> List[np.ndarray]:
    """``arrays`` as NumPy arrays of exactly ``shapes``; a ValueError naming the first misfit."""
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) != len(shapes):
        raise ValueError(f"{name} must hold {len(shapes)} arrays, one per layer; got {len(arrays)}")
    for i, (a, shape) in enumerate(zip(arrays, shapes)):
        if a.shape != tuple(shape) or a.dtype.kind not in "biuf" or not np.isfinite(a).all():
            raise ValueError(f"{name}[{i}] must be a finite real array of shape {tuple(shape)}; got {a.dtype} {a.shape}")
    return arrays


def _write_layers(net: MLP, layers: List[Tuple[Optional[np.ndarray], Optional[np.ndarray]]]) -> None:
    """Write scikit-learn's (coef (n_in, n_out), intercept (n_out,)) pairs into the network's
    W^(l) (n_out, n_in) and b^(l) (None leaves one as it is)."""
    backend = net.backend
    for layer, (coef, intercept) in zip(net.dense_layers, layers):
        if coef is not None:
            layer.W[...] = backend.asarray(np.asarray(coef).T, dtype=net.dtype)
        if intercept is not None:
            layer.b[...] = backend.asarray(intercept, dtype=net.dtype)
