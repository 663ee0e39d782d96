"""gpubp: GPU-accelerated, vectorized backpropagation, in the tutorial's notation.

Quick use::

    import gpubp
    net = gpubp.MLP([64, 128, 10], activation="relu", loss="cross_entropy", seed=0)
    # or layer by layer:
    from gpubp.layers import Dense, Dropout
    net = gpubp.MLP.from_layers(64, [Dense(128, "relu"), Dropout(0.2), Dense(10, "softmax")],
                                loss="cross_entropy", seed=0)
    history = net.fit(X, y, epochs=20, batch_size=64, optimizer=gpubp.Adam(1e-3))

The backend (NumPy or CuPy) comes from ``GPUBP_BACKEND`` (``numpy`` | ``cupy`` | ``auto``),
read once at import, or from :func:`set_backend` / :func:`use_backend`.
"""
from __future__ import annotations

from . import callbacks, distributed, layers, plot, schedules  # plot imports matplotlib only when it draws
from .activations import ACTIVATIONS
from .backend import Backend, get_backend, set_backend, use_backend
from .errors import BackendUnavailableError, CheckpointError, GpubpError, NonFiniteError, OutOfMemoryError
from .gradcheck import gradcheck
from .losses import LOSSES
from .layers import Layer
from .network import MLP
from .persistence import load, load_optimizer
from .optim import SGD, Adam, AdamW, Optimizer
from .history import History

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Adam",
    "AdamW",
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
    "callbacks",
    "distributed",
    "get_backend",
    "gradcheck",
    "layers",
    "load",
    "load_optimizer",
    "plot",
    "schedules",
    "set_backend",
    "use_backend",
]
