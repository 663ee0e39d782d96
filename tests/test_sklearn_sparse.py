"""gpubp.sklearn on sparse X: a TF-IDF text classifier scores as scikit-learn's own MLPClassifier,
and the same as gpubp on the dense copy of X (for each solver)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse as sp  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402

from gpubp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

TOPICS = {
    "sport": "match goal team player coach league score referee stadium season",
    "cooking": "recipe oven flour butter sauce garlic simmer bake onion pepper",
    "space": "orbit rocket planet telescope astronaut moon launch galaxy comet star",
    "finance": "market stock bond interest bank investor price profit loan dividend",
}
SHARED = "the a new big small today yesterday great report people city week"


def corpus(n=800, seed=0):
    """Short sentences of four topics: three topic words (one in six from another topic) and three
    common words each, so that a text is usually but not always told apart."""
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    words = {k: v.split() for k, v in TOPICS.items()}
    shared = SHARED.split()
    texts, labels = [], []
    for _ in range(n):
        label = names[rng.integers(len(names))]
        topic = [rng.choice(words[label if rng.random() > 1 / 6 else names[rng.integers(len(names))]])
                 for _ in range(3)]
        texts.append(" ".join(rng.permutation(topic + list(rng.choice(shared, 3)))))
        labels.append(label)
    return texts, np.array(labels)


@pytest.fixture(scope="module")
def tfidf():
    texts, labels = corpus()
    t_tr, t_te, y_tr, y_te = train_test_split(texts, labels, test_size=0.3, random_state=0, stratify=labels)
    vec = TfidfVectorizer()
    X_tr, X_te = vec.fit_transform(t_tr), vec.transform(t_te)
    assert sp.issparse(X_tr) and X_tr.nnz < 0.2 * np.prod(X_tr.shape)
    return X_tr, X_te, y_tr, y_te


def _fit(cls, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls(hidden_layer_sizes=(32,), random_state=0, max_iter=30, **kw).fit(X, y)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_tfidf_classifier_scores_as_scikit_learns_and_as_on_the_dense_copy(tfidf, solver):
    X_tr, X_te, y_tr, y_te = tfidf
    kw = {"solver": solver, **({"learning_rate_init": 0.1} if solver == "sgd" else {})}
    sparse_fit = _fit(MLPClassifier, X_tr, y_tr, dtype="float64", **kw)
    dense_fit = _fit(MLPClassifier, X_tr.toarray(), y_tr, dtype="float64", **kw)
    theirs = _fit(SkMLPClassifier, X_tr, y_tr, **kw)
    ours = sparse_fit.score(X_te, y_te)
    assert ours > 0.7  # chance is 0.25
    assert abs(ours - theirs.score(X_te, y_te)) <= 0.02
    assert ours == dense_fit.score(X_te.toarray(), y_te)
    np.testing.assert_allclose(sparse_fit.predict_proba(X_te), dense_fit.predict_proba(X_te.toarray()),
                               rtol=0, atol=1e-9 if solver == "lbfgs" else 1e-12)
    for a, b in zip(sparse_fit.coefs_, dense_fit.coefs_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 if solver == "lbfgs" else 1e-12)
    if solver != "lbfgs":
        np.testing.assert_allclose(sparse_fit.loss_curve_, dense_fit.loss_curve_, rtol=0, atol=1e-12)


def test_early_stopping_and_float32_on_sparse_x(tfidf):
    X_tr, X_te, y_tr, y_te = tfidf
    a = _fit(MLPClassifier, X_tr.tocsc(), y_tr, early_stopping=True)
    b = _fit(MLPClassifier, X_tr.toarray(), y_tr, early_stopping=True)
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.predict_proba(X_te), b.predict_proba(X_te.toarray()), rtol=1e-5, atol=1e-6)
    assert a.predict_proba(X_te.astype(np.float32)).dtype == np.float32


def test_regressor_on_sparse_x_is_the_regressor_on_its_dense_copy(tfidf):
    X_tr, _, y_tr, _ = tfidf
    target = np.asarray(X_tr.sum(axis=1)).ravel()
    a = _fit(MLPRegressor, X_tr, target, dtype="float64", solver="lbfgs")
    b = _fit(MLPRegressor, X_tr.toarray(), target, dtype="float64", solver="lbfgs")
    np.testing.assert_allclose(a.predict(X_tr), b.predict(X_tr.toarray()), rtol=0, atol=1e-9)
    assert a.score(X_tr, target) > 0.8  # R^2 after 30 iterations
