"""The layers a network is made of: :class:`Dense`, :class:`Dropout` and :class:`BatchNorm`.

Build a network from a list of them with :meth:`gpubp.MLP.from_layers`, or let
``gpubp.MLP(sizes, dropout=, batch_norm=)`` lay them out. Every layer follows the protocol of
:class:`Layer` (``gpubp/layers/base.py``); :data:`LAYER_TYPES` is the one table of them.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Type

from .base import Cache, Input, Layer, ParamSpec, Pass
from .batch_norm import BatchNorm
from .dense import Dense
from .dropout import Dropout

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


def mlp_layers(sizes: Sequence[int], hidden: Sequence[Any], output: Any, bias: bool, dropout: float,
               batch_norm: bool) -> List[Layer]:
    """The layers of ``gpubp.MLP(sizes, ...)``: a Dense layer per width, each hidden one followed by
    a BatchNorm after its linear part (carrying the activation) when ``batch_norm``, and by a
    Dropout after its activation when ``dropout`` > 0."""
    layers: List[Layer] = []
    for l, act in enumerate(hidden, start=1):
        if not act.elementwise:
            raise ValueError(f"activation of hidden layer {l} must be elementwise; {act.name!r} is for the output layer only")
        if batch_norm:
            layers += [Dense(sizes[l], None, bias=bias, init=act.init), BatchNorm(activation=act)]
        else:
            layers.append(Dense(sizes[l], act, bias=bias))
        if dropout > 0.0:
            layers.append(Dropout(dropout))
    layers.append(Dense(sizes[-1], output, bias=bias))
    return layers


__all__ = ["BatchNorm", "Cache", "Dense", "Dropout", "Input", "LAYER_TYPES", "Layer", "ParamSpec", "Pass",
           "layer_from_config", "mlp_layers"]
