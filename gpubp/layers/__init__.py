"""The layers a network is made of: :class:`Dense`, :class:`Dropout` and :class:`BatchNorm`.

Build a network from a list of them with :meth:`gpubp.MLP.from_layers`, or let
``gpubp.MLP(sizes, dropout=, batch_norm=)`` lay them out. Every layer follows the protocol of
:class:`Layer` (``gpubp/layers/base.py``); :data:`LAYER_TYPES` is the one table of them.
"""
from __future__ import annotations

from typing import Any, Dict, Type

from .base import Cache, Input, Layer, ParamSpec, Pass
from .batch_norm import BatchNorm
from .dense import Dense
from .dropout import Dropout
from .stack import connect, host_state, mlp_layers, restored_on_failure, set_host_state

LAYER_TYPES: Dict[str, Type[Layer]] = {cls.__name__: cls for cls in (Dense, Dropout, BatchNorm)}


def layer_from_config(config: Any) -> Layer:
    """A new layer from :meth:`Layer.get_config`'s dict (``{"type": "Dense", "units": 10, ...}``)."""
    if not isinstance(config, dict):
        raise TypeError(f"a layer config must be a dict with a 'type'; got {type(config).__name__}")
    kwargs = dict(config)
    kind = kwargs.pop("type", None)
    if kind not in LAYER_TYPES:
        raise ValueError(f"unknown layer type {kind!r}: expected one of {', '.join(LAYER_TYPES)}")
    return LAYER_TYPES[kind](**kwargs)


__all__ = ["BatchNorm", "Cache", "Dense", "Dropout", "Input", "LAYER_TYPES", "Layer", "ParamSpec", "Pass",
           "connect", "host_state", "layer_from_config",
           "mlp_layers", "restored_on_failure", "set_host_state"]
