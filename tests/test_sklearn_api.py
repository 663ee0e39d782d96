"""gpubp.sklearn in scikit-learn's world: labels of any type, DataFrames, pickle and joblib,
Pipeline, GridSearchCV, cross_val_score, clone, the fitted attributes, refused calls, and the
optional import."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

import joblib  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_diabetes, load_digits, load_iris  # noqa: E402
from sklearn.metrics import accuracy_score  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import gpubp  # noqa: E402
from gpubp.backend import cupy_problem  # noqa: E402
from gpubp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
ROOT = Path(__file__).resolve().parents[1]


def _digits(n: int = 500):
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def _fitted(**kwargs) -> MLPClassifier:
    X, y = _digits()
    return MLPClassifier(hidden_layer_sizes=(24,), max_iter=30, random_state=0, **kwargs).fit(X, y)


# ---- labels ------------------------------------------------------------------------------
def test_string_labels_are_predicted_as_strings_and_scored_by_accuracy_score():
    X, y = _digits()
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier(hidden_layer_sizes=(24,), learning_rate_init=0.01, max_iter=40, random_state=0).fit(X, names[y])
    np.testing.assert_array_equal(clf.classes_, np.sort(names))
    pred = clf.predict(X)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert accuracy_score(names[y], pred) == clf.score(X, names[y]) > 0.9
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba), rtol=1e-6)


def test_boolean_labels_train_one_sigmoid_output():
    X, y = _digits()
    target = y >= 5
    clf = MLPClassifier(hidden_layer_sizes=(24,), learning_rate_init=0.01, max_iter=40, random_state=0).fit(X, target)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1 and clf.network_.sizes[-1] == 1
    assert clf.network_.loss.name == "binary_cross_entropy"
    pred = clf.predict(X)
    assert pred.dtype == bool and np.mean(pred == target) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(proba[:, 1] > 0.5, pred)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_multilabel_indicator_targets_predict_indicator_rows():
    X, y = _digits()
    Y = np.column_stack([y % 2, y >= 5, y == 0]).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=60, random_state=0).fit(X, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    pred = clf.predict(X)
    assert pred.shape == Y.shape and pred.dtype.kind == "i"
    assert np.mean(pred == Y) > 0.9


def test_predictions_come_back_in_the_inputs_float_dtype():
    clf = _fitted()
    X, _ = _digits(20)
    assert clf.predict_proba(X).dtype == np.float64
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(clf.predict_proba(X.astype(np.float32)), clf.predict_proba(X), rtol=1e-5, atol=1e-7)


# ---- DataFrames --------------------------------------------------------------------------
def test_dataframe_input_keeps_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = _digits()
    frame = pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(64)])
    clf = MLPClassifier(hidden_layer_sizes=(24,), max_iter=20, random_state=0).fit(frame, pd.Series(y))
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    assert clf.n_features_in_ == 64
    same = MLPClassifier(hidden_layer_sizes=(24,), max_iter=20, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(frame), same.predict_proba(X))
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(frame[frame.columns[::-1]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        clf.predict(X)
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(frame, pd.Series(y, dtype=float))
    assert reg.predict(frame).shape == (len(X),)


# ---- pickling ------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_pickled_estimator_predicts_and_trains_on_exactly_like_the_original(dump, solver, tmp_path):
    X, y = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(24,), solver=solver, learning_rate="adaptive", max_iter=5, random_state=0)
    clf.partial_fit(X, y, classes=np.arange(10))
    if dump == "pickle":
        copy = pickle.loads(pickle.dumps(clf))
    else:
        joblib.dump(clf, tmp_path / "clf.joblib")
        copy = joblib.load(tmp_path / "clf.joblib", mmap_mode="r")  # read-only memory maps come back writable
    assert copy.network_ is not clf.network_ and copy.network_.backend.name == clf.network_.backend.name
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    for est in (clf, copy):  # the optimizer's state (velocity or moments), its step count and the shuffling go on alike
        for _ in range(3):
            est.partial_fit(X, y)
    for a, b in zip(copy.coefs_ + copy.intercepts_, clf.coefs_ + clf.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert copy.loss_curve_ == clf.loss_curve_ and copy.t_ == clf.t_ == 4 * len(X)


def test_unfitted_estimator_pickles_and_clones():
    est = MLPRegressor(hidden_layer_sizes=(7, 3), alpha=0.5, backend="numpy", dtype="float64")
    for copy in (pickle.loads(pickle.dumps(est)), clone(est)):
        assert copy.get_params() == est.get_params()
        assert not hasattr(copy, "network_") and not hasattr(copy, "coefs_")


# ---- composition -------------------------------------------------------------------------
def test_pipeline_with_standard_scaler_is_scaling_then_the_network():
    X, y = load_iris(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=150, random_state=0)
    pipe = make_pipeline(StandardScaler(), clone(model)).fit(X, y)
    alone = clone(model).fit(StandardScaler().fit_transform(X), y)
    np.testing.assert_array_equal(pipe.predict_proba(X), alone.predict_proba(StandardScaler().fit_transform(X)))
    assert pipe.score(X, y) > 0.9


def test_grid_search_over_alpha_and_hidden_layer_sizes_scores_each_candidate_by_cross_validation():
    X, y = _digits(300)
    grid = {"alpha": [1e-4, 1.0], "hidden_layer_sizes": [(8,), (32,)]}
    base = MLPClassifier(learning_rate_init=0.01, max_iter=25, random_state=0)
    search = GridSearchCV(base, grid, cv=3).fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    for params, mean in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        by_hand = cross_val_score(clone(base).set_params(**params), X, y, cv=3).mean()
        assert mean == pytest.approx(by_hand, abs=1e-12)
    assert search.best_params_["hidden_layer_sizes"] == (32,) and search.best_score_ > 0.85
    assert isinstance(search.best_estimator_, MLPClassifier) and search.best_estimator_.network_.sizes[1] == 32


def test_cross_val_score_is_the_folds_fitted_one_by_one():
    X, y = load_diabetes(return_X_y=True)
    model = Pipeline([("scale", StandardScaler()), ("mlp", MLPRegressor(hidden_layer_sizes=(16,), max_iter=20,
                                                                        learning_rate_init=0.01, random_state=0))])
    folds = KFold(5, shuffle=True, random_state=0)
    scores = cross_val_score(model, X, y, cv=folds)
    by_hand = [clone(model).fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in folds.split(X)]
    np.testing.assert_allclose(scores, by_hand, rtol=1e-12)


def test_clone_copies_parameters_not_the_fit():
    clf = _fitted(alpha=0.3, activation="gelu")
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params() and fresh.activation == "gelu"
    assert not hasattr(fresh, "network_")
    assert "MLPClassifier" in clf._repr_html_() and "gelu" in repr(clf)


# ---- attributes ----------------------------------------------------------------------------
def test_fitted_attributes_name_the_network_in_scikit_learns_terms():
    clf = _fitted(activation="logistic")
    net = clf.network_
    assert isinstance(net, gpubp.MLP) and net.sizes == (64, 24, 10)
    assert [a.name for a in net.activations] == ["sigmoid", "softmax"] and net.l2 == clf.alpha
    assert clf.n_layers_ == 3 and clf.n_outputs_ == 10 and clf.out_activation_ == "softmax"
    assert [c.shape for c in clf.coefs_] == [(64, 24), (24, 10)] and [b.shape for b in clf.intercepts_] == [(24,), (10,)]
    np.testing.assert_array_equal(clf.coefs_[1], net.backend.to_numpy(net.layers[2].W).T)
    assert len(clf.loss_curve_) == clf.n_iter_ == 30 and clf.loss_ == clf.loss_curve_[-1] >= clf.best_loss_
    assert clf.t_ == 30 * 500 and clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_coefs_can_be_written_in_a_scikit_learn_model_predicts_alike():
    X, y = _digits()
    theirs = neural_network.MLPClassifier(hidden_layer_sizes=(24,), max_iter=30, random_state=3).fit(X, y)
    ours = MLPClassifier(hidden_layer_sizes=(24,), max_iter=1, random_state=0, dtype="float64").fit(X, y)
    ours.coefs_, ours.intercepts_ = theirs.coefs_, theirs.intercepts_
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match=r"coefs_\[0\] must be a finite real array of shape \(64, 24\)"):
        ours.coefs_ = [c.T for c in theirs.coefs_]
    np.testing.assert_array_equal(ours.coefs_[0], theirs.coefs_[0])


def test_gpubp_activations_are_accepted_by_their_own_names():
    X, y = _digits()
    for name in ("gelu", "silu", "elu"):
        clf = MLPClassifier(hidden_layer_sizes=(24,), activation=name, learning_rate_init=0.01, max_iter=40,
                            random_state=0).fit(X, y)
        assert clf.network_.activations[0].name == name and clf.score(X, y) > 0.9


def test_backend_and_dtype_choose_the_networks():
    clf = _fitted(backend="numpy", dtype="float64")
    assert clf.network_.backend.name == "numpy" and clf.network_.dtype == np.float64
    with gpubp.use_backend("numpy") as active:  # the active backend asked for by name: its ops, not new ones
        assert _fitted(backend="numpy").network_.backend is active


# ---- refused calls -------------------------------------------------------------------------
def test_a_refused_fit_leaves_the_fitted_estimator_as_it_was():
    clf = _fitted()
    params = clf.get_params()
    before = {k: v for k, v in vars(clf).items() if k not in params}  # what fitting set
    coefs = clf.coefs_
    X, y = _digits()
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, y + 0.5)
    with pytest.raises(ValueError, match="momentum"):
        clf.set_params(solver="sgd", momentum=1.0).fit(X, y)
    clf.set_params(solver="adam", momentum=0.9)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
        clf.set_params(hidden_layer_sizes=(5, 0)).fit(X, y)
    clf.set_params(hidden_layer_sizes=(24,))
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        clf.set_params(early_stopping=True).partial_fit(X, y)
    clf.set_params(early_stopping=False)
    with pytest.raises(ValueError, match="warm_start / partial_fit continue the fitted network"):
        clf.set_params(warm_start=True, hidden_layer_sizes=(12,)).fit(X, y)
    after = {k: v for k, v in vars(clf).items() if k not in params}
    assert after.keys() == before.keys() and all(after[k] is v for k, v in before.items())
    for a, b in zip(clf.coefs_, coefs):
        np.testing.assert_array_equal(a, b)


def test_partial_fit_needs_the_classes_first_and_refuses_new_ones():
    X, y = _digits(100)
    clf = MLPClassifier(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    assert not hasattr(clf, "classes_")
    clf.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))  # classes unseen in a batch are allowed
    assert clf.n_outputs_ == 10
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=np.arange(11))
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, y + 1)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


@pytest.mark.skipif(cupy_problem() is None, reason="a GPU is visible: the CuPy backend can run")
def test_unavailable_backend_is_refused_before_anything_changes():
    X, y = _digits(100)
    clf = MLPClassifier(backend="cupy")
    with pytest.raises(gpubp.BackendUnavailableError):
        clf.fit(X, y)
    assert not hasattr(clf, "classes_") and not hasattr(clf, "n_features_in_")
    with pytest.raises(ValueError, match="backend"):
        MLPClassifier(backend="tpu").fit(X, y)


# ---- the optional import -------------------------------------------------------------------
def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)


def test_import_gpubp_never_imports_scikit_learn():
    out = _python("import sys, gpubp, gpubp.bench, gpubp.cli; print('sklearn' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_import_gpubp_sklearn_without_scikit_learn_names_the_extra():
    out = _python("import sys; sys.modules['sklearn'] = None\nimport gpubp.sklearn")
    assert out.returncode != 0
    assert 'pip install "gpubp[sklearn]"' in out.stderr and "ImportError" in out.stderr


def test_dropout_and_batch_norm_build_those_layers_and_still_learn():
    X, y = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(32,), dropout=0.2, batch_norm=True, learning_rate_init=0.01, max_iter=40,
                        random_state=0).fit(X, y)
    kinds = [type(layer).__name__ for layer in clf.network_.layers[1:]]
    assert kinds == ["Dense", "BatchNorm", "Dropout", "Dense"]
    assert [c.shape for c in clf.coefs_] == [(64, 32), (32, 10)] and clf.score(X, y) > 0.9
    copy = pickle.loads(pickle.dumps(clf))  # running statistics and dropout streams come along
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValueError, match="warm_start / partial_fit continue the fitted network"):
        clf.set_params(warm_start=True, dropout=0.0).fit(X, y)


@pytest.mark.parametrize("name", ["alpha", "learning_rate_init", "power_t", "tol", "epsilon"])
def test_an_open_ended_parameter_beyond_the_float_range_is_named(name):
    """scikit-learn's interval checks pass 10**400 for an unbounded real parameter; fit refuses it
    by name before anything is built."""
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    est = MLPClassifier(max_iter=2, **{name: 10**400})
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        est.fit(X, y)
    assert not hasattr(est, "network_")


def test_a_fit_refused_by_the_networks_own_checks_leaves_the_estimator_as_it_was():
    """Values beyond float32, or a BatchNorm step of one row, are refused inside the network's fit,
    after the estimator prepared its run: the fitted model (or an unfitted estimator) stays."""
    from sklearn.exceptions import NotFittedError

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(201, 4)), (rng.normal(size=201) > 0).astype(int)
    fitted = MLPClassifier(max_iter=20, random_state=0).fit(X, y)
    before = (fitted.n_iter_, list(fitted.loss_curve_), fitted.predict_proba(X[:5]))
    with pytest.raises(ValueError, match="X must be finite"):
        fitted.fit(X * 1e200, y)
    assert fitted.n_iter_ == before[0] and fitted.loss_curve_ == before[1]
    np.testing.assert_array_equal(fitted.predict_proba(X[:5]), before[2])
    fresh = MLPClassifier(batch_norm=True, random_state=0)
    with pytest.raises(ValueError, match="BatchNorm in training mode needs at least 2 rows per step"):
        fresh.fit(X, y)  # batches of 200 over 201 rows: a last step of one row
    assert not [k for k in vars(fresh) if k.endswith("_")]
    with pytest.raises(NotFittedError):
        fresh.predict(X[:2])
    reg = MLPRegressor(solver="lbfgs", max_iter=20, random_state=0).fit(X, X[:, 0])
    kept = reg.predict(X[:3])
    with pytest.raises(ValueError, match="Y must be finite"):
        reg.fit(X, X[:, 0] * 1e300)
    np.testing.assert_array_equal(reg.predict(X[:3]), kept)


def test_a_max_iter_beyond_what_a_network_counts_trains_until_tol_stops_it():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 4)), (rng.normal(size=120) > 0).astype(int)
    est = MLPClassifier(max_iter=10**30, random_state=0).fit(X, y)
    assert 0 < est.n_iter_ < 10**4
