"""Figures drawn with matplotlib, an optional extra (``pip install "gpubp[plot]"``).

:func:`history` draws the learning curves of a training run (``History.plot`` calls it).
Importing this module needs no matplotlib; each function imports it when called and raises a
:class:`~gpubp.errors.MissingExtraError` naming the extra where it is missing.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from .errors import MissingExtraError


def _pyplot() -> Any:
    """``matplotlib.pyplot``, or a MissingExtraError naming the ``plot`` extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtraError(f'plotting needs matplotlib, which cannot be imported here ({exc}): '
                                f'pip install "gpubp[plot]"') from None
    return plt


def _panel(metric: str) -> str:
    """Which axes a metric is drawn on: losses together, accuracies together, the learning rate
    apart (log scale), anything else on its own."""
    if metric.endswith("loss"):
        return "loss"
    if "acc" in metric:
        return "accuracy"
    return metric


def history(history: Any, metrics: Optional[Sequence[str]] = None, ax: Any = None, path: Any = None) -> Any:
    """The learning curves of ``history`` (a :class:`gpubp.History`) against the epoch number.

    Args:
        metrics: the entries to draw (default: every entry with a value; the learning rate only
            where it changed). Each must be in the history.
        ax: a matplotlib Axes to draw every metric on; by default a new Figure gets one Axes per
            kind (losses, accuracies, learning rate on a log scale, then any other entry).
        path: also save the Figure there (PNG, PDF, ... by the file's extension).

    Returns the matplotlib Figure. A history without epochs, or a metric it does not hold, is a
    ValueError; missing matplotlib is a :class:`~gpubp.errors.MissingExtraError`.
    """
    epochs = list(getattr(history, "epochs", []))
    if not isinstance(history, dict):
        raise TypeError(f"history must be a gpubp.History (what fit returns); got {type(history).__name__}")
    if metrics is None:
        names = [k for k, v in history.items() if any(x is not None for x in v)]
        lrs = [x for x in history.get("lr", []) if x is not None]
        if "lr" in names and len(set(lrs)) <= 1:
            names.remove("lr")
    else:
        if isinstance(metrics, str):
            metrics = [metrics]
        names = list(metrics)
        unknown = [m for m in names if m not in history]
        if unknown:
            raise ValueError(f"metrics {unknown} are not in the history; it has {', '.join(sorted(history))}")
    if not epochs or not names:
        raise ValueError(f"nothing to plot: the history has {len(epochs)} epochs and no values of "
                         f"{names or 'any metric'}")
    plt = _pyplot()
    panels: Dict[str, List[str]] = {}
    for name in names:
        panels.setdefault(_panel(name) if ax is None else "all", []).append(name)
    if ax is None:
        fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, 2.6 * len(panels)), squeeze=False, sharex=True)
        targets = list(axes[:, 0])
    else:
        fig, targets = ax.figure, [ax]
    for target, (panel, group) in zip(targets, panels.items()):
        for name in group:
            points = [(e, v) for e, v in zip(epochs, history[name]) if v is not None]
            target.plot([e for e, _ in points], [v for _, v in points], marker="." if len(points) < 30 else None,
                        linestyle="--" if name.startswith("val_") else "-", label=name)
        if panel == "lr":
            target.set_yscale("log")
        target.set_ylabel(panel if panel != "all" else "value")
        target.grid(True, alpha=0.3)
        target.legend(fontsize=8)
    targets[-1].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    targets[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax is None:
        fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
