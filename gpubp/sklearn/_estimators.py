"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's MLP estimators, trained by gpubp.

Swap ``from sklearn.neural_network import MLPClassifier`` for
``from gpubp.sklearn import MLPClassifier``: the parameters, defaults, fitted attributes and
methods are scikit-learn's (``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``
document them); the network underneath is :class:`gpubp.MLP` on NumPy or a CUDA GPU.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._base import BaseMLP

_PARAMETERS = """
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        Nodes of each hidden layer.
    activation : str, default="relu"
        Hidden activation: scikit-learn's ``identity``, ``logistic``, ``tanh``, ``relu``, or one of
        gpubp's ``sigmoid`` (= logistic), ``leaky_relu``, ``elu``, ``softplus``, ``gelu``,
        ``gelu_tanh``, ``silu``.
    solver : {"adam", "sgd", "lbfgs"}, default="adam"
        Adam or SGD over mini-batches (gpubp's optimizers), or full-batch L-BFGS (SciPy's).
    alpha : float, default=1e-4
        L2 penalty on the weights, added to each batch's loss as (alpha / 2n) sum ||W||^2.
    batch_size : int or "auto", default="auto"
        Rows per mini-batch; "auto" is min(200, n_samples).
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        SGD's schedule: constant; learning_rate_init / (t + 1)^power_t after each epoch (t the
        samples seen); or divided by 5 each time the stopping rule fires, down to 1e-6.
    learning_rate_init : float, default=0.001
        The first step size (sgd, adam).
    power_t : float, default=0.5
        The exponent of ``invscaling``.
    max_iter : int, default=200
        Epochs at most (sgd, adam), iterations at most (lbfgs).
    shuffle : bool, default=True
        Draw a new order of the rows every epoch (sgd, adam).
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights (scikit-learn's Glorot scheme, in its order), the
        early-stopping split and the seed of the batch shuffling.
    tol : float, default=1e-4
        The improvement of the training loss (or validation score) that counts; for lbfgs the
        gradient tolerance.
    verbose : bool, default=False
        Print scikit-learn's progress lines.
    warm_start : bool, default=False
        Go on from the fitted network (with a fresh optimizer) instead of starting again.
    momentum : float, default=0.9
        SGD's momentum, in [0, 1).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for SGD.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when their score stops improving,
        keep the weights of the best score (sgd, adam).
    validation_fraction : float, default=0.1
        The share held out for early stopping.
    beta_1 : float, default=0.9
        Adam's decay of the first moment.
    beta_2 : float, default=0.999
        Adam's decay of the second moment.
    epsilon : float, default=1e-8
        Adam's epsilon, added to sqrt(v) (the paper's epsilon-hat, as scikit-learn does).
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before the stopping rule fires.
    max_fun : int, default=15000
        Loss evaluations at most (lbfgs).
    backend : {"numpy", "cupy", "auto"} or None, default=None
        gpubp's: where the network computes; None uses the active backend (``GPUBP_BACKEND``).
    dtype : {"float32", "float64"}, default="float32"
        gpubp's: the network's precision. Predictions come back in the input's float dtype.
    dropout : float, default=0.0
        gpubp's: p > 0 puts a Dropout(p) after each hidden activation (training only).
    batch_norm : bool, default=False
        gpubp's: a BatchNorm after each hidden layer's linear part (every batch then needs at
        least 2 rows). With dropout or batch_norm the steps are no longer scikit-learn's.
"""

_ATTRIBUTES = """
    Attributes
    ----------
    loss_ : float
        The loss of the last epoch (the mean of its batches' losses, L2 penalty included).
    best_loss_ : float or None
        The lowest ``loss_`` so far (None with early stopping).
    loss_curve_ : list of float
        ``loss_`` of every epoch (sgd, adam).
    validation_scores_ : list of float or None
        The validation score of every epoch with early stopping, else None.
    best_validation_score_ : float or None
        The best of ``validation_scores_``, whose weights are kept.
    n_iter_ : int
        Epochs (or L-BFGS iterations) of the last call.
    t_ : int
        Samples seen by the stochastic solvers, over all calls.
    n_layers_ : int
        Layers, input and output included.
    n_outputs_ : int
        Output nodes.
    out_activation_ : str
        The output activation, by scikit-learn's name.
    coefs_ : list of ndarray
        Weights per layer, NumPy arrays of shape (n_in, n_out) (gpubp's W^(l) transposed);
        assigning writes them into the network.
    intercepts_ : list of ndarray
        Biases per layer, of shape (n_out,); assigning writes them into the network.
    n_features_in_ : int
        Features seen by fit.
    feature_names_in_ : ndarray of str
        Their names, when X was a DataFrame with string column names.
    network_ : gpubp.MLP
        The trained network.
"""


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier`` trained by gpubp.

    Minimises the log-loss: softmax outputs and cross-entropy for several classes, one sigmoid
    output and binary cross-entropy for two, a sigmoid per label for multi-label targets (a 2-D
    indicator ``y``). Labels may be of any type (ints, strings, booleans); ``predict`` returns
    them, ``predict_proba`` the probabilities in the order of ``classes_``.
    """

    __doc__ = (__doc__ or "") + """
    Parameters
    ----------""" + _PARAMETERS + _ATTRIBUTES + """    classes_ : ndarray
        The labels, sorted (column indices for a label indicator matrix).
"""

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *, solver: str = "adam",
                 alpha: float = 0.0001, batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: Any = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: Any = 10, max_fun: int = 15000, backend: Optional[str] = None,
                 dtype: Any = "float32", dropout: float = 0.0, batch_norm: bool = False):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, backend=backend, dtype=dtype,
            dropout=dropout, batch_norm=batch_norm)

    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        """Train on X (n_samples, n_features) and labels y (n_samples,), or a 2-D label indicator."""
        return self._fit(X, y, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> "MLPClassifier":
        """One epoch over X, y; ``classes`` (every label of the whole data) on the first call."""
        return self._fit(X, y, incremental=True, classes=classes)

    def _partial_fit_first_call(self, y: Any, classes: Any) -> None:
        known = self.__dict__.get("classes_")
        if known is None and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is None:
            return
        if known is not None:
            if not np.array_equal(known, unique_labels(classes)):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {known!r}")
            return
        self.classes_ = unique_labels(classes)
        binarizer = LabelBinarizer()
        binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        self._label_binarizer = binarizer

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, accept_sparse="csr", multi_output=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if "classes_" not in self.__dict__ or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                                     f"call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        binarizer = self._label_binarizer
        if binarizer.y_type_ == "multiclass" and y.ndim == 1:
            # label_binarize's rows for a multiclass binarizer (a one at the label's column of the
            # sorted classes_), without its checks: every label of y is a known class (fitted on y
            # above, or checked against classes_)
            return X, y.reshape(-1, 1) == binarizer.classes_
        return X, binarizer.transform(y).astype(bool)

    def _multiclass(self) -> bool:
        return self._label_binarizer.y_type_ == "multiclass"

    def _head(self) -> Tuple[str, str, str]:
        if self._multiclass():
            return "cross_entropy", "softmax", "softmax"
        return "binary_cross_entropy", "sigmoid", "logistic"

    def _network_targets(self, Y: np.ndarray) -> np.ndarray:
        # several classes: the index of each row's class (gpubp's cross-entropy reads labels
        # directly); two classes or multi-label: the 0/1 indicator matrix
        return Y.argmax(axis=1).astype(np.int64) if self._multiclass() else Y.astype(np.float64)

    def _score_targets(self, Y: np.ndarray) -> np.ndarray:
        return self._label_binarizer.inverse_transform(Y)

    def _score(self, X: Any, y: np.ndarray) -> float:
        return self._score_with_function(X, y, accuracy_score)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict(self, X: Any) -> np.ndarray:
        """The label of each row (a row of 0/1 per label for multi-label targets)."""
        return super().predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities (n_samples, n_classes) in the order of ``classes_``."""
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """log(predict_proba(X))."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor`` trained by gpubp.

    Minimises the squared error with identity outputs, for one target (``y`` of shape
    (n_samples,)) or several (n_samples, n_targets). scikit-learn's ``loss`` takes
    ``"squared_error"`` only (its ``"poisson"`` is not provided).

    The network trains on gpubp's ``sse``, the tutorial's C_0 = sum_j (a_j - y_j)^2, which is
    twice scikit-learn's (1/2) sum_j (a_j - y_j)^2: its L2 coefficient is 2 alpha, SGD's rate
    learning_rate_init / 2 and Adam's epsilon 2 epsilon, so the steps are scikit-learn's;
    ``loss_`` and ``loss_curve_`` report half the network's loss. (For several targets
    scikit-learn's reported loss also divides by their number; gpubp's does not.)
    """

    __doc__ = (__doc__ or "") + """
    Parameters
    ----------
    loss : {"squared_error"}, default="squared_error"
        The loss: half the squared error, summed over the targets.""" + _PARAMETERS + _ATTRIBUTES
    _parameter_constraints: dict = {**BaseMLP._parameter_constraints, "loss": [StrOptions({"squared_error"})]}
    _loss_scale = 2.0

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: Any = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: Any = False, warm_start: bool = False,
                 momentum: float = 0.9, nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: Any = 10, max_fun: int = 15000, backend: Optional[str] = None,
                 dtype: Any = "float32", dropout: float = 0.0, batch_norm: bool = False):
        self.loss = loss
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, backend=backend, dtype=dtype,
            dropout=dropout, batch_norm=batch_norm)

    def fit(self, X: Any, y: Any) -> "MLPRegressor":
        """Train on X (n_samples, n_features) and targets y (n_samples,) or (n_samples, n_targets)."""
        return self._fit(X, y, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any) -> "MLPRegressor":
        """One epoch over X, y, continuing the fitted network (or starting one)."""
        return self._fit(X, y, incremental=True)

    def _validate_input(self, X: Any, y: Any, incremental: bool, reset: bool) -> Tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, accept_sparse="csr", multi_output=True, y_numeric=True, dtype=(np.float64, np.float32),
                             reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _head(self) -> Tuple[str, str, str]:
        return "sse", "identity", "identity"

    def _network_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y

    def _score_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y.ravel() if Y.shape[1] == 1 else Y

    def _score(self, X: Any, y: np.ndarray) -> float:
        return self._score_with_function(X, y, r2_score)

    def _predict(self, X: Any, check_input: bool = True) -> np.ndarray:
        y_pred = self._forward(X, check_input)
        return y_pred.ravel() if y_pred.shape[1] == 1 else y_pred

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values: (n_samples,) for one target, (n_samples, n_targets) for several."""
        return super().predict(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
