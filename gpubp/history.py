"""The record of a training run: :class:`History`, one list of values per metric, one entry per epoch.

``fit`` returns it. It is a dict (``history["val_loss"]``, or ``history.val_loss``) with the
epoch numbers beside it (``history.epochs``), the best entry of a metric (:meth:`History.best`)
and its learning curves (:meth:`History.plot`, matplotlib). The rule that decides which value
of a metric is better is here too (:func:`monitor_mode`, :func:`improves`), shared by
:meth:`History.best` and the callbacks that watch a metric (early stopping, checkpoints,
learning-rate reduction).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence

#: The entries every History has, in this order (more appear when a callback adds logs).
KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")


def monitor_mode(monitor: str, mode: str = "auto") -> str:
    """``"min"`` or ``"max"``: whether smaller or larger values of ``monitor`` are better.

    ``mode="auto"`` is Keras's rule: ``max`` for accuracies (a name containing ``acc``), ``min``
    for everything else (losses).
    """
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor must be the name of a logged metric such as 'val_loss'; got {monitor!r}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


def improves(value: Optional[float], best: Optional[float], mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` is better than ``best`` by more than ``min_delta`` (Keras's comparison:
    ``value + min_delta < best`` for ``min``, ``value - min_delta > best`` for ``max``).

    A missing or NaN value never improves; anything improves on ``best = None`` (no value yet).
    """
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value + min_delta < best if mode == "min" else value - min_delta > best


class Best(NamedTuple):
    """The best epoch of a metric: its number (as ``fit`` counts, from 1) and its value."""

    epoch: int
    value: float


class History(dict):
    """Per-epoch metrics: ``history["loss"]``, ``["accuracy"]``, ``["val_loss"]``, ``["val_accuracy"]``
    and ``["lr"]`` (the learning rate each epoch ran with), one entry per epoch; ``history.epochs``
    holds the epochs' numbers.

    Accuracy entries are ``None`` when the targets are not classes (regression), validation
    entries ``None`` without validation data. Entries are also attributes (``history.loss``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The number of each recorded epoch (from ``initial_epoch + 1``), as ``fit`` counts them.
        self.epochs: List[int] = []

    @classmethod
    def empty(cls) -> "History":
        """A History with every entry of :data:`KEYS` and no epochs."""
        return cls({key: [] for key in KEYS})

    def __getattr__(self, name: str) -> List[Optional[float]]:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def append(self, epoch: int, logs: Mapping[str, Any]) -> None:
        """Record epoch ``epoch``'s ``logs``: each entry gets its value (``None`` where the logs have
        none); a name first seen now gets ``None`` for the epochs before."""
        for key in logs:
            if key not in self:
                self[key] = [None] * len(self.epochs)
        for key, values in self.items():
            values.append(logs.get(key))
        self.epochs.append(int(epoch))

    def best(self, monitor: str = "val_loss", mode: str = "auto") -> Best:
        """The epoch with the best value of ``monitor`` and that value (the first such epoch on a
        tie); ``mode`` as :func:`monitor_mode` (``auto``: highest accuracy, lowest loss).

        Raises a KeyError naming the recorded metrics when ``monitor`` is not one of them, and
        a ValueError when it has no value (no epoch recorded, or every value None or NaN).
        """
        direction = monitor_mode(monitor, mode)
        if monitor not in self:
            raise KeyError(f"monitor {monitor!r} is not in this history; it has {', '.join(sorted(self))}")
        best: Optional[Best] = None
        for epoch, value in zip(self.epochs, self[monitor]):
            if improves(None if value is None else float(value), None if best is None else best.value, direction):
                best = Best(epoch, float(value))
        if best is None:
            raise ValueError(f"history has no value of {monitor!r} (epochs recorded: {len(self.epochs)}); "
                             f"{monitor!r} needs {'validation data' if monitor.startswith('val_') else 'an epoch'}")
        return best

    def plot(self, metrics: Optional[Sequence[str]] = None, ax: Any = None, path: Any = None) -> Any:
        """Learning curves of ``metrics`` (default: every metric with values, losses, accuracies and
        a changing learning rate on separate axes), on ``ax`` if given, saved to ``path`` if given;
        see :func:`gpubp.plot.history`. Needs matplotlib (``gpubp[plot]``); returns the Figure."""
        from .plot import history as plot_history

        return plot_history(self, metrics=metrics, ax=ax, path=path)

    def metrics(self) -> List[str]:
        """The entries that hold at least one value."""
        return [key for key, values in self.items() if _has_values(values)]

    def __reduce__(self) -> Any:  # copies and pickles keep the epoch numbers
        return (_rebuild, (dict(self), list(self.epochs)))


def _has_values(values: Iterable[Any]) -> bool:
    return any(v is not None for v in values)


def _rebuild(entries: Dict[str, List[Any]], epochs: List[int]) -> History:
    h = History(entries)
    h.epochs = epochs
    return h
