"""gpubp.sklearn against scikit-learn's own MLP, with the same hyper-parameters and data.

Needs scikit-learn (the ``sklearn`` extra; importing :mod:`gpubp.bench` does not import this
module). Shared by ``gpubp bench --sklearn``, ``benchmarks/bench_sklearn.py`` and the tests:

* :func:`cross_validate` scores one implementation by 5-fold cross-validation on one of
  scikit-learn's bundled data sets (``digits``, ``iris``, ``wine``, ``breast_cancer``:
  accuracy; ``diabetes``: R^2), the folds and every hyper-parameter the same for both;
* :func:`time_fit` times one ``fit`` and scores the held-out rows on the ``digits`` (80/20
  split), the MNIST test set (``mnist``: 8,000 rows to train, the other 2,000 to score; IDX
  files read by :func:`gpubp.data.load_mnist`) and ``make_classification`` with 100,000 rows
  of 100 features (``classification_100k``, 20,000 more to score).

Both implementations run scikit-learn's defaults (100 hidden ReLU nodes, Adam at 1e-3,
batches of 200, at most 200 epochs with its tol / n_iter_no_change stopping) with
``random_state=0``; gpubp in its default float32 on the active backend, scikit-learn in the
data's dtype on NumPy (float64, but float32 for MNIST, which loads as float32). Features are
standardised (digits: divided by 16; MNIST: pixels in [0, 1]), the diabetes target too.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from sklearn import datasets, neural_network
from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..sklearn import MLPClassifier, MLPRegressor

IMPLEMENTATIONS = ("gpubp", "sklearn")
CV_DATASETS = ("digits", "iris", "wine", "breast_cancer", "diabetes")
FIT_DATASETS = ("digits", "mnist", "classification_100k")
REGRESSION = ("diabetes",)
ESTIMATORS = {
    ("gpubp", "classifier"): MLPClassifier,
    ("gpubp", "regressor"): MLPRegressor,
    ("sklearn", "classifier"): neural_network.MLPClassifier,
    ("sklearn", "regressor"): neural_network.MLPRegressor,
}


def _check(name: str, allowed: Sequence[str], what: str) -> None:
    if name not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {name!r}")


def estimator(implementation: str, dataset: str, **params: Any) -> Any:
    """The model for ``dataset``: the MLP of ``implementation`` with ``params`` (and
    ``random_state=0``), after a StandardScaler unless the data are the digits (divided by 16
    when loaded); the diabetes regressor standardises its target as well."""
    _check(implementation, IMPLEMENTATIONS, "implementation")
    kind = "regressor" if dataset in REGRESSION else "classifier"
    mlp = ESTIMATORS[implementation, kind](**{"random_state": 0, **params})
    if dataset == "digits":
        return mlp
    model = make_pipeline(StandardScaler(), mlp)
    if kind == "regressor":
        return TransformedTargetRegressor(regressor=model, transformer=StandardScaler())
    return model


def cv_data(dataset: str) -> Tuple[np.ndarray, np.ndarray, Any]:
    """X, y and the 5 folds (stratified for classes, shuffled with seed 0) of a bundled data set."""
    _check(dataset, CV_DATASETS, "dataset")
    X, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    if dataset == "digits":
        X = X / 16.0
    folds = (KFold if dataset in REGRESSION else StratifiedKFold)(5, shuffle=True, random_state=0)
    return X, y, folds


@dataclass
class CVResult:
    """Five-fold cross-validation of one implementation on one data set."""

    dataset: str
    implementation: str
    metric: str
    scores: List[float]
    seconds: float  # all five fits and scorings
    params: Dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))


def cross_validate(dataset: str, implementation: str, **params: Any) -> CVResult:
    """Mean accuracy (R^2 for diabetes) over 5-fold cross-validation (module docstring)."""
    X, y, folds = cv_data(dataset)
    model = estimator(implementation, dataset, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, X, y, cv=folds)
    return CVResult(dataset, implementation, "R^2" if dataset in REGRESSION else "accuracy",
                    [float(s) for s in scores], time.perf_counter() - start, params)


def fit_data(dataset: str, mnist_dir: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) of a timed fit (module docstring), features scaled."""
    _check(dataset, FIT_DATASETS, "dataset")
    if dataset == "digits":
        X, y, _ = cv_data("digits")
        order = np.random.default_rng(0).permutation(len(X))
        cut = int(0.8 * len(X))
        train, test = order[:cut], order[cut:]
        return X[train], y[train], X[test], y[test]
    if dataset == "mnist":
        from ..data import load_mnist

        if mnist_dir is None:
            raise ValueError("the mnist benchmark needs the folder of the MNIST t10k IDX files (mnist_dir)")
        X, y = load_mnist(mnist_dir, "t10k")  # float32 pixels in [0, 1]: both fit in float32
        return X[:8000], y[:8000], X[8000:], y[8000:]
    X, y = datasets.make_classification(n_samples=120_000, n_features=100, n_informative=40, n_classes=10,
                                        random_state=0)
    scaler = StandardScaler().fit(X[:100_000])
    X = scaler.transform(X)
    return X[:100_000], y[:100_000], X[100_000:], y[100_000:]


@dataclass
class FitResult:
    """The timed fits of one implementation on one data set."""

    dataset: str
    implementation: str
    seconds: List[float]  # every repeat
    score: float  # accuracy on the held-out rows (of the last fit)
    n_iter: int
    n_train: int
    params: Dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.seconds)


def time_fit(dataset: str, implementation: str, repeats: int = 1, mnist_dir: Optional[str] = None,
             data: Optional[Tuple[np.ndarray, ...]] = None, **params: Any) -> FitResult:
    """Wall-clock seconds of ``fit`` (``repeats`` times, each from scratch) and the test accuracy."""
    X, y, X_test, y_test = data if data is not None else fit_data(dataset, mnist_dir)
    seconds = []
    for _ in range(repeats):
        model = ESTIMATORS[implementation, "classifier"](**{"random_state": 0, **params})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            model.fit(X, y)
            seconds.append(time.perf_counter() - start)
    return FitResult(dataset, implementation, seconds, float(model.score(X_test, y_test)), int(model.n_iter_), len(X),
                     params)


# ---- reports ----------------------------------------------------------------------------
def _pairs(results: Sequence[Any]) -> List[Tuple[str, Any, Any]]:
    """(data set, gpubp's result, scikit-learn's) of every data set both have, in order."""
    by = {(r.dataset, r.implementation): r for r in results}
    pairs = [(d, by.get((d, "gpubp")), by.get((d, "sklearn"))) for d in dict.fromkeys(r.dataset for r in results)]
    return [(d, g, s) for d, g, s in pairs if g is not None and s is not None]


def format_cv(results: Sequence[CVResult]) -> str:
    """One row per data set: both means, their difference and the time of the five fits."""
    lines = ["| data set | metric | gpubp | scikit-learn | difference | gpubp 5 fits | scikit-learn 5 fits | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for dataset, g, s in _pairs(results):
        lines.append(f"| {dataset} | {g.metric} | {g.mean:.4f} | {s.mean:.4f} | {g.mean - s.mean:+.4f} | "
                     f"{g.seconds:.2f} s | {s.seconds:.2f} s | {s.seconds / g.seconds:.1f}x |")
    return "\n".join(lines)


def format_fits(results: Sequence[FitResult]) -> str:
    """One row per data set: the best fit time of each implementation, the speed-up and the scores."""
    lines = ["| data set | rows | gpubp fit | scikit-learn fit | speed-up | gpubp accuracy | scikit-learn accuracy "
             "| epochs (gpubp / scikit-learn) |", "|---|---|---|---|---|---|---|---|"]
    for dataset, g, s in _pairs(results):
        lines.append(f"| {dataset} | {g.n_train} | {g.best:.2f} s | {s.best:.2f} s | {s.best / g.best:.1f}x | "
                     f"{g.score:.4f} | {s.score:.4f} | {g.n_iter} / {s.n_iter} |")
    return "\n".join(lines)


def write_json(path: str, cv: Sequence[CVResult], fits: Sequence[FitResult], info: Dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump({"machine": info, "cross_validation": [dict(asdict(r), mean=r.mean) for r in cv],
                   "fits": [dict(asdict(r), best=r.best) for r in fits]}, f, indent=1)


def _child(spec: Dict[str, Any]) -> Dict[str, Any]:
    """What a fresh process runs for :func:`isolated`: one measurement, as a JSON-able dict."""
    limit = None
    if spec.get("threads") is not None:
        import threadpoolctl

        limit = threadpoolctl.threadpool_limits(limits=int(spec["threads"]))
    try:
        fn = {"cross_validate": cross_validate, "time_fit": time_fit}[spec["what"]]
        return asdict(fn(*spec["args"], **spec["kwargs"]))
    finally:
        del limit


def isolated(what: str, *args: Any, threads: Optional[int] = None, **kwargs: Any) -> Any:
    """:func:`cross_validate` or :func:`time_fit` (``what``) in a fresh Python process, so that
    neither implementation's BLAS threads are still awake from the other's work while it is
    timed (MKL's OpenMP threads spin for up to 200 ms after each call); ``threads`` limits every
    thread pool there (threadpoolctl)."""
    spec = {"what": what, "args": list(args), "kwargs": kwargs, "threads": threads}
    code = ("import json, sys\nfrom gpubp.bench import sklearn\n"
            "print(json.dumps(sklearn._child(json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what}{tuple(args)} failed in its own process:\n{proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return (CVResult if what == "cross_validate" else FitResult)(**result)


def run(cv_datasets: Sequence[str] = CV_DATASETS, fit_datasets: Sequence[str] = FIT_DATASETS,
        mnist_dir: Optional[str] = None, repeats: int = 1, max_iter: int = 200, threads: Optional[int] = None,
        log: Optional[Callable[[str], None]] = None) -> Tuple[List[CVResult], List[FitResult]]:
    """Every comparison asked for, both implementations each, each in its own fresh process
    (:func:`isolated`; ``gpubp bench --sklearn``)."""
    say = log or (lambda line: None)
    cv, fits = [], []
    for dataset in cv_datasets:
        for impl in IMPLEMENTATIONS:
            cv.append(isolated("cross_validate", dataset, impl, threads=threads, max_iter=max_iter))
            say(f"5-fold {dataset:<14} {impl:<8} {cv[-1].metric} {cv[-1].mean:.4f}  ({cv[-1].seconds:.2f} s)")
    for dataset in fit_datasets:
        for impl in IMPLEMENTATIONS:
            fits.append(isolated("time_fit", dataset, impl, repeats, mnist_dir, threads=threads, max_iter=max_iter))
            say(f"fit     {dataset:<20} {impl:<8} {fits[-1].best:8.2f} s  accuracy {fits[-1].score:.4f}  "
                f"epochs {fits[-1].n_iter}")
    return cv, fits
