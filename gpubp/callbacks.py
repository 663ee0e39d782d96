"""Callbacks: code ``fit`` runs at fixed points of training (Keras's protocol).

A callback is any object with some of these methods (a :class:`Callback` subclass or not)::

    on_train_begin()                 before the first epoch (after every argument is checked)
    on_epoch_begin(epoch)            epochs count from 1, as ``fit`` numbers them
    on_batch_end(batch, logs)        batches count from 0 within the epoch; logs["loss"] is the
                                     mean loss of the epoch so far (read on the GPU only when asked)
    on_epoch_end(epoch, logs)        logs: loss, accuracy, val_loss, val_accuracy, lr of the epoch
    on_train_end(logs)               after the last epoch, with the last epoch's logs

A callback stops training by setting ``net.stop_training = True``: the current epoch finishes
(its logs are recorded and every ``on_epoch_end`` runs), then ``fit`` returns the History so
far. Before training, ``fit`` hands each callback that has them ``set_model(net)`` and
``set_params(params)``: ``params`` holds ``epochs``, ``initial_epoch``, ``steps`` (batches per
epoch), ``batch_size``, ``samples``, ``optimizer``, ``verbose``, ``metrics`` (the logs that will
have values), ``comm`` and ``rank``.

Here: :class:`EarlyStopping`, :class:`ModelCheckpoint`, :class:`LearningRateScheduler`,
:class:`LambdaCallback` and :class:`ProgressLogger` (what ``fit`` prints); the schedules of
:mod:`gpubp.schedules` are callbacks too.

In distributed training every rank runs every callback with the same logs (they are over all
ranks' rows); a stop asked for on any rank stops every rank after the epoch, and only rank 0
writes files (:class:`ModelCheckpoint`) and prints.
"""
from __future__ import annotations

import math
import numbers
import os
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, TextIO

from . import validation
from .guard import Snapshot
from .history import KEYS, improves, monitor_mode
from .progress import check_verbose, format_epoch, is_terminal, number, progress_bar

HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end")


class Callback:
    """Base class of gpubp's callbacks: override the hooks you need (the base ones do nothing).

    ``net`` is the network being trained and ``params`` what ``fit`` was asked (module
    docstring); both are set before ``on_train_begin``.
    """

    net: Any = None
    params: Dict[str, Any] = {}

    def set_model(self, net: Any) -> None:
        self.net = net

    def set_params(self, params: Dict[str, Any]) -> None:
        self.params = params

    @property
    def optimizer(self) -> Any:
        """The optimizer of the ``fit`` call."""
        return self.params.get("optimizer")

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints: rank 0 of a distributed run, or alone."""
        return int(self.params.get("rank", 0)) == 0

    def on_train_begin(self) -> None:
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Before epoch ``epoch`` (from 1)."""

    def on_batch_end(self, batch: int, logs: Mapping[str, Any]) -> None:
        """After batch ``batch`` (from 0) of the epoch."""

    def on_epoch_end(self, epoch: int, logs: Dict[str, Any]) -> None:
        """After epoch ``epoch``, its logs complete."""

    def on_train_end(self, logs: Dict[str, Any]) -> None:
        """After the last epoch."""

    def monitored(self, monitor: str, epoch: int, logs: Mapping[str, Any]) -> float:
        """The value of ``monitor`` in epoch ``epoch``'s logs; a ValueError naming what the logs
        hold when it is not there (a misspelt metric, or a custom one that no callback listed
        before this one added), rather than training on with a callback that can never act."""
        if monitor not in logs:
            raise ValueError(f"{type(self).__name__} monitors {monitor!r}, which epoch {epoch}'s logs do not hold; "
                             f"they hold {', '.join(sorted(logs))} (a metric of your own must be put in the logs by "
                             f"a callback listed before this one)")
        value = logs[monitor]
        return math.nan if value is None else float(value)

    def check_monitor(self, monitor: str) -> None:
        """Refuse, before training, a monitored standard metric the run will not log (``val_*``
        without validation data, ``accuracy`` of a regression)."""
        metrics = self.params.get("metrics")
        if metrics is not None and monitor in KEYS and monitor not in metrics:
            hint = " (pass validation_data or validation_split)" if monitor.startswith("val_") else ""
            raise ValueError(f"{type(self).__name__} monitors {monitor!r}, which this run does not log{hint}; "
                             f"it logs {', '.join(metrics)}")


def _hook(cb: Any, name: str) -> Optional[Callable[..., Any]]:
    """``cb``'s hook ``name``, or None where it has none (or keeps :class:`Callback`'s empty one)."""
    fn = getattr(cb, name, None)
    if fn is None or not callable(fn):
        return None
    if getattr(fn, "__func__", None) is getattr(Callback, name):  # the base class's empty hook
        return None
    return fn


def check_callbacks(callbacks: Any) -> List[Any]:
    """The callbacks as a list; a TypeError naming the first that has no hook."""
    if callbacks is None:
        return []
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks must be a list of callback objects; got {type(callbacks).__name__}")
    out = list(callbacks)
    for i, cb in enumerate(out):
        if isinstance(cb, type):
            raise TypeError(f"callbacks[{i}] is the class {cb.__name__}, not a callback object: pass an instance, "
                            f"e.g. {cb.__name__}(...)")
        if not any(_hook(cb, name) for name in HOOKS) and not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}] ({type(cb).__name__}) has none of the callback methods "
                            f"{', '.join(HOOKS)}")
    return out


class CallbackList:
    """The callbacks of one ``fit`` call, each hook called in the order given.

    Only the callbacks that define a hook are called for it, so a run without ``on_batch_end``
    hooks pays nothing per batch.
    """

    def __init__(self, callbacks: List[Any], net: Any, params: Dict[str, Any]):
        self.callbacks = callbacks
        for cb in callbacks:
            if callable(getattr(cb, "set_model", None)):
                cb.set_model(net)
            if callable(getattr(cb, "set_params", None)):
                cb.set_params(params)
        self._hooks: Dict[str, List[Callable[..., Any]]] = {
            name: [fn for fn in (_hook(cb, name) for cb in callbacks) if fn is not None] for name in HOOKS}

    @property
    def batch_hooks(self) -> bool:
        """Whether any callback has ``on_batch_end``."""
        return bool(self._hooks["on_batch_end"])

    def on_train_begin(self) -> None:
        for fn in self._hooks["on_train_begin"]:
            fn()

    def on_epoch_begin(self, epoch: int) -> None:
        for fn in self._hooks["on_epoch_begin"]:
            fn(epoch)

    def on_batch_end(self, batch: int, logs: Mapping[str, Any]) -> None:
        for fn in self._hooks["on_batch_end"]:
            fn(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Dict[str, Any]) -> None:
        for fn in self._hooks["on_epoch_end"]:
            fn(epoch, logs)

    def on_train_end(self, logs: Dict[str, Any]) -> None:
        for fn in self._hooks["on_train_end"]:
            fn(logs)

    def close(self) -> None:
        """Release what callbacks hold open (a progress bar), however training ended."""
        for cb in self.callbacks:
            close = getattr(cb, "close", None)
            if callable(close):
                close()


class LambdaCallback(Callback):
    """A callback from plain functions, each optional: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``.

    ``fit(..., callback=f)`` is ``LambdaCallback(on_epoch_end=f)``.
    """

    def __init__(self, on_train_begin: Optional[Callable[[], Any]] = None,
                 on_epoch_begin: Optional[Callable[[int], Any]] = None,
                 on_batch_end: Optional[Callable[[int, Mapping[str, Any]], Any]] = None,
                 on_epoch_end: Optional[Callable[[int, Dict[str, Any]], Any]] = None,
                 on_train_end: Optional[Callable[[Dict[str, Any]], Any]] = None):
        given = {"on_train_begin": on_train_begin, "on_epoch_begin": on_epoch_begin, "on_batch_end": on_batch_end,
                 "on_epoch_end": on_epoch_end, "on_train_end": on_train_end}
        for name, fn in given.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable; got {type(fn).__name__}")
            if fn is not None:
                setattr(self, name, fn)  # an instance attribute: found by the hook lookup


def _check_number(value: Any, name: str, low: float = 0.0, integer: bool = False) -> Any:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(validation.as_float(value, name)):
        raise TypeError(f"{name} must be a finite {'integer' if integer else 'number'}; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low:g}; got {value!r}")
    return int(value) if integer else float(value)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has not improved for ``patience`` epochs (Keras's rule;
    MATH.md, choosing the best epoch).

    Args:
        monitor: the logged metric watched (``val_loss`` needs validation data).
        patience: epochs without improvement after which training stops.
        min_delta: how much better than the best so far a value must be to count as an improvement.
        mode: ``min``, ``max`` or ``auto`` (accuracies up, losses down).
        restore_best_weights: at the end of training, put back the parameters and the layers' state
            (BatchNorm's running statistics) of the best epoch, whether training stopped early or
            ran all its epochs; ``net.evaluate`` then gives the best epoch's numbers exactly. The
            optimizer's state and the dropout streams go on from where training ended.

    After training, ``best_epoch``, ``best`` and ``stopped_epoch`` (0 when it ran to the end)
    say what happened.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 10, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = True):
        self.mode = monitor_mode(monitor, mode)
        self.monitor = monitor
        self.patience = _check_number(patience, "patience", 0, integer=True)
        self.min_delta = _check_number(min_delta, "min_delta")
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"restore_best_weights must be True or False; got {restore_best_weights!r}")
        self.restore_best_weights = restore_best_weights
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.wait = 0
        self._snapshot: Optional[Snapshot] = None

    def on_train_begin(self) -> None:
        self.check_monitor(self.monitor)
        self.best, self.best_epoch, self.stopped_epoch, self.wait = None, 0, 0, 0
        if self.restore_best_weights:
            snap = self._snapshot
            if snap is None or snap.net is not self.net or snap.params.shape != self.net.params.shape \
                    or type(snap.params) is not type(self.net.params):
                self._snapshot = Snapshot(self.net, host=False)

    def on_epoch_end(self, epoch: int, logs: Dict[str, Any]) -> None:
        current = self.monitored(self.monitor, epoch, logs)
        self.wait += 1
        if improves(current, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self._snapshot is not None:
                self._snapshot.take(epoch)
            return
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.net.stop_training = True

    def on_train_end(self, logs: Dict[str, Any]) -> None:
        snap = self._snapshot
        if self.restore_best_weights and snap is not None and snap.index > 0 and self.best_epoch != self.net.epoch:
            snap.put()


class ModelCheckpoint(Callback):
    """Save the network and its optimizer's state after an epoch (only rank 0 writes).

    Args:
        path: the checkpoint file; it may name the epoch and the logs, as ``"ckpt-{epoch:03d}.npz"`` or
            ``"best-{val_loss:.4f}.npz"``.
        monitor: the logged metric compared with ``save_best_only``.
        save_best_only: save only when ``monitor`` improved on the best epoch so far, so that the
            file holds the best epoch's network; ``False`` saves after every epoch.
        mode: ``min``, ``max`` or ``auto``.

    Each save is atomic (a complete new file is renamed over the old one, see
    :func:`gpubp.checkpoint.save`) and holds the optimizer state and the epoch number, so
    ``gpubp.load(path)`` and ``gpubp.load_optimizer(path, net)`` resume from it.
    ``best``, ``best_epoch`` and ``saved`` (the paths written) say what happened; the best value
    carries over to the next ``fit`` with the same object (as Keras's), so a resumed run
    overwrites the file only with a better epoch.
    """

    def __init__(self, path: Any, monitor: str = "val_loss", save_best_only: bool = True, mode: str = "auto"):
        from .checkpoint import check_path

        self.path = check_path(path)
        self.mode = monitor_mode(monitor, mode)
        self.monitor = monitor
        if not isinstance(save_best_only, bool):
            raise TypeError(f"save_best_only must be True or False; got {save_best_only!r}")
        self.save_best_only = save_best_only
        self.best: Optional[float] = None
        self.best_epoch = 0
        self.saved: List[str] = []

    def on_train_begin(self) -> None:
        if self.save_best_only:
            self.check_monitor(self.monitor)
        folder = os.path.dirname(os.path.abspath(self.path))
        if self.is_main and "{" not in folder and not os.path.isdir(folder):
            raise FileNotFoundError(f"ModelCheckpoint path {self.path!r}: folder {folder!r} does not exist")

    def filename(self, epoch: int, logs: Mapping[str, Any]) -> str:
        """The path of epoch ``epoch``'s file (``path`` with the epoch and the logs filled in)."""
        try:
            return self.path.format(epoch=epoch, **{k: v for k, v in logs.items() if k != "epoch"})
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ValueError(f"ModelCheckpoint path {self.path!r} cannot be filled from epoch and logs "
                             f"{sorted(logs)}: {exc}") from None

    def on_epoch_end(self, epoch: int, logs: Dict[str, Any]) -> None:
        if self.save_best_only:
            current = self.monitored(self.monitor, epoch, logs)
            if not improves(current, self.best, self.mode):
                return
            self.best, self.best_epoch = current, epoch
        if self.is_main:
            path = self.filename(epoch, logs)
            self.net.save(path, optimizer=self.optimizer)
            self.saved.append(path)


class LearningRateScheduler(Callback):
    """Set the learning rate before every epoch to ``schedule(epoch, lr)``: ``epoch`` counts from 1
    as ``fit`` numbers them, ``lr`` is the optimizer's current learning rate. The value is
    checked as ``opt.lr = ...`` checks it."""

    def __init__(self, schedule: Callable[[int, float], float]):
        if not callable(schedule):
            raise TypeError(f"schedule must be callable as schedule(epoch, lr); got {type(schedule).__name__}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int) -> None:
        opt = self.optimizer
        lr = self.schedule(epoch, opt.lr)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise TypeError(f"LearningRateScheduler: schedule({epoch}, {opt.lr!r}) must return a number; got {lr!r}")
        opt.lr = float(lr)


class ProgressLogger(Callback):
    """What ``fit`` prints (:mod:`gpubp.progress`), added by ``fit(verbose=1 or 2)``; only rank 0 prints.

    ``verbose=1``: where stderr is a terminal, a bar per epoch with the running loss (tqdm's, or
    a plain counter without tqdm), erased at the end of the epoch; then, in every case (a pipe, a
    log file), one line per epoch written to ``file`` (default: ``sys.stdout`` when written), as
    ``epoch 3/40 - loss 0.1234 - accuracy 0.9650 - val_loss 0.2041 - val_accuracy 0.9417 - lr 0.001 - 0.21 s``.
    ``verbose=2``: the line only.
    """

    #: Seconds between two reads of the running loss for the bar (on a GPU, each read waits for it).
    REFRESH_S = 0.1

    def __init__(self, verbose: int = 1, file: Optional[TextIO] = None):
        self.verbose = check_verbose(verbose)
        self.file = file
        self._bar: Any = None
        self._start = 0.0
        self._next_refresh = 0.0

    def set_params(self, params: Dict[str, Any]) -> None:
        super().set_params(params)
        # no per-batch call at all where no bar shows (verbose 2, another rank, stderr not a terminal)
        self.__dict__.pop("on_batch_end", None)
        if not (self.verbose == 1 and self.is_main and is_terminal(sys.stderr)):
            self.on_batch_end = None  # type: ignore[assignment]

    def _out(self) -> TextIO:
        return self.file if self.file is not None else sys.stdout

    def on_epoch_begin(self, epoch: int) -> None:
        self._start = time.perf_counter()
        if self.verbose != 1 or not self.is_main:
            return
        # no bar where stderr is not a terminal (a pipe, a log file)
        self._bar = progress_bar(int(self.params.get("steps", 0)), f"epoch {epoch}/{self.params.get('epochs')}", True)
        self._next_refresh = self._start

    def on_batch_end(self, batch: int, logs: Mapping[str, Any]) -> None:
        bar = self._bar
        if bar is None:
            return
        now = time.perf_counter()
        if now >= self._next_refresh:  # the loss is read (on a GPU: waited for) only when shown
            bar.set_postfix_str(f"loss {number(float(logs['loss']))}")
            self._next_refresh = now + self.REFRESH_S
        bar.update(1)

    def on_epoch_end(self, epoch: int, logs: Dict[str, Any]) -> None:
        self.close()
        if self.verbose and self.is_main:
            line = format_epoch(epoch, int(self.params.get("epochs", epoch)), logs, time.perf_counter() - self._start)
            print(line, file=self._out(), flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
