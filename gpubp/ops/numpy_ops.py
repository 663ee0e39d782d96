"""NumPy (CPU, BLAS) implementation of the array layer."""
from __future__ import annotations

import numpy as np

from .base import Ops


class NumpyOps(Ops):
    """The reference ops on NumPy; matrix products go to NumPy's BLAS."""

    name = "numpy"

    def __init__(self) -> None:
        super().__init__(np)
