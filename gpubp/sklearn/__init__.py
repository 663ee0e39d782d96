"""scikit-learn estimators on gpubp: ``MLPClassifier`` and ``MLPRegressor``.

A drop-in for scikit-learn's own MLP: the same parameters, names, defaults and fitted
attributes, trained by gpubp's network on NumPy (BLAS) or on a CUDA GPU (CuPy)::

    from gpubp.sklearn import MLPClassifier      # in place of sklearn.neural_network's

Needs scikit-learn (``pip install "gpubp[sklearn]"``); ``import gpubp`` alone never imports it.
"""
from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f'gpubp.sklearn needs scikit-learn, which is not installed ({exc}); install the extra: pip install "gpubp[sklearn]"'
    ) from exc

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
