"""Mini-batch training: ``fit`` checks its arguments, prepares the data, the distributed plan and
the callbacks, then runs the epoch loop (:mod:`gpubp.loop`).

Where each piece lives: the rows served by mini-batch in :mod:`gpubp.dataset`, the epoch loop in
:mod:`gpubp.loop`, the divergence guard and snapshots in :mod:`gpubp.guard`, the callbacks
(early stopping, checkpoints) in :mod:`gpubp.callbacks`, learning-rate schedules in
:mod:`gpubp.schedules`, the progress output in :mod:`gpubp.progress`, the History in
:mod:`gpubp.history` and ``evaluate`` in :mod:`gpubp.evaluation`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import distributed, sparse, validation
from . import guard as guard_mod
from .callbacks import Callback, CallbackList, LambdaCallback, LearningRateScheduler, ProgressLogger, check_callbacks
from .dataset import Dataset
from .evaluation import evaluate
from .history import History
from .loop import Loop, StepPlan
from .progress import check_verbose
from .schedules import ReduceLROnPlateau, Schedule

__all__ = ["History", "evaluate", "fit"]


def _check_split(validation_split: Any, validation_data: Any, n: int) -> int:
    """The number of rows ``validation_split`` holds out of n (0 for none)."""
    split = validation.check_positive_float(validation_split, "validation_split", allow_zero=True)
    if split >= 1.0:
        raise ValueError(f"validation_split must lie in [0, 1) (the fraction of rows held out); got {validation_split!r}")
    if split == 0.0:
        return 0
    if validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")
    n_val = n - int(n * (1.0 - split))  # Keras: the last rows from int(n (1 - split)) on
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split={validation_split!r} of {n} rows leaves {n - n_val} for training and "
                         f"{n_val} for validation; both need at least one")
    return n_val


def _count_rows(X: Any) -> int:
    """The rows of X before it is checked (0 where it has none to count: the check then says why)."""
    try:
        return int(X.shape[0])
    except (AttributeError, IndexError, TypeError):
        try:
            return len(X)
        except TypeError:
            return 0


def _check_clip(clip_norm: Any) -> Optional[float]:
    """``clip_norm``: None, or the gradients' largest global L2 norm (a finite number > 0)."""
    return None if clip_norm is None else validation.check_positive_float(clip_norm, "clip_norm")


def _verbosity(verbose: Any, progress: Any) -> int:
    """``verbose``, with the older ``progress`` flag folded in (False: silent, True: the default 1)."""
    if progress is not None:
        progress = validation.check_bool(progress, "progress")
    if verbose is None:
        return 1 if progress is None or progress else 0
    verbose = check_verbose(verbose)
    if progress is False and verbose:
        raise ValueError(f"progress=False asks for silence and verbose={verbose} for output; pass verbose alone")
    return verbose


def _lr_schedule(lr_schedule: Any) -> List[Any]:
    if lr_schedule is None:
        return []
    if isinstance(lr_schedule, type):
        raise TypeError(f"lr_schedule is the class {lr_schedule.__name__}, not a schedule object: pass an instance, "
                        f"e.g. {lr_schedule.__name__}(...)")
    if isinstance(lr_schedule, Callback) and not isinstance(lr_schedule, (Schedule, ReduceLROnPlateau,
                                                                          LearningRateScheduler)):
        raise TypeError(f"lr_schedule must be a schedule of gpubp.schedules or a function (epoch, lr) -> lr; got the "
                        f"callback {type(lr_schedule).__name__} (pass it in callbacks=[...])")
    if any(callable(getattr(lr_schedule, hook, None)) for hook in ("on_epoch_begin", "on_epoch_end")):
        return [lr_schedule]
    if callable(lr_schedule):
        return [LearningRateScheduler(lr_schedule)]
    raise TypeError(f"lr_schedule must be a schedule of gpubp.schedules or a function (epoch, lr) -> lr; got "
                    f"{type(lr_schedule).__name__}")


def _plan(net: Any, data: Dataset, batch_size: int, comm: Any, settings: Dict[str, Any]) -> StepPlan:
    """The steps of an epoch; in a distributed run every rank's row count, in one collective that
    also checks that the ranks agree on ``settings``."""
    n = data.n
    n_batches = -(-n // batch_size)
    if comm is None or comm.size == 1:
        plan = StepPlan(n_batches, n, shuffling=(0, 1, n))
        rows = [min(batch_size, n - k * batch_size) for k in range(n_batches)]
    else:
        # checked before the first collective that depends on them: ranks that disagree on the
        # network, the optimizer or the loop's shape would otherwise hang or abort inside MPI
        counts, n_total = distributed.global_rows(comm, n, entry="fit", network=distributed.network_config(net),
                                                  **settings)
        n_batches = max(-(-c // batch_size) for c in counts)
        # rows of all ranks in step k (a rank whose shard has run out adds none), and of the ranks
        # before this one (where a layer's rows continue those of the previous ranks)
        shares = [[min(batch_size, max(0, c - k * batch_size)) for c in counts] for k in range(n_batches)]
        rows = [sum(share) for share in shares]
        plan = StepPlan(n_batches, n_total, rows, [sum(share[: comm.rank]) for share in shares],
                        shuffling=(comm.rank, comm.size, max(counts)))
    if net.has_batch_norm and min(rows) < 2:
        raise ValueError(f"BatchNorm in training mode needs at least 2 rows per step; batch_size={batch_size} over "
                         f"{plan.n_total} rows makes a step of {min(rows)} row: choose another batch_size")
    return plan


def fit(
    net: Any,
    X: Any,
    Y: Any,
    epochs: int = 10,
    batch_size: int = 32,
    optimizer: Any = None,
    validation_data: Optional[Tuple[Any, Any]] = None,
    shuffle: bool = True,
    progress: Optional[bool] = None,
    callback: Optional[Callable[[int, Dict[str, Optional[float]]], None]] = None,
    initial_epoch: int = 0,
    comm: Any = None,
    callbacks: Optional[Sequence[Any]] = None,
    validation_split: float = 0.0,
    clip_norm: Optional[float] = None,
    verbose: Optional[int] = None,
    lr_schedule: Any = None,
) -> History:
    """Train ``net`` on X, Y by mini-batches of ``batch_size`` rows, epochs ``initial_epoch + 1`` to ``epochs``.

    Args:
        epochs: the number of the last epoch (so ``epochs - initial_epoch`` passes over the data).
        optimizer: a :class:`gpubp.SGD`, :class:`gpubp.Adam` or :class:`gpubp.AdamW` (default ``Adam()``).
        validation_data: ``(X_val, Y_val)`` evaluated after every epoch (logs ``val_loss``, ``val_accuracy``).
        validation_split: a fraction in [0, 1): the last ``n - int(n (1 - validation_split))`` rows
            of X, Y (taken before any shuffling, as Keras does) are held out as the validation data.
        shuffle: draw a new permutation of the rows every epoch (from the network's seed).
        callbacks: objects with any of ``on_train_begin()``, ``on_epoch_begin(epoch)``,
            ``on_batch_end(batch, logs)``, ``on_epoch_end(epoch, logs)``, ``on_train_end(logs)``
            (:mod:`gpubp.callbacks`: EarlyStopping, ModelCheckpoint, LearningRateScheduler, ...);
            one that sets ``net.stop_training = True`` ends training after the current epoch.
        lr_schedule: a schedule of :mod:`gpubp.schedules` (StepLR, CosineAnnealingLR,
            ReduceLROnPlateau), or a function ``(epoch, lr) -> lr``, run before the other callbacks.
        clip_norm: clip the gradients' global L2 norm ||g|| (over every parameter) to this value
            before each update, g <- g min(1, clip_norm / (||g|| + 1e-6)), as
            ``torch.nn.utils.clip_grad_norm_`` (one pass over the flat gradient buffer for the
            norm, one for the scaling).
        verbose: 0 silent; 1 (default) a progress bar with the running loss where stderr is a
            terminal and one line per epoch on stdout in every case; 2 the line per epoch only
            (:mod:`gpubp.progress`). Only rank 0 of a distributed run prints.
        progress: the older switch: ``False`` is ``verbose=0``, ``True`` the default.
        callback: the older per-epoch hook, ``callback(epoch, logs)`` after every epoch (epochs
            count from 1): ``LambdaCallback(on_epoch_end=callback)``.
        comm: a communicator from :func:`gpubp.distributed.init` for data-parallel training:
            every rank passes its own shard X, Y (at least one row; sizes may differ), rank
            0's parameters and optimizer state are broadcast first, and step k averages the
            gradients over the k-th batch of every rank, so the replicas stay identical. A
            rank whose shard has fewer batches joins the remaining steps of the epoch with an
            empty batch. The logs (loss, accuracy, validation on each rank's validation rows)
            are over all ranks' rows and the same on every rank; the callbacks run on every
            rank, a stop asked on any rank stops them all after the epoch, only rank 0 prints and
            writes checkpoints. A non-finite step is seen alike on every rank (the guard checks
            the all-reduced loss and gradients), so all ranks stop together.
        initial_epoch: the number of epochs already done, for resuming: a network loaded from
            a checkpoint with its optimizer (:func:`gpubp.load_optimizer`) continues with
            ``fit(X, Y, epochs=E, optimizer=opt, initial_epoch=net.epoch)`` exactly as the
            uninterrupted run would have (bit for bit on NumPy; the checkpoint keeps the
            shuffling generator's state).

    Every argument is checked before anything changes (the callbacks' own checks run in
    ``on_train_begin``, before the first step). The data set is moved to the backend once (or
    streamed from host memory when it does not fit on the GPU, see :mod:`gpubp.memory`).

    Raises:
        gpubp.NonFiniteError: a batch's loss or gradient was NaN or inf; ``epoch`` and
            ``batch`` (from 1) name it, and the weights and optimizer state are restored to the
            last finite step: their values before the previous batch's update, the newest ones
            with a finite loss and gradient, from which a lower learning rate can go on
            (see :class:`gpubp.guard.DivergenceGuard` for the definition and the cost).
        gpubp.OutOfMemoryError: the GPU ran out of memory; the weights and optimizer state
            are restored to the last verified step (at most ``gpubp.guard.CHECK_EVERY`` batches
            back) and the message suggests a smaller batch. A ``KeyboardInterrupt`` restores
            them the same way, so an interrupted update never leaves them half-written.

    Returns the :class:`History` of the epochs run: loss, accuracy, validation, lr.
    """
    from .optim import Adam

    comm = distributed.check_comm(comm, "fit")
    epochs = validation.check_int(epochs, "epochs", 0, validation.COUNTER_LIMIT)  # net.epoch is saved as 64-bit
    initial_epoch = validation.check_int(initial_epoch, "initial_epoch", 0, validation.COUNTER_LIMIT)
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch must be <= epochs (the number of the last epoch); got initial_epoch="
                         f"{initial_epoch} and epochs={epochs}")
    batch_size = validation.check_int(batch_size, "batch_size", 1)
    shuffle = validation.check_bool(shuffle, "shuffle")
    verbose = _verbosity(verbose, progress)
    clip_norm = _check_clip(clip_norm)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(epoch, logs); got {type(callback).__name__}")
    extra = _lr_schedule(lr_schedule) + check_callbacks(callbacks)
    if callback is not None:
        extra.append(LambdaCallback(on_epoch_end=callback))
    if optimizer is None:
        optimizer = Adam()
    validation.check_optimizer(optimizer, net)
    if validation_data is not None and (not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2):
        raise TypeError(f"validation_data must be a pair (X_val, Y_val); got {type(validation_data).__name__}")
    n_rows = _count_rows(X)
    n_val = _check_split(validation_split, validation_data, n_rows)
    if n_val:
        cut = n_rows - n_val
        if sparse.is_sparse(X):  # sliced as CSR (not every format slices), as the Dataset converts it anyway
            X = sparse.to_csr(X, X.dtype, "X")
        validation_data = (X[cut:], Y[cut:])
        X, Y = X[:cut], Y[:cut]
    data = Dataset(net, X, Y)
    val = None
    if validation_data is not None:
        names = ("X[validation_split:]", "Y[validation_split:]") if n_val else ("validation_data[0]", "validation_data[1]")
        val = Dataset(net, *validation_data, names=names)

    history = History.empty()
    if epochs == initial_epoch:
        return history
    plan = _plan(net, data, batch_size, comm, {
        "batch_size": batch_size, "epochs": epochs, "initial_epoch": initial_epoch, "shuffle": shuffle,
        "validation": val is not None, "optimizer": distributed.optimizer_config(optimizer), "clip_norm": clip_norm})
    rank = comm.rank if comm is not None else 0
    if verbose:
        extra.append(ProgressLogger(verbose))
    metrics = ["loss"] + (["accuracy"] if data.classes is not None else []) + (
        ["val_loss"] + (["val_accuracy"] if val.classes is not None else []) if val is not None else []) + (
        ["lr"] if hasattr(optimizer, "lr") else [])
    params = {"epochs": epochs, "initial_epoch": initial_epoch, "steps": plan.n_batches, "batch_size": batch_size,
              "samples": data.n, "optimizer": optimizer, "verbose": verbose, "metrics": metrics, "comm": comm,
              "rank": rank}
    cbs = CallbackList(extra, net, params)

    def prepare() -> guard_mod.DivergenceGuard:
        if plan.step_rows is not None:
            distributed.broadcast_parameters(net, comm, optimizer)
        return guard_mod.DivergenceGuard(net, optimizer, guard_mod.CHECK_EVERY)

    return Loop(net, data, val, optimizer, batch_size, shuffle, comm, plan, cbs, clip_norm).run(
        initial_epoch, epochs, history, prepare)
