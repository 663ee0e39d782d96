"""The comparison with scikit-learn's MLP (gpubp.bench.sklearn, ``gpubp bench --sklearn``) and
gpubp.sklearn on real MNIST handwriting."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from gpubp import cli  # noqa: E402
from gpubp.bench import sklearn as comparison  # noqa: E402


def test_mnist_test_set_splits_8000_to_train_and_both_estimators_learn_it_alike(mnist_dir):
    X, y, X_test, y_test = comparison.fit_data("mnist", str(mnist_dir))
    assert X.shape == (8000, 784) and X_test.shape == (2000, 784) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0 and set(np.unique(y)) == set(range(10))
    ours = comparison.time_fit("mnist", "gpubp", data=(X, y, X_test, y_test), max_iter=4)
    theirs = comparison.time_fit("mnist", "sklearn", data=(X, y, X_test, y_test), max_iter=4)
    assert ours.n_iter == theirs.n_iter == 4 and ours.n_train == 8000
    assert ours.score > 0.9 and abs(ours.score - theirs.score) <= 0.02


def test_fit_data_of_the_timed_benchmarks():
    X, y, X_test, y_test = comparison.fit_data("digits")
    assert X.shape == (1437, 64) and X_test.shape == (360, 64) and X.max() <= 1.0
    with pytest.raises(ValueError, match="mnist_dir"):
        comparison.fit_data("mnist")
    with pytest.raises(ValueError, match="dataset must be one of"):
        comparison.fit_data("imagenet")


def test_reports_put_the_implementations_side_by_side():
    fits = [comparison.FitResult("digits", "gpubp", [0.5, 0.25], 0.95, 30, 1437),
            comparison.FitResult("digits", "sklearn", [1.0], 0.96, 31, 1437)]
    table = comparison.format_fits(fits)
    assert "| digits | 1437 | 0.25 s | 1.00 s | 4.0x | 0.9500 | 0.9600 | 30 / 31 |" in table
    cv = [comparison.CVResult("iris", "gpubp", "accuracy", [0.9, 1.0], 0.5),
          comparison.CVResult("iris", "sklearn", "accuracy", [0.9, 0.9], 1.5)]
    assert "| iris | accuracy | 0.9500 | 0.9000 | +0.0500 | 0.50 s | 1.50 s | 3.0x |" in comparison.format_cv(cv)


def test_gpubp_bench_sklearn_runs_each_side_in_its_own_process(tmp_path, capsys):
    out = tmp_path / "sk.json"
    assert cli.main(["bench", "--sklearn", "--datasets", "iris", "--max-iter", "3", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| iris | accuracy |" in printed and "fresh process" in printed
    saved = json.loads(out.read_text())
    assert [r["implementation"] for r in saved["cross_validation"]] == ["gpubp", "sklearn"]
    assert all(len(r["scores"]) == 5 and r["params"] == {"max_iter": 3} for r in saved["cross_validation"])
    assert saved["fits"] == [] and "cpu" in saved["machine"]


def test_gpubp_bench_sklearn_refuses_unknown_data_sets(capsys):
    assert cli.main(["bench", "--sklearn", "--datasets", "iris,imagenet"]) == 2
    assert "unknown imagenet" in capsys.readouterr().err
