"""A network's layers as a whole: laid out from layer widths (the shortcuts of ``gpubp.MLP``),
checked and connected (widths, numbers, each Dropout fused into the activation pass before it),
and their host state (what checkpoints keep besides the arrays)."""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List, Sequence

from ..activations import get_activation
from .base import Input, Layer
from .batch_norm import BatchNorm
from .dense import Dense
from .dropout import Dropout


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


def connect(n_in: int, layers: Any, loss: Any, dropout_seed: int) -> List[Layer]:
    """Check ``layers`` for a network of ``n_in`` inputs and ``loss``, then connect them: each
    gets its position (``index``, from 1) and input width, the Dense layers their number ``l``,
    the output layer the loss's natural activation where it has none, each Dropout the network's
    ``dropout_seed`` and, right after a layer with an activation, a place in that layer's
    activation pass. Everything is checked before any layer changes; returns the list."""
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or not layers:
        raise TypeError(f"layers must be a non-empty list of gpubp.layers objects; got {type(layers).__name__}")
    layers = list(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer) or isinstance(layer, Input):
            raise TypeError(f"layers[{i}] must be a gpubp.layers.Dense, Dropout or BatchNorm; got {type(layer).__name__}")
        layer._check_free()
        if any(other is layer for other in layers[:i]):
            raise ValueError(f"layers[{i}] is the same object as an earlier layer; make a new one")
    last = layers[-1]
    if not isinstance(last, Dense):
        raise ValueError(f"the last layer must be a Dense layer (the output layer); got {type(last).__name__}")
    out_act = last.activation or get_activation(loss.default_output_activation)
    required = loss.requires_output_activation
    if required is not None and out_act.name != required:
        raise ValueError(
            f"loss {loss.name!r} needs output_activation={required!r} (its fused Delta = A - Y); got {out_act.name!r}"
        )
    for i, layer in enumerate(layers[:-1]):
        if layer.activation is not None and not layer.activation.elementwise:
            raise ValueError(f"the activation of layers[{i}] must be elementwise; {layer.activation.name!r} is "
                             "for the output layer only")
    last._activation = out_act
    width, l = n_in, 0
    for i, layer in enumerate(layers, start=1):
        layer.index = i
        width = layer.build(width)
        if isinstance(layer, Dense):
            l += 1
            layer.l = l
        if isinstance(layer, Dropout):
            layer.seed = dropout_seed
            prev = layers[i - 2] if i > 1 else None
            fuse = prev is not None and prev.activation is not None and isinstance(prev, (Dense, BatchNorm))
            layer.fused_into = prev if fuse else None
            if fuse:
                prev.dropout = layer
    return layers


@contextlib.contextmanager
def restored_on_failure(layers: Any) -> Iterator[None]:
    """Every layer object of ``layers`` (a user's list) exactly as it was if the block fails:
    :func:`connect` numbers the layers, fuses each Dropout into the pass before it and gives the
    output layer its activation, and a network that then cannot allocate its buffers must leave
    the objects as they came (a rejected call changes nothing)."""
    saved = [(layer, dict(layer.__dict__)) for layer in layers if hasattr(layer, "__dict__")] \
        if isinstance(layers, (list, tuple)) else []
    try:
        yield
    except BaseException:
        for layer, attributes in saved:
            layer.__dict__.clear()
            layer.__dict__.update(attributes)
        raise


def host_state(layers: Sequence[Layer], dropout_seed: int) -> Dict[str, Any]:
    """What the layers keep on the host between steps: the dropout seed and each layer's own
    (a Dropout's pass count, a BatchNorm's), JSON-able."""
    return {"dropout_seed": dropout_seed, "layers": [layer.host_state() for layer in layers]}


def set_host_state(layers: Sequence[Layer], host: Any, dropout_seed: int) -> int:
    """Restore :func:`host_state`'s ``host`` (a checkpoint's, or another rank's) into ``layers``;
    returns the dropout seed. Everything is checked before any layer changes."""
    if not isinstance(host, dict):
        raise TypeError(f"host state must be a mapping; got {type(host).__name__}")
    states = host.get("layers") or [{}] * len(layers)
    if not isinstance(states, list) or len(states) != len(layers) or not all(isinstance(s, dict) for s in states):
        raise ValueError(f"host state must list one mapping per layer ({len(layers)}); got {states!r}"[:300])
    seed = host.get("dropout_seed", dropout_seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"the dropout seed must be an integer in [0, 2^64); got {seed!r}"[:200])
    for layer, state in zip(layers, states):
        layer.check_host_state(state)
    for layer, state in zip(layers, states):
        layer.set_host_state(state)
        if isinstance(layer, Dropout):
            layer.seed = seed
    return seed
