"""CuPy (CUDA GPU) implementation of the array layer: cuBLAS for the matrix products."""
from __future__ import annotations

from .. import _optional
from .base import Ops


class CupyOps(Ops):
    """The reference ops on CuPy arrays; matrix products go to cuBLAS."""

    name = "cupy"

    def __init__(self) -> None:
        super().__init__(_optional.cupy)
