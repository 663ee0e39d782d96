"""The network's flat buffers: where each layer's parameters and state live, and their first values.

Every parameter of every layer lives in one contiguous buffer (``net.params``), every gradient
at the same offset of a second one (``net.grads``) and every state array (running statistics)
in a third (``net.state``); the layers get views. An optimizer then updates all parameters in
one fused operation and a distributed run reduces all gradients in one call.

Initialisation draws the weight matrices from the network's generator in float64 on the host,
layer after layer, in chunks of at most :data:`CHUNK` numbers, each cast into the buffer (of the
network's dtype, on its backend) as soon as it is drawn. The chunks continue one stream, so the
numbers are those of one float64 draw per layer cast at the end, while the memory beyond the
buffers themselves is one chunk: building a network peaks at its parameters and gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from .layers.base import Layer, ParamSpec

#: Numbers drawn per chunk of the initialisation (2 MiB of float64).
CHUNK = 1 << 18


@dataclass(frozen=True)
class Slot:
    """One array of one layer in a flat buffer."""

    layer: Layer
    spec: ParamSpec
    offset: int


def layout(layers: Sequence[Layer], state: bool = False) -> Tuple[List[Slot], int]:
    """The slots of every layer's parameters (or state arrays), in order, and the total length."""
    slots, offset = [], 0
    for layer in layers:
        for spec in layer.state_specs() if state else layer.param_specs():
            slots.append(Slot(layer, spec, offset))
            offset += spec.size
    return slots, offset


def views(buffer: Any, slots: Sequence[Slot]) -> Dict[int, Dict[str, Any]]:
    """``{id(layer): {name: view of buffer}}`` for the slots."""
    out: Dict[int, Dict[str, Any]] = {}
    for s in slots:
        out.setdefault(id(s.layer), {})[s.spec.name] = buffer[s.offset : s.offset + s.spec.size].reshape(s.spec.shape)
    return out


def _put(backend: Any, dst: Any, src: np.ndarray) -> None:
    """Copy the host array ``src`` into the backend array ``dst`` (cast to its dtype)."""
    if backend.name == "numpy":
        np.copyto(dst, src, casting="same_kind")
    else:
        dst.set(np.ascontiguousarray(src, dtype=dst.dtype))


def _draw(rng: np.random.Generator, init: str, fan_in: int, fan_out: int, rows: int) -> np.ndarray:
    """The next ``rows`` rows of a (fan_out, fan_in) weight matrix, in float64."""
    if init == "he":
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(rows, fan_in))
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(rows, fan_in))


def initialise(backend: Any, buffer: Any, slots: Sequence[Slot], rng: np.random.Generator) -> None:
    """Write every slot's first values into ``buffer``: He (normal, std sqrt(2/fan_in)) or Glorot
    (uniform, limit sqrt(6/(fan_in + fan_out))) weights drawn from ``rng`` in chunks, zeros, ones."""
    for s in slots:
        view = buffer[s.offset : s.offset + s.spec.size]
        init = s.spec.init
        if init in ("zeros", "ones"):
            view.fill(0.0 if init == "zeros" else 1.0)
            continue
        if init not in ("he", "glorot"):
            raise ValueError(f"unknown initialisation {init!r} of {s.spec.name}")
        fan_out, fan_in = s.spec.shape
        W = view.reshape(fan_out, fan_in)
        rows = max(1, CHUNK // max(1, fan_in))
        for start in range(0, fan_out, rows):
            stop = min(start + rows, fan_out)
            _put(backend, W[start:stop], _draw(rng, init, fan_in, fan_out, stop - start))


def fill(backend: Any, buffer: Any, slots: Sequence[Slot], source: Any = None) -> None:
    """``buffer`` = ``source`` (a flat array of the same length), or the slots' zeros and ones."""
    if source is not None:
        if tuple(np.shape(source)) != tuple(buffer.shape):
            raise ValueError(f"expected a flat array of {buffer.size} values; got shape {tuple(np.shape(source))}")
        if backend.name == "numpy" or not isinstance(source, np.ndarray):
            buffer[...] = backend.asarray(source)
        else:
            _put(backend, buffer, source)
        return
    for s in slots:
        buffer[s.offset : s.offset + s.spec.size].fill(1.0 if s.spec.init == "ones" else 0.0)


def allocate(backend: Any, dtype: Any, slots: Sequence[Slot], state_slots: Sequence[Slot], rng: np.random.Generator,
             flat: Any = None, state: Any = None, copy: bool = True) -> Tuple[Any, Any, Any]:
    """(parameter buffer, gradient buffer, state buffer) of a network on ``backend``.

    The parameters are ``flat`` where given (else initialised from ``rng``, layer by layer): the
    buffer is ``flat`` itself where ``copy`` is False and ``flat`` is already a C-contiguous,
    aligned, writable backend array of the dtype, and the array converting ``flat`` made where
    that is new (another dtype, or moved between host and device); otherwise a copy, so the
    network never shares memory its caller keeps. The state is ``state`` (copied) or the layers'
    first values. The gradient buffer has two trailing slots beyond the gradients for a batch's
    n C and n, so that a distributed step reduces gradients, loss and row count in one call
    (:mod:`gpubp.distributed`).
    """
    xp = backend.xp
    P = sum(s.spec.size for s in slots)
    S = sum(s.spec.size for s in state_slots)
    for name, given, length in (("parameter", flat, P), ("state", state, S)):
        if given is not None and tuple(np.shape(given)) != (length,):
            raise ValueError(f"the network has {length} {name} values; got a {name} buffer of shape "
                             f"{tuple(np.shape(given))}")
    if flat is None:
        params = xp.empty(P, dtype=dtype)
        initialise(backend, params, slots, rng)
    else:
        params = backend.asarray(flat, dtype=dtype)
        if params is flat:
            reuse = not copy
        else:  # converted: new memory, unless NumPy made a view of flat (of a subclass such as memmap)
            reuse = not (isinstance(flat, np.ndarray) and isinstance(params, np.ndarray)
                         and np.may_share_memory(params, flat))
        flags = params.flags
        reuse = reuse and flags.c_contiguous and getattr(flags, "writeable", True) and getattr(flags, "aligned", True)
        params = params if reuse else params.copy()
    net_state = xp.empty(S, dtype=dtype)
    fill(backend, net_state, state_slots, state)
    return params, xp.zeros(P + 2, dtype=dtype), net_state
