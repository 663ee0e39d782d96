"""The epoch loop of ``fit``: batches, the divergence guard, logs, validation and the callbacks.

:func:`gpubp.train.fit` checks its arguments and prepares a :class:`Loop`; the loop runs the
epochs. Per epoch: ``on_epoch_begin`` (a schedule sets the lr), in a distributed run the check
that every rank's optimizer has the same hyper-parameters (one small allgather), one
permutation of the rows, then per batch a gather into reused buffers, forward, backward,
(all-reduce), optional clipping and the update, the guard's check, ``on_batch_end`` where a
callback has it; then the logs (loss and accuracy summed on the device and read once per
epoch, validation), ``on_epoch_end``, and the stop flag. Loss and accuracy are accumulated
on the device, so an epoch synchronises with the GPU once per guard window and once at its end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from . import distributed, memory
from . import guard as guard_mod
from .callbacks import CallbackList
from .dataset import Dataset, n_correct
from .errors import NonFiniteError
from .evaluation import evaluate_dataset
from .history import History


@dataclass
class StepPlan:
    """The steps of one epoch: ``n_batches``, the rows of all ranks ``n_total``, and in a
    distributed run each step's rows over all ranks (``step_rows``) and the rows of the ranks
    before this one (``offsets``, where a layer's rows continue theirs); None alone."""

    n_batches: int
    n_total: int
    step_rows: Optional[List[int]] = None
    offsets: Optional[List[int]] = None
    #: (this rank, ranks, rows of the largest shard): how the rows are shuffled (Dataset.order)
    shuffling: Tuple[int, int, int] = (0, 1, 0)


class BatchLogs(Mapping):
    """The logs of ``on_batch_end``: ``loss`` is the mean loss of the epoch so far (over all ranks'
    rows), ``size`` this step's rows. The loss is read from the device only when a callback asks
    for it, so a progress bar that shows it a few times a second does not wait for every batch.
    Valid during the call."""

    def __init__(self, loop: "Loop", size: int):
        self._loop, self._size = loop, size

    def __getitem__(self, key: str) -> Any:
        if key == "loss":
            return float(self._loop.loss_sum) / max(self._loop.rows_done, 1)
        if key == "size":
            return self._size
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("loss", "size"))

    def __len__(self) -> int:
        return 2


class Loop:
    """One ``fit`` call's epochs over checked arguments (see :func:`gpubp.train.fit`)."""

    def __init__(self, net: Any, data: Dataset, val: Optional[Dataset], optimizer: Any, batch_size: int, shuffle: bool,
                 comm: Any, plan: StepPlan, callbacks: CallbackList, clip_norm: Optional[float]):
        self.net, self.data, self.val, self.optimizer = net, data, val, optimizer
        self.batch_size, self.shuffle, self.comm, self.plan = batch_size, shuffle, comm, plan
        self.callbacks, self.clip_norm = callbacks, clip_norm
        self.xp = net.backend.xp
        self.loss_sum: Any = None
        self.rows_done = 0

    # ---- one batch ------------------------------------------------------------------------
    def step(self, i: int, order: Any) -> Tuple[Any, Optional[Any], Optional[Any]]:
        """Batch i of the epoch: (C, this rank's X_b or None when its shard has run out, classes)."""
        net, plan, bs = self.net, self.plan, self.batch_size
        if i * bs >= self.data.n:  # an empty share of a distributed step
            C = net.train_batch(None, None, self.optimizer, self.comm, plan.step_rows[i], clip_norm=self.clip_norm)
            return C, None, None
        Xb, Yb, Cb = self.data.gather(order[i * bs: (i + 1) * bs])
        if plan.step_rows is None:
            return net.train_batch(Xb, Yb, self.optimizer, self.comm, clip_norm=self.clip_norm), Xb, Cb
        return net.train_batch(Xb, Yb, self.optimizer, self.comm, plan.step_rows[i], plan.offsets[i],
                               clip_norm=self.clip_norm), Xb, Cb

    # ---- one epoch ------------------------------------------------------------------------
    def train_epoch(self, epoch: int, guard: guard_mod.DivergenceGuard) -> Tuple[float, int]:
        """The batches of one epoch; returns (sum of C times rows, rows predicting their class):
        the loss over every rank's rows (a distributed step's C is), the count over this rank's."""
        net, xp, plan = self.net, self.xp, self.plan
        order = self.data.order(net.rng if self.shuffle else None, *plan.shuffling)
        # bookkeeping only, summed like evaluate's; added to in place, so the batch logs see it
        loss_sum = self.loss_sum = xp.zeros((), dtype=np.float64)
        self.rows_done = 0
        correct = xp.zeros((), dtype=xp.int64)
        batch_hooks = self.callbacks.batch_hooks
        step, n_batches, step_rows = self.step, plan.n_batches, plan.step_rows
        before_step, after_step, workspace, L = guard.before_step, guard.after_step, net.workspace, net.L
        guard.begin_epoch(lambda i, order=order: step(i, order)[0])
        b = 0

        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the guard reports NaN/inf
                for b in range(n_batches):
                    last = b == n_batches - 1
                    before_step(b, last)
                    C, Xb, Cb = step(b, order)
                    bad = after_step(b, C, last)
                    if bad is not None:
                        restored = guard.rewind(bad)
                        what = (f"the update of batch {bad} of {plan.n_batches} made the weights NaN or inf"
                                if guard.weights_failed else
                                f"batch {bad + 1} of {plan.n_batches}: its loss or a gradient is NaN or inf")
                        raise NonFiniteError(
                            f"training diverged at epoch {epoch}, {what}. The weights and optimizer state are "
                            f"restored to their values before batch {restored + 1}, the newest ones with a finite loss "
                            f"and gradient: lower the learning rate and call fit again (initial_epoch={epoch - 1} "
                            f"keeps the epoch numbers).", epoch=epoch, batch=bad if guard.weights_failed else bad + 1)
                    rows = Xb.shape[0] if step_rows is None else step_rows[b]
                    loss_sum += C * rows
                    if Cb is not None:
                        # the outputs of this batch's forward pass, before the update
                        correct += n_correct(workspace(Xb.shape[0]).A[L], Cb)
                    if batch_hooks:
                        self.rows_done += rows
                        self.callbacks.on_batch_end(b, BatchLogs(self, rows))
        except KeyboardInterrupt:
            guard.restore()
            raise
        except Exception as exc:
            if not memory.is_out_of_memory(exc):
                raise
            restored = guard.restore()
            raise memory.out_of_memory_error(
                exc, net.backend, "in fit",
                memory.batch_hint(self.batch_size) + f"; the weights and optimizer state are restored to their values "
                f"before batch {restored + 1} of epoch {epoch}", epoch=epoch, batch=b + 1) from exc
        return float(loss_sum), int(correct)

    def logs(self, loss_sum: float, correct: int, lr: Optional[float]) -> Dict[str, Optional[float]]:
        """The epoch's logs: loss and accuracy over every rank's rows, validation, the lr it ran with."""
        plan, comm = self.plan, self.comm
        if plan.step_rows is not None:  # on every rank alike: the collectives must match
            correct = comm.sum(correct)
        logs: Dict[str, Optional[float]] = {
            "loss": loss_sum / plan.n_total,
            "accuracy": correct / plan.n_total if self.data.classes is not None else None,
            "val_loss": None,
            "val_accuracy": None,
        }
        val = self.val
        if val is not None:
            logs["val_loss"], logs["val_accuracy"] = evaluate_dataset(self.net, val)
            if plan.step_rows is not None:  # weighted by each rank's validation rows
                acc = logs["val_accuracy"]
                sums = comm.sum((logs["val_loss"] * val.n, (acc or 0.0) * val.n, float(val.n)))
                logs["val_loss"] = sums[0] / sums[2]
                logs["val_accuracy"] = sums[1] / sums[2] if acc is not None else None
        logs["lr"] = lr
        return logs

    def should_stop(self) -> bool:
        """Whether a callback asked to stop (on any rank: every rank stops after the same epoch)."""
        stop = bool(getattr(self.net, "stop_training", False))
        if self.plan.step_rows is not None:
            stop = self.comm.sum(int(stop)) > 0
            self.net.stop_training = stop
        return stop

    # ---- the run --------------------------------------------------------------------------
    def run(self, initial_epoch: int, epochs: int, history: History,
            prepare: Callable[[], guard_mod.DivergenceGuard]) -> History:
        """Epochs ``initial_epoch + 1 .. epochs`` (fewer when a callback stops training).

        ``prepare()`` runs after ``on_train_begin`` (whose checks may still refuse the run) and
        before the first epoch: it synchronises the ranks and makes the divergence guard."""
        net, callbacks = self.net, self.callbacks
        net.stop_training = False
        logs: Dict[str, Optional[float]] = {}
        try:
            callbacks.on_train_begin()
            guard = prepare()
            for epoch in range(initial_epoch + 1, epochs + 1):
                callbacks.on_epoch_begin(epoch)
                if self.plan.step_rows is not None:  # replicas that would step with different rates
                    distributed.agree_hyperparameters(self.comm, self.optimizer, epoch)
                lr = getattr(self.optimizer, "lr", None)
                loss_sum, correct = self.train_epoch(epoch, guard)
                net.epoch = epoch
                logs = self.logs(loss_sum, correct, None if lr is None else float(lr))
                callbacks.on_epoch_end(epoch, logs)
                history.append(epoch, logs)
                if self.should_stop():
                    break
            callbacks.on_train_end(logs)
        finally:
            callbacks.close()
        return history
