"""gpubp.sklearn's estimators take scikit-learn's own steps: with the same hyper-parameters,
``random_state``, float64 and no shuffling (so that the batches are the same), the weights,
losses, validation scores, stopping epochs, learning rates and printed lines after training
equal scikit-learn's MLPClassifier / MLPRegressor to rounding, for every solver, learning-rate
schedule, stopping rule, output kind, warm start and partial_fit."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import neural_network  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits, make_multilabel_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from gpubp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
SAME = dict(random_state=0, shuffle=False, max_iter=12, hidden_layer_sizes=(20,))


def _digits(n: int = 400):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _diabetes():
    X, y = load_diabetes(return_X_y=True)
    return X, (y - y.mean()) / y.std()


def _rel_err(ours, theirs) -> float:
    pairs = list(zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_))
    assert [a.shape for a, _ in pairs] == [b.shape for _, b in pairs]
    return max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in pairs)


def _assert_same(ours, theirs, tol: float = 1e-10):
    assert _rel_err(ours, theirs) < tol
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=tol)
    if hasattr(theirs, "loss_curve_"):
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=tol)
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=tol) if theirs.best_loss_ is not None \
            else ours.best_loss_ is None
        assert ours.validation_scores_ == theirs.validation_scores_
        assert ours.best_validation_score_ == theirs.best_validation_score_


CLASSIFIER_SETTINGS = [
    dict(solver="sgd"),
    dict(solver="sgd", momentum=0.0),
    dict(solver="sgd", nesterovs_momentum=False, activation="tanh"),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, power_t=0.25),
    dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5, tol=0.05, n_iter_no_change=1),
    dict(solver="sgd", activation="logistic", learning_rate_init=0.2, batch_size=64),
    dict(solver="adam", activation="identity", alpha=0.3),
    dict(solver="adam", beta_1=0.5, beta_2=0.9, epsilon=1e-3, tol=0.03, n_iter_no_change=2),
    dict(solver="sgd", early_stopping=True, validation_fraction=0.25, n_iter_no_change=2, tol=0.01),
    dict(solver="adam", early_stopping=True, learning_rate_init=0.02, n_iter_no_change=1, max_iter=30),
    dict(solver="lbfgs", max_iter=8),
]


@pytest.mark.parametrize("settings", CLASSIFIER_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_classifier_takes_scikit_learns_steps(settings):
    X, y = _digits()
    kwargs = {**SAME, "alpha": 0.01, **settings}
    ours = MLPClassifier(dtype="float64", **kwargs).fit(X, y)
    theirs = neural_network.MLPClassifier(**kwargs).fit(X, y)
    _assert_same(ours, theirs)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9, atol=1e-12)
    if settings.get("learning_rate") == "adaptive":  # the rate was divided by 5 at least once, alike
        assert ours._solver.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=1e-12)
        assert ours._solver.learning_rate < settings["learning_rate_init"]
    elif "n_iter_no_change" in settings:
        assert ours.n_iter_ < kwargs["max_iter"]  # the stopping rule ended training, at the same epoch


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("outputs", ["binary", "multilabel"])
def test_sigmoid_outputs_take_scikit_learns_steps(solver, outputs):
    if outputs == "binary":
        X, y = _digits()
        y = np.where(y == 3, "three", "other")
    else:
        X, y = make_multilabel_classification(n_samples=150, n_features=12, n_classes=4, random_state=1)
    kwargs = {**SAME, "solver": solver, "max_iter": 8}
    ours = MLPClassifier(dtype="float64", **kwargs).fit(X, y)
    theirs = neural_network.MLPClassifier(**kwargs).fit(X, y)
    _assert_same(ours, theirs)
    assert ours.out_activation_ == "logistic"
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("settings", [dict(solver="sgd", learning_rate_init=0.01),
                                      dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05),
                                      dict(solver="adam", learning_rate_init=0.01, alpha=0.5),
                                      dict(solver="adam", early_stopping=True, n_iter_no_change=1, tol=0.05),
                                      dict(solver="lbfgs", max_iter=10)], ids=lambda s: ",".join(map(str, s.values())))
def test_regressor_takes_scikit_learns_steps_and_reports_its_loss(settings):
    X, y = _diabetes()
    kwargs = {**SAME, **settings}
    ours = MLPRegressor(dtype="float64", **kwargs).fit(X, y)
    theirs = neural_network.MLPRegressor(**kwargs).fit(X, y)
    _assert_same(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), rel=1e-9)


def test_several_targets_take_scikit_learns_steps():
    """For several targets scikit-learn reports the loss averaged over them but steps on their sum;
    gpubp steps alike and reports the sum (the loss its gradient belongs to)."""
    X, y = _diabetes()
    Y = np.column_stack([y, 0.5 * y + X[:, 0], X[:, 1]])
    ours = MLPRegressor(dtype="float64", solver="sgd", learning_rate_init=0.01, **SAME).fit(X, Y)
    theirs = neural_network.MLPRegressor(solver="sgd", learning_rate_init=0.01, **SAME).fit(X, Y)
    assert _rel_err(ours, theirs) < 1e-10
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-12)
    assert ours.predict(X).shape == (len(X), 3)
    penalty = 0.5 * 1e-4 / len(X) * sum(float((c * c).sum()) for c in ours.coefs_)
    assert ours.loss_ == pytest.approx(0.5 * ((ours.predict(X) - Y) ** 2).sum(axis=1).mean() + penalty, rel=0.05)


def test_warm_start_and_partial_fit_continue_as_scikit_learn_does():
    X, y = _digits()
    pairs = []
    for est in (MLPClassifier(dtype="float64", solver="sgd", **SAME), neural_network.MLPClassifier(solver="sgd", **SAME)):
        est.set_params(max_iter=4).fit(X, y)
        est.set_params(warm_start=True, max_iter=3, learning_rate_init=0.05).fit(X, y)  # a fresh optimizer, same weights
        pairs.append(est)
    _assert_same(*pairs)
    assert len(pairs[0].loss_curve_) == 7

    pairs = []
    for est in (MLPClassifier(dtype="float64", solver="adam", **SAME), neural_network.MLPClassifier(solver="adam", **SAME)):
        est.partial_fit(X[:150], y[:150], classes=np.arange(10))
        for s in (150, 300):
            est.partial_fit(X[s:s + 150], y[s:s + 150])  # the optimizer's state goes on
        pairs.append(est)
    _assert_same(*pairs)
    assert pairs[0].n_iter_ == 1 and pairs[0].t_ == 400


def test_verbose_prints_scikit_learns_lines(capsys):
    X, y = _digits()
    kwargs = dict(SAME, solver="sgd", learning_rate="adaptive", learning_rate_init=0.5, early_stopping=True,
                  n_iter_no_change=1, tol=0.1, verbose=True, max_iter=10)
    MLPClassifier(dtype="float64", **kwargs).fit(X, y)
    ours = capsys.readouterr().out
    neural_network.MLPClassifier(**kwargs).fit(X, y)
    theirs = capsys.readouterr().out
    assert ours == theirs
    assert "Iteration 1, loss = " in ours and "Validation score: " in ours and "Setting learning rate to" in ours


def test_max_iter_warns_of_no_convergence_as_scikit_learn_does():
    X, y = _digits(100)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\) reached"):
        MLPClassifier(max_iter=2, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        MLPClassifier(max_iter=2, random_state=0).partial_fit(X, y, classes=np.arange(10))  # one epoch: no warning
