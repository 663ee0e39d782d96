"""Exceptions gpubp raises on purpose (all exported from the top-level package)."""
from __future__ import annotations


class GpubpError(Exception):
    """Base class of gpubp's own exceptions."""


class BackendUnavailableError(GpubpError, RuntimeError):
    """A backend was asked for by name but cannot run on this machine."""


class NonFiniteError(GpubpError, FloatingPointError):
    """Training produced a non-finite loss or gradient (see ``MLP.fit``).

    ``epoch`` and ``batch`` (both counted from 1, as ``fit`` numbers them) name the mini-batch
    whose loss, gradient or update was not finite; ``fit`` has put the weights and the
    optimizer state back to where they were just before that batch's update, so training can
    go on (with a lower learning rate, say) from the last finite step.
    """

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class MissingExtraError(GpubpError, ImportError):
    """An optional package a feature needs is not installed (the message names the extra)."""


class CheckpointError(GpubpError, ValueError):
    """A checkpoint file is truncated, corrupted, foreign or of an unknown version."""


class OutOfMemoryError(GpubpError, MemoryError):
    """The backend ran out of memory (GPU memory on CuPy); the message suggests what to shrink.

    Raised by ``fit``/``evaluate``/``forward`` in place of CuPy's own out-of-memory errors;
    ``fit`` restores the last verified weights and optimizer state first. ``epoch`` and
    ``batch`` say where it happened (``None`` outside the training loop).
    """

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
