"""gpubp.sklearn's MLPClassifier against scikit-learn's, same hyper-parameters and data: one
``fit`` timed on the digits, the MNIST test set (8,000 rows to train) and make_classification
(100,000 x 100), one group per data set, the test accuracy and epochs in extra_info.

Quick mode (plain ``pytest``) fits the digits once per implementation, for 10 epochs; the
other two, and every fit at scikit-learn's full 200 epochs, run in the timed run only
(``pytest benchmarks --benchmark-enable``). ``gpubp bench --sklearn`` runs the same comparison
(each implementation in a fresh process), plus the 5-fold cross-validated scores, and prints
them side by side.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import pytest
from conftest import timed

pytest.importorskip("sklearn")

from gpubp.bench import sklearn as comparison  # noqa: E402

QUICK_MAX_ITER = 10
_DATA: Dict[str, Tuple[Any, ...]] = {}


def _data(dataset: str, request: Any) -> Tuple[Any, ...]:
    if dataset not in _DATA:
        folder = request.getfixturevalue("mnist_dir") if dataset == "mnist" else None
        _DATA[dataset] = comparison.fit_data(dataset, None if folder is None else str(folder))
    return _DATA[dataset]


@pytest.mark.parametrize("implementation", comparison.IMPLEMENTATIONS)
@pytest.mark.parametrize("dataset", [d if d == "digits" else pytest.param(d, marks=pytest.mark.full_run_only)
                                     for d in comparison.FIT_DATASETS])
def test_fit(benchmark, request, dataset, implementation):
    data = _data(dataset, request)
    benchmark.group = f"scikit-learn MLPClassifier fit: {dataset}"
    fits = []
    rounds = 3 if dataset == "digits" and timed() else 1
    params = {} if timed() else {"max_iter": QUICK_MAX_ITER}
    benchmark.pedantic(lambda: fits.append(comparison.time_fit(dataset, implementation, data=data, **params)),
                       rounds=rounds, iterations=1)
    X = data[0]
    params = comparison.ESTIMATORS[implementation, "classifier"]().get_params()
    dtype = str(params.get("dtype", X.dtype))  # gpubp's own dtype parameter, else the data's
    benchmark.extra_info.update(implementation=implementation, accuracy=fits[-1].score, epochs=fits[-1].n_iter,
                                rows=fits[-1].n_train,  # and the fields `gpubp bench --from-json` reads:
                                group=benchmark.group, backend=implementation, dtype=dtype,
                                shape=f"({X.shape[0]}, {X.shape[1]})")
    assert fits[-1].score > 0.8  # both learn every data set (chance is 0.1)
