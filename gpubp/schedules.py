"""Learning-rate schedules, one learning rate per epoch, with torch.optim.lr_scheduler's arithmetic
(MATH.md, learning-rate schedules).

Each schedule is a callback (:mod:`gpubp.callbacks`): pass it in ``fit(..., callbacks=[...])`` or
as ``fit(..., lr_schedule=...)``. Before each epoch it sets the optimizer's ``lr`` (checked on
assignment like any ``opt.lr = ...``); the History records the learning rate every epoch ran
with under ``"lr"``.

The numbers are PyTorch's, operation for operation. Epoch e of ``fit`` (from 1) is PyTorch's
``last_epoch = e - 1``: the lr of epoch 1 is the optimizer's own (the base lr), and every later
one is computed from the previous one as the scheduler's ``get_lr`` does (its recursive form:
``lr_e = f(lr_{e-1})``), so ``fit(..., lr_schedule=StepLR(10))`` over 50 epochs gives exactly
the lrs of ``torch.optim.lr_scheduler.StepLR(opt, 10)`` stepped once after each of 50 epochs.

The base lr is kept on the optimizer (``opt.initial_lr``, as PyTorch keeps ``initial_lr`` in its
param groups) and saved with it in checkpoints. A schedule that starts at a later epoch than
the one after the epoch it last set (resuming from a checkpoint with ``initial_epoch``, or a
new schedule object) computes that epoch's lr from the base lr in closed form, as PyTorch's
``step(epoch)`` does.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from .callbacks import Callback, _check_number
from .history import monitor_mode


def _base_lr(optimizer: Any) -> float:
    """The optimizer's base lr: its ``initial_lr``, or its current lr before a schedule first ran."""
    base = getattr(optimizer, "initial_lr", None)
    return float(optimizer.lr if base is None else base)


class Schedule(Callback):
    """Base class of the per-epoch schedules: :meth:`initial`, :meth:`step` (PyTorch's recursive
    ``get_lr``) and :meth:`closed_form` (PyTorch's ``_get_closed_form_lr``) of epoch index k = e - 1.

    ``lrs`` lists the learning rates it set, one per epoch, in order.
    """

    def __init__(self) -> None:
        self.last_index = -1  # the epoch index (from 0) of the lr set last
        self.lrs: List[float] = []
        self._base: Optional[float] = None  # the base lr of the current run (on_train_begin)

    # ---- the arithmetic, per schedule ------------------------------------------------------
    def initial(self, base: float) -> float:
        """The lr of epoch index 0."""
        return base

    def step(self, k: int, lr: float, base: float) -> float:
        """The lr of epoch index k >= 1 from the previous epoch's ``lr``."""
        raise NotImplementedError

    def closed_form(self, k: int, base: float) -> float:
        """The lr of epoch index k straight from the base lr."""
        raise NotImplementedError

    def lr_at(self, k: int, lr: float, base: float, last_index: int) -> float:
        """The lr of epoch index k, given the lr in effect and the index set last."""
        if k == 0:
            return self.initial(base)
        if k == last_index + 1:
            return self.step(k, lr, base)
        return self.closed_form(k, base)

    # ---- as a callback -----------------------------------------------------------------------
    def on_train_begin(self) -> None:
        """Check that every epoch of this run gets a learning rate an optimizer takes (> 0),
        before anything changes. A run from epoch 1 starts from the optimizer's lr as it is now
        (as a new PyTorch scheduler's first epoch does, whatever lr an earlier schedule left as
        ``initial_lr``); a resumed run (``initial_epoch > 0``) from the base lr it kept."""
        first, last = int(self.params.get("initial_epoch", 0)), int(self.params.get("epochs", 0))
        base = float(self.optimizer.lr) if first == 0 else _base_lr(self.optimizer)
        lr, index = float(self.optimizer.lr), self.last_index
        for k in range(first, last):
            lr, index = self.lr_at(k, lr, base, index), k
            if not (lr > 0.0 and math.isfinite(lr)):
                raise ValueError(f"{self!r} gives epoch {k + 1} the learning rate {lr!r}; optimizers need a finite "
                                 f"lr > 0: {self.zero_hint(k)}")
        self._base = base

    def zero_hint(self, k: int) -> str:
        return "choose other settings"

    def on_epoch_begin(self, epoch: int) -> None:
        opt = self.optimizer
        k = epoch - 1
        base = _base_lr(opt) if self._base is None else self._base
        # kept with the optimizer (and its checkpoints), as PyTorch keeps initial_lr; set once the
        # run has started, so that a run refused before its first epoch changes nothing
        opt.initial_lr = base
        lr = self.lr_at(k, float(opt.lr), base, self.last_index)
        opt.lr = lr
        self.last_index = k
        self.lrs.append(lr)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def get_config(self) -> Dict[str, Any]:
        return {}


class StepLR(Schedule):
    """The lr times ``gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``):
    epoch e runs with base_lr * gamma^floor((e - 1) / step_size)."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        super().__init__()
        self.step_size = _check_number(step_size, "step_size", 1, integer=True)
        self.gamma = _check_number(gamma, "gamma")
        if self.gamma <= 0.0:
            raise ValueError(f"gamma must be > 0 (a learning rate of 0 is no learning rate); got {gamma!r}")

    def step(self, k: int, lr: float, base: float) -> float:
        if k % self.step_size != 0:
            return lr
        return lr * self.gamma

    def closed_form(self, k: int, base: float) -> float:
        return base * self.gamma ** (k // self.step_size)

    def get_config(self) -> Dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}


class CosineAnnealingLR(Schedule):
    """Cosine annealing from the base lr to ``eta_min`` over ``T_max`` epochs
    (``torch.optim.lr_scheduler.CosineAnnealingLR``), after ``warmup_epochs`` of linear warm-up.

    Without warm-up, epoch e runs with eta_min + (base_lr - eta_min) (1 + cos(pi (e - 1) / T_max)) / 2
    (computed recursively, as PyTorch does). With ``warmup_epochs = w`` the first w epochs ramp
    up linearly, epoch e <= w running with base_lr e / (w + 1), and the cosine starts at the base
    lr in epoch w + 1: PyTorch's ``SequentialLR([LinearLR(start_factor=1 / (w + 1), total_iters=w),
    CosineAnnealingLR(T_max, eta_min)], milestones=[w])``. The lr reaches eta_min in epoch
    w + T_max + 1 and then rises again, as PyTorch's does; a run that would reach an eta_min of 0
    is refused before it starts (train for at most w + T_max epochs, or set eta_min > 0).
    """

    def __init__(self, T_max: int, eta_min: float = 0.0, warmup_epochs: int = 0):
        super().__init__()
        self.T_max = _check_number(T_max, "T_max", 1, integer=True)
        self.eta_min = _check_number(eta_min, "eta_min")
        self.warmup_epochs = _check_number(warmup_epochs, "warmup_epochs", 0, integer=True)
        self.start_factor = 1.0 / (self.warmup_epochs + 1)

    def initial(self, base: float) -> float:
        return base * self.start_factor if self.warmup_epochs else base

    def _cosine_start(self, base: float) -> float:
        """The cosine's first lr after a warm-up (PyTorch's closed form at its epoch 0)."""
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * 0 / self.T_max)) / 2

    def step(self, k: int, lr: float, base: float) -> float:
        w = self.warmup_epochs
        if k < w:  # LinearLR.get_lr, end_factor 1
            s = self.start_factor
            return lr * (1.0 + (1.0 - s) / (w * s + (k - 1) * (1.0 - s)))
        if w and k == w:  # SequentialLR's milestone: the cosine starts from its closed form
            return self._cosine_start(base)
        j, T, eta = k - w, self.T_max, self.eta_min
        if (j - 1 - T) % (2 * T) == 0:
            return lr + (base - eta) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * j / T)) / (1 + math.cos(math.pi * (j - 1) / T)) * (lr - eta) + eta

    def closed_form(self, k: int, base: float) -> float:
        w = self.warmup_epochs
        if k < w:
            s = self.start_factor
            return base * (s + (1.0 - s) * min(w, k) / w)
        return self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * (k - w) / self.T_max)) / 2

    def zero_hint(self, k: int) -> str:
        return (f"the cosine reaches eta_min={self.eta_min!r} in epoch {self.warmup_epochs + self.T_max + 1}; train "
                f"for at most {self.warmup_epochs + self.T_max} epochs or set eta_min > 0")

    def get_config(self) -> Dict[str, Any]:
        return {"T_max": self.T_max, "eta_min": self.eta_min, "warmup_epochs": self.warmup_epochs}


class ReduceLROnPlateau(Callback):
    """Multiply the lr by ``factor`` when ``monitor`` has not improved for more than ``patience``
    epochs (``torch.optim.lr_scheduler.ReduceLROnPlateau``, stepped with the metric after each
    epoch; the new lr applies from the next epoch).

    Args:
        monitor: the logged metric watched (``val_loss`` needs validation data).
        factor: in (0, 1): new_lr = max(lr * factor, min_lr).
        patience: epochs without improvement tolerated; the lr drops after ``patience + 1``.
        min_lr: the lowest lr (>= 0).
        mode: ``min``, ``max`` or ``auto`` (accuracies up, losses down).
        threshold, threshold_mode: an improvement beats the best by more than ``threshold``,
            relative (``rel``: best (1 - threshold) for ``min``) or absolute (``abs``).
        cooldown: epochs after a drop during which bad epochs are not counted.
        eps: a drop smaller than this is not made.

    Its counters restart when a ``fit`` starts from epoch 1 and carry on when it resumes
    (``initial_epoch > 0``) with the same object.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, min_lr: float = 0.0,
                 mode: str = "auto", threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 eps: float = 1e-8):
        self.mode = monitor_mode(monitor, mode)
        self.monitor = monitor
        self.factor = _check_number(factor, "factor")
        if not 0.0 < self.factor < 1.0:
            raise ValueError(f"factor must lie in (0, 1) (the lr is multiplied by it); got {factor!r}")
        self.patience = _check_number(patience, "patience", 0, integer=True)
        self.min_lr = _check_number(min_lr, "min_lr")
        self.threshold = _check_number(threshold, "threshold")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs'; got {threshold_mode!r}")
        self.threshold_mode = threshold_mode
        self.cooldown = _check_number(cooldown, "cooldown", 0, integer=True)
        self.eps = _check_number(eps, "eps")
        self._reset()

    def _reset(self) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def is_better(self, a: float, best: float) -> bool:
        """PyTorch's comparison (NaN is never better)."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def on_train_begin(self) -> None:
        self.check_monitor(self.monitor)
        if int(self.params.get("initial_epoch", 0)) == 0:
            self._reset()

    def on_epoch_end(self, epoch: int, logs: Dict[str, Any]) -> None:
        self.record(self.monitored(self.monitor, epoch, logs))

    def record(self, current: float) -> Optional[float]:
        """Step with one epoch's value of the metric; returns the new lr when it dropped."""
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
            opt = self.optimizer
            old = float(opt.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                opt.lr = new
                return new
        return None

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor!r}, patience={self.patience!r}, "
                f"min_lr={self.min_lr!r}, mode={self.mode!r})")
