"""Naming one parameter as the tutorial writes it: ``w_12^(L)``, ``w_22^(L-1)``, ``b_1^(2)``.

w_jk^(l) is the weight from node k of layer l-1 to node j of layer l (``W[j - 1, k - 1]`` of Dense
layer l), b_j^(l) the bias of node j of layer l. Layers are numbered l = 1..L over the network's
Dense layers (layer 0 is the input), or from the output layer down as ``L``, ``L-1``, ...; nodes
from 1, as the tutorial numbers them. Two one-digit node indices may be written together
(``w_12``); from 10 on they are separated by a comma (``w_{12,3}^(2)`` or ``w_12,3^(2)``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

_INDICES = r"(?:\{(?P<braced>[^}]*)\}|\((?P<paren>[^)]*)\)|(?P<bare>[0-9][0-9,\s]*))"
_LAYER = r"\^\s*\{?\s*\(?\s*(?P<layer>L\s*(?:-\s*[0-9]+)?|[0-9]+)\s*\)?\s*\}?"
_PATTERN = re.compile(r"^\s*(?P<kind>[wb])\s*_\s*" + _INDICES + r"\s*" + _LAYER + r"\s*$")

EXAMPLES = "'w_12^(L)', 'w_22^(L-1)', 'b_1^(2)', or 'w_{12,3}^(2)' for node numbers from 10 on"


@dataclass(frozen=True)
class WeightName:
    """One parameter of a network's Dense layers, in the tutorial's 1-based numbering.

    ``kind`` is ``"w"`` (w_jk^(l)) or ``"b"`` (b_j^(l), ``k`` None); ``L`` is the network's number of
    layers; ``relative`` says the layer was named from the output (``L-1``) and is written so.
    """

    kind: str
    l: int
    j: int
    k: Optional[int]
    L: int
    relative: bool = False

    @property
    def is_bias(self) -> bool:
        return self.kind == "b"

    def layer_label(self, l: Optional[int] = None) -> str:
        """Layer l (default: this parameter's) as the tutorial writes it: ``L`` for the output layer,
        ``L-d`` when named from the output, else its number."""
        l = self.l if l is None else l
        if l == self.L:
            return "L"
        if self.relative and l > 0:
            return f"L-{self.L - l}"
        return str(l)

    def indices(self) -> str:
        """``12`` for one-digit nodes, ``12,3`` otherwise (``1`` for a bias)."""
        if self.k is None:
            return str(self.j)
        sep = "" if self.j < 10 and self.k < 10 else ","
        return f"{self.j}{sep}{self.k}"

    def __str__(self) -> str:
        return f"{self.kind}_{self.indices()}^({self.layer_label()})"

    def latex(self) -> str:
        return f"{self.kind}_{{{self.indices()}}}^{{({self.layer_label()})}}"

    def describe(self) -> str:
        """In words: which nodes it connects."""
        where = self.layer_label()
        out = " (the output layer)" if self.l == self.L else ""
        if self.is_bias:
            return f"the bias of node {self.j} of layer {where}{out}"
        below = "the input layer (layer 0)" if self.l == 1 else f"layer {self.layer_label(self.l - 1)}"
        return f"the weight from node {self.k} of {below} to node {self.j} of layer {where}{out}"


def dense_layer(net: Any, l: int) -> Any:
    """Dense layer l (1-based) of ``net``."""
    return net.dense_layers[l - 1]


def _layer_number(text: Any, L: int, what: str) -> "tuple[int, bool]":
    """(l, relative) from ``3``, ``"3"``, ``"L"`` or ``"L-2"``."""
    if isinstance(text, (bool, np.bool_)):
        raise TypeError(f"{what}: the layer must be a number 1..{L} or 'L', 'L-1', ...; got {text!r}")
    if isinstance(text, (int, np.integer)):
        return int(text), False
    if isinstance(text, str):
        s = text.replace(" ", "")
        if s.isdigit():
            return int(s), False
        m = re.fullmatch(r"L(?:-([0-9]+))?", s)
        if m:
            return L - int(m.group(1) or 0), True
    raise ValueError(f"{what}: the layer must be a number 1..{L} or 'L', 'L-1', ... (L = {L}); got {text!r}")


def _check_index(value: Any, name: str, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what}: {name} must be a node number (an int from 1); got {type(value).__name__} {value!r}")
    return int(value)


def check(net: Any, kind: str, l_spec: Any, j: Any, k: Any, what: str) -> WeightName:
    """The :class:`WeightName` of ``net``'s parameter, or a clear error naming the valid ranges."""
    L = net.L
    l, relative = _layer_number(l_spec, L, what)
    j = _check_index(j, "j", what)
    if kind == "w":
        k = _check_index(k, "k", what)
    if not 1 <= l <= L:
        raise ValueError(f"{what}: there is no layer {l_spec!r} (= {l}); the network's layers are l = 1..{L} "
                         f"(L = {L}; layer 0 is the input, which has no weights)")
    sizes = net.sizes
    ranges = f"w_jk^({l}) with j = 1..{sizes[l]}, k = 1..{sizes[l - 1]}"
    dense = dense_layer(net, l)
    if kind == "b" and dense.b is None:
        raise ValueError(f"{what}: layer {l} has no bias (built with bias=False); its parameters are {ranges}")
    ranges += f", b_j^({l}) with j = 1..{sizes[l]}" if dense.b is not None else ""
    if not 1 <= j <= sizes[l]:
        raise ValueError(f"{what}: layer {l} has the nodes j = 1..{sizes[l]} (numbered from 1); got j = {j}. "
                         f"Valid: {ranges}")
    if kind == "w" and not 1 <= k <= sizes[l - 1]:
        below = "the input layer" if l == 1 else f"layer {l - 1}"
        raise ValueError(f"{what}: w_jk^({l}) comes from node k = 1..{sizes[l - 1]} of {below} (numbered from 1); "
                         f"got k = {k}. Valid: {ranges}")
    return WeightName(kind, l, j, k if kind == "w" else None, L, relative)


def parse(net: Any, text: str) -> WeightName:
    """The parameter ``text`` names in the tutorial's notation (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"weight must be a string in the tutorial's notation ({EXAMPLES}); got "
                        f"{type(text).__name__} {text!r}")
    m = _PATTERN.match(text)
    if m is None:
        raise ValueError(f"cannot read weight {text!r}: expected w_jk^(l) or b_j^(l) as the tutorial writes them, "
                         f"e.g. {EXAMPLES}")
    kind = m.group("kind")
    idx = next(g for g in (m.group("braced"), m.group("paren"), m.group("bare")) if g is not None).replace(" ", "")
    parts = [p for p in idx.split(",")] if "," in idx else ([idx[0], idx[1:]] if kind == "w" and len(idx) == 2 else [idx])
    want = 2 if kind == "w" else 1
    if len(parts) != want or not all(p.isdigit() for p in parts):
        hint = "two node numbers j, k" if kind == "w" else "one node number j"
        raise ValueError(f"cannot read weight {text!r}: {kind}_... takes {hint} (two one-digit numbers may be written "
                         f"together, else separate them by a comma), e.g. {EXAMPLES}")
    j = int(parts[0])
    k = int(parts[1]) if kind == "w" else None
    return check(net, kind, m.group("layer"), j, k, f"weight {text!r}")


def resolve(net: Any, weight: Optional[str], layer: Any, j: Any, k: Any) -> WeightName:
    """The parameter named by ``weight`` or by the keywords ``layer``, ``j`` (and ``k``; without
    it, the bias b_j^(l))."""
    keywords = layer is not None or j is not None or k is not None
    if weight is not None and keywords:
        raise TypeError("name the parameter either as a string (weight='w_12^(L)') or by layer=, j=, k=, not both")
    if weight is not None:
        return parse(net, weight)
    if layer is None or j is None:
        raise TypeError(f"explain needs a parameter: weight= in the tutorial's notation ({EXAMPLES}), or layer= and "
                        "j= (and k= for a weight; without k, the bias b_j^(l))")
    kind = "b" if k is None else "w"
    what = f"layer={layer!r}, j={j!r}" + (f", k={k!r}" if k is not None else "")
    return check(net, kind, layer, j, k, what)
