"""The array layer: one :class:`Ops` interface, a reference implementation written once
against ``xp``, and per-backend overrides of the hot paths only."""
from .base import Ops

__all__ = ["Ops"]
