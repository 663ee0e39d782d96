"""The table of ``MLP.summary()``: one row per layer (name and type, output shape, activation,
parameters) and the totals, as Keras prints a model's summary."""
from __future__ import annotations

from typing import Any, Dict, List

from .layers import Dense, Dropout

_NAMES = {"Input": "input", "Dense": "dense", "Dropout": "dropout", "BatchNorm": "batch_norm"}


def _rows(net: Any) -> List[List[str]]:
    """name (type), output shape, activation and parameter count of every layer."""
    counts: Dict[str, int] = {}
    rows = []
    for i, layer in enumerate(net.layers):
        kind = type(layer).__name__
        counts[kind] = counts.get(kind, 0) + 1
        name = _NAMES.get(kind, kind.lower()) + (f"_{counts[kind]}" if i else "")
        notes = [kind]
        if isinstance(layer, Dense):
            notes += (["output"] if layer is net.layers[-1] else []) + ([] if layer.bias else ["no bias"])
        elif isinstance(layer, Dropout):
            notes.append(f"p={layer.p:g}")
        act = getattr(layer, "activation", None) if i else None
        count = sum(spec.size for spec in layer.param_specs()) if i else 0
        rows.append([f"{name} ({', '.join(notes)})", f"(n, {layer.units})", act.name if act is not None else "-",
                     f"{count:,}"])
    return rows


def summary_lines(net: Any) -> List[str]:
    """The lines of the table (no trailing newlines)."""
    header = ["Layer (type)", "Output shape", "Activation", "Param #"]
    rows = _rows(net)
    cols = [max(len(r[c]) for r in rows + [header]) for c in range(4)]
    fmt = "  ".join(f"{{:{'>' if c == 3 else '<'}{w}}}" for c, w in enumerate(cols))
    rule = "-" * (sum(cols) + 2 * 3)
    lines = [f"Model: {type(net).__name__} (loss {net.loss.name}, {net.dtype.name}, backend {net.backend.name})",
             "=" * len(rule), fmt.format(*header), rule]
    lines += [fmt.format(*r) for r in rows]
    lines += ["=" * len(rule), f"Total params: {net.n_params:,}", f"Trainable params: {net.n_params:,}",
              f"Non-trainable state (BatchNorm statistics): {int(net.state.size):,}"]
    return lines
