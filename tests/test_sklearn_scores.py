"""gpubp.sklearn scores like scikit-learn's own MLP: mean accuracy (R^2 for diabetes) over the
same 5 folds of scikit-learn's bundled data sets, with the same hyper-parameters, within 0.02.

CI runs 20 epochs (``max_iter=20``): far enough that the models learn (every score is well
above chance) and not so far that every run saturates, so a training that went astray would
show. The full comparison (200 epochs) and the fit times are benchmarks
(``gpubp bench --sklearn``, ``benchmarks/results/``).
"""
from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from gpubp.bench import sklearn as benchmark  # noqa: E402

MAX_ITER = 20
#: What 20 epochs reach at least, both implementations (chance: 0.1, 0.33, 0.4, 0.63, R^2 0).
FLOORS = {"digits": 0.9, "iris": 0.75, "wine": 0.8, "breast_cancer": 0.9, "diabetes": 0.3}


@pytest.mark.parametrize("dataset", benchmark.CV_DATASETS)
def test_five_fold_scores_match_scikit_learns_mlp(dataset):
    ours = benchmark.cross_validate(dataset, "gpubp", max_iter=MAX_ITER)
    theirs = benchmark.cross_validate(dataset, "sklearn", max_iter=MAX_ITER)
    assert len(ours.scores) == len(theirs.scores) == 5
    assert min(ours.mean, theirs.mean) > FLOORS[dataset]
    assert abs(ours.mean - theirs.mean) <= 0.02, (ours.scores, theirs.scores)
