"""The progress bar of ``fit``: tqdm's when tqdm is installed, otherwise a plain one-line counter.

Importing gpubp needs only NumPy; tqdm is looked up the first time a bar is shown. Either
bar shows on a terminal only (tqdm's ``disable=None``) and leaves nothing behind when the
epoch ends.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO


class PlainBar:
    """``epoch 3/10: 120/469 batches`` rewritten in place on a terminal, at most ten times a second."""

    def __init__(self, total: int, desc: str, stream: Optional[TextIO] = None, interval: float = 0.1):
        self.total, self.desc, self.n = total, desc, 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._last = -float("inf")
        self._width = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval or self.n >= self.total:
            self._last = now
            self._write(f"{self.desc}: {self.n}/{self.total} batches")

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
