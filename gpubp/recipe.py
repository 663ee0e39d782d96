"""The ``gpubp train`` recipe in one place: its defaults, data, targets, network and optimizer.

:class:`TrainConfig` holds what ``gpubp train`` is asked (its fields are the command's
options, and their defaults are the command's defaults); :meth:`TrainConfig.load` reads and
splits the data and makes the targets the loss takes; :meth:`TrainConfig.make_network` and
:meth:`TrainConfig.make_optimizer` build the rest. The command line (:mod:`gpubp.cli`) and the
benchmark of one epoch of the default workload (:mod:`gpubp.bench`) both use it, so the two
cannot drift apart.
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .losses import get_loss

#: The learning rate of each optimizer when none is given.
DEFAULT_LR: Dict[str, float] = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.1}
#: The learning-rate schedules ``gpubp train --lr-schedule`` offers (:meth:`TrainConfig.make_schedule`).
SCHEDULES = ("step", "cosine", "plateau")


class TrainData(NamedTuple):
    """The training and test rows, their targets as the loss takes them, and a description."""

    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    n_classes: int
    description: str


@dataclass
class TrainConfig:
    """One ``gpubp train`` run: data, architecture, optimizer and schedule.

    ``data_dir`` is a folder of MNIST IDX files (``train-*`` and ``t10k-*``, or only the
    ``t10k-*`` pair, which is then split); ``None`` is the bundled UCI digits, split by
    ``test_fraction`` and ``split_seed``. ``lr`` ``None`` is :data:`DEFAULT_LR` of the optimizer,
    ``weight_decay`` ``None`` the optimizer's own default. Training holds out the last
    ``validation_split`` of the training rows for validation (the test rows are only evaluated
    at the end); ``early_stopping`` is the patience of an :class:`~gpubp.callbacks.EarlyStopping`
    on the validation loss, ``lr_schedule`` one of :data:`SCHEDULES`.
    """

    data_dir: Optional[str] = None
    hidden: Tuple[int, ...] = (128, 64)
    activation: str = "relu"
    output_activation: Optional[str] = None
    loss: str = "cross_entropy"
    optimizer: str = "adam"
    lr: Optional[float] = None
    momentum: float = 0.9
    nesterov: bool = False
    epochs: int = 40
    batch_size: int = 32
    dropout: float = 0.0
    batch_norm: bool = False
    dtype: str = "float32"
    seed: int = 0
    split_seed: int = 0
    test_fraction: float = 0.2
    weight_decay: Optional[float] = None
    clip_norm: Optional[float] = None
    validation_split: float = 0.1
    early_stopping: Optional[int] = None
    lr_schedule: Optional[str] = None

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's default learning rate."""
        if self.lr is not None:
            return self.lr
        from .names import lookup

        return lookup(DEFAULT_LR, self.optimizer, "optimizer", "optimizer", fold_case=True)

    def load_raw(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
        """(X_train, y_train, X_test, y_test, description): the rows and their class labels."""
        from . import data

        if self.data_dir is not None:
            has_train = any(os.path.exists(os.path.join(self.data_dir, f"train-images-idx3-ubyte{ext}"))
                            for ext in ("", ".gz"))
            if has_train:
                X_tr, y_tr = data.load_mnist(self.data_dir, "train")
                X_te, y_te = data.load_mnist(self.data_dir, "t10k")
                return X_tr, y_tr, X_te, y_te, f"MNIST from {self.data_dir} (train {len(y_tr)}, test {len(y_te)})"
            X, y = data.load_mnist(self.data_dir, "t10k")
            X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, self.test_fraction, seed=self.split_seed)
            return X_tr, y_tr, X_te, y_te, f"MNIST t10k from {self.data_dir}, split {len(y_tr)} train / {len(y_te)} test"
        X, y = data.load_digits()
        X_tr, X_te, y_tr, y_te = data.train_test_split(X, y, self.test_fraction, seed=self.split_seed)
        return X_tr, y_tr, X_te, y_te, f"UCI digits (bundled), {len(y_tr)} train / {len(y_te)} test"

    def targets(self, y: np.ndarray, m: int) -> np.ndarray:
        """The labels themselves for a loss that reads labels (cross-entropy), one-hot rows otherwise."""
        from .data import one_hot

        return y if get_loss(self.loss).accepts_labels else one_hot(y, m)

    def load(self) -> TrainData:
        """The data of this run, with targets for the loss and as many classes as labels seen."""
        X_tr, y_tr, X_te, y_te, description = self.load_raw()
        m = int(max(y_tr.max(), y_te.max())) + 1
        return TrainData(X_tr, self.targets(y_tr, m), X_te, self.targets(y_te, m), m, description)

    def sizes(self, data: TrainData) -> Tuple[int, ...]:
        """``[n_0, *hidden, n_L]``: the input width of the data, the hidden widths, one node per class."""
        return (data.X_train.shape[1], *self.hidden, data.n_classes)

    def make_network(self, data: TrainData) -> Any:
        """The :class:`~gpubp.network.MLP` of this run for ``data``, on the active backend."""
        from .network import MLP

        return MLP(list(self.sizes(data)), activation=self.activation, output_activation=self.output_activation,
                   loss=self.loss, dtype=self.dtype, seed=self.seed, dropout=self.dropout, batch_norm=self.batch_norm)

    def optimizer_arguments(self) -> Dict[str, Any]:
        """The learning rate, and momentum, Nesterov and weight decay where the optimizer takes them."""
        from .optim import lookup_optimizer

        accepted = inspect.signature(lookup_optimizer(self.optimizer)).parameters
        kwargs: Dict[str, Any] = {"lr": self.learning_rate}
        kwargs.update({k: getattr(self, k) for k in ("momentum", "nesterov") if k in accepted})
        if self.weight_decay is not None:
            if "weight_decay" not in accepted:
                raise ValueError(f"optimizer {self.optimizer!r} takes no weight decay")
            kwargs["weight_decay"] = self.weight_decay
        return kwargs

    def make_optimizer(self) -> Any:
        """The optimizer of this run (:func:`gpubp.optim.make_optimizer`)."""
        from .optim import make_optimizer

        return make_optimizer(self.optimizer, **self.optimizer_arguments())

    def make_schedule(self) -> Any:
        """The learning-rate schedule ``lr_schedule`` names (None for a constant lr): ``step`` the lr
        times 0.1 after each third of the epochs, ``cosine`` annealing to 0 over the epochs,
        ``plateau`` the lr times 0.1 after 5 epochs without a better validation loss."""
        from . import schedules

        if self.lr_schedule is None:
            return None
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(SCHEDULES)}; got {self.lr_schedule!r}")
        if self.lr_schedule == "plateau" and not self.validation_split:
            raise ValueError("the plateau schedule watches the validation loss: it needs a validation_split > 0")
        if self.lr_schedule == "step":
            return schedules.StepLR(max(1, -(-self.epochs // 3)))
        if self.lr_schedule == "cosine":
            return schedules.CosineAnnealingLR(max(1, self.epochs))
        return schedules.ReduceLROnPlateau(patience=5)

    def fit_arguments(self) -> Dict[str, Any]:
        """The arguments of ``net.fit`` for this run, new objects each call (optimizer, schedule and
        callbacks): ``gpubp train`` and ``gpubp explain`` (which trains first) fit with these."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "optimizer": self.make_optimizer(),
                "validation_split": self.validation_split, "callbacks": self.make_callbacks(),
                "lr_schedule": self.make_schedule(), "clip_norm": self.clip_norm}

    def make_callbacks(self) -> List[Any]:
        """Early stopping on the validation loss (restoring the best epoch's weights) where asked."""
        from .callbacks import EarlyStopping

        if self.early_stopping is None:
            return []
        if not self.validation_split:
            raise ValueError("early stopping watches the validation loss: it needs a validation_split > 0")
        return [EarlyStopping(patience=self.early_stopping)]
