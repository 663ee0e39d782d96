"""Exceptions gpubp raises on purpose (all exported from the top-level package)."""
from __future__ import annotations


class GpubpError(Exception):
    """Base class of gpubp's own exceptions."""


class BackendUnavailableError(GpubpError, RuntimeError):
    """A backend was asked for by name but cannot run on this machine."""


class NonFiniteError(GpubpError, FloatingPointError):
    """Training produced a non-finite loss or gradient (see ``MLP.fit``)."""

    def __init__(self, message: str, epoch: int | None = None, batch: int | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch


class CheckpointError(GpubpError, ValueError):
    """A checkpoint file is truncated, corrupted, foreign or of an unknown version."""
