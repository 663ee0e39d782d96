"""gpubp: GPU-accelerated, vectorized backpropagation, in the tutorial's notation.

Quick use::

    import gpubp
    net = gpubp.MLP([64, 128, 10], activation="relu", loss="cross_entropy", seed=0)
    history = net.fit(X, y, epochs=20, batch_size=64, optimizer=gpubp.Adam(1e-3))

The backend (NumPy or CuPy) comes from ``GPUBP_BACKEND`` (``numpy`` | ``cupy`` | ``auto``),
read once at import, or from :func:`set_backend` / :func:`use_backend`.
"""
from __future__ import annotations

from . import distributed
from .activations import ACTIVATIONS
from .backend import Backend, get_backend, set_backend, use_backend
from .checkpoint import load_optimizer
from .errors import BackendUnavailableError, CheckpointError, GpubpError, NonFiniteError, OutOfMemoryError
from .gradcheck import gradcheck
from .losses import LOSSES
from .network import MLP, Layer, load
from .optim import SGD, Adam, Optimizer
from .train import History

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Adam",
    "Backend",
    "BackendUnavailableError",
    "CheckpointError",
    "GpubpError",
    "History",
    "LOSSES",
    "Layer",
    "MLP",
    "NonFiniteError",
    "Optimizer",
    "OutOfMemoryError",
    "SGD",
    "__version__",
    "distributed",
    "get_backend",
    "gradcheck",
    "load",
    "load_optimizer",
    "set_backend",
    "use_backend",
]
