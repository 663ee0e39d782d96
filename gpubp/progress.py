"""What ``fit`` prints while it trains, and how: the bars and the line per epoch that
:class:`gpubp.callbacks.ProgressLogger` (added by ``fit(..., verbose=1)``, the default) writes.

* ``verbose=1``: on a terminal, a progress bar per epoch with the running loss (tqdm's when
  tqdm is installed, otherwise a plain one-line counter, :func:`progress_bar`; on stderr, erased
  at the end of the epoch); then, in every case, also when the output is a pipe or a log file,
  one line per epoch on stdout:
  ``epoch 3/40 - loss 0.1234 - accuracy 0.9650 - val_loss 0.2041 - val_accuracy 0.9417 - lr 0.001 - 0.21 s``;
* ``verbose=2``: the line per epoch only;
* ``verbose=0``: nothing.

In distributed training only rank 0 prints. Importing gpubp needs only NumPy; tqdm is looked up
the first time a bar is shown.
"""
from __future__ import annotations

import numbers
import sys
import time
from typing import Any, Mapping, Optional, TextIO

import numpy as np


class PlainBar:
    """``epoch 3/10: 120/469 batches, loss 0.1234`` rewritten in place on a terminal, at most ten
    times a second."""

    def __init__(self, total: int, desc: str, stream: Optional[TextIO] = None, interval: float = 0.1):
        self.total, self.desc, self.n = total, desc, 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.postfix = ""
        self._last = -float("inf")
        self._width = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval or self.n >= self.total:
            self._last = now
            self._write(f"{self.desc}: {self.n}/{self.total} batches" + (f", {self.postfix}" if self.postfix else ""))

    def set_postfix_str(self, text: str) -> None:
        """Show ``text`` after the count from the next rewrite on (tqdm's method of that name)."""
        self.postfix = text

    def _write(self, text: str) -> None:
        pad = " " * max(0, self._width - len(text))
        self.stream.write(f"\r{text}{pad}")
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        if self._width:
            self._write("")
            self.stream.write("\r")
            self.stream.flush()
            self._width = 0


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A bar over ``total`` batches (``update(n)``, ``close()``), shown when ``enabled`` and
    standard error is a terminal."""
    tqdm = _tqdm()
    if tqdm is not None:
        return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=None if enabled else True)
    isatty = getattr(sys.stderr, "isatty", None)
    if enabled and callable(isatty) and isatty():
        return PlainBar(total, desc)
    return _NoBar()


# ---- verbosity and the line per epoch ---------------------------------------------------------
VERBOSITY = (0, 1, 2)


def check_verbose(verbose: Any) -> int:
    """``verbose`` as 0, 1 or 2; a TypeError or ValueError naming the choices otherwise."""
    if isinstance(verbose, (bool, np.bool_)) or not isinstance(verbose, numbers.Integral):
        raise TypeError(f"verbose must be 0 (silent), 1 (progress bar and a line per epoch) or 2 (a line per "
                        f"epoch); got {verbose!r}")
    if verbose not in VERBOSITY:
        raise ValueError(f"verbose must be 0 (silent), 1 (progress bar and a line per epoch) or 2 (a line per "
                         f"epoch); got {verbose!r}")
    return int(verbose)


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (where a bar can be redrawn in place)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def number(value: Any) -> str:
    """A logged value, four significant places (scientific notation for tiny and huge ones)."""
    return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"


def format_epoch(epoch: int, epochs: int, logs: Mapping[str, Any], seconds: Optional[float] = None) -> str:
    """The line of one epoch: its number, every logged value (those that are None left out), the time."""
    width = len(str(epochs))
    parts = [f"epoch {epoch:{width}d}/{epochs}"]
    for key, value in logs.items():
        if value is None:
            continue
        parts.append(f"{key} {value:.3g}" if key == "lr" else f"{key} {number(float(value))}")
    if seconds is not None:
        parts.append(f"{seconds:.2f} s")
    return " - ".join(parts)
