"""scikit-learn's own estimator test suite on gpubp.sklearn's estimators (``parametrize_with_checks``).

Every check passes; none is expected to fail. The defaults run as a user gets them (Adam,
float32); the other solvers run as scikit-learn runs its own MLPs in these checks
(``max_iter=100``), in float64: in float32 a row predicted alone and the same row predicted
within a batch go through differently blocked products and may differ in the last bits, more
than ``check_methods_subset_invariance`` allows (1e-7), which the L-BFGS regressor's larger
weights show on that check's data.
"""
from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gpubp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

ESTIMATORS = [
    MLPClassifier(),
    MLPRegressor(),
    MLPClassifier(solver="sgd", dtype="float64", max_iter=100),
    MLPRegressor(solver="lbfgs", dtype="float64", max_iter=100),
]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
