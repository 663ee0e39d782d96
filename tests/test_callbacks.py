"""Callbacks in fit: the protocol, stopping, early stopping's restore, checkpoints of the best
epoch, validation_split, the History's best entry and plot, and the network's summary."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp.callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint
from gpubp.data import load_digits
from gpubp.errors import MissingExtraError
from gpubp.layers import BatchNorm, Dense, Dropout


def _digits(n=400):
    X, y = load_digits()
    return X[:n], y[:n]


def _layered(seed=0):
    """Dense, BatchNorm (running statistics) and Dropout: every kind of state a restore must cover."""
    return gpubp.MLP.from_layers(64, [Dense(32), BatchNorm(activation="relu"), Dropout(0.2), Dense(10)],
                                 loss="cross_entropy", seed=seed)


class Recorder(Callback):
    """Every call, in order, with copies of the logs."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs):
        self.calls.append(("batch_end", batch, logs["size"], logs["loss"]))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs):
        self.calls.append(("train_end", dict(logs)))


def test_callbacks_are_called_in_order_with_the_epochs_logs(backend):
    X, y = _digits(100)
    rec = Recorder()
    seen = []
    h = _layered().fit(X, y, epochs=3, batch_size=32, optimizer=gpubp.Adam(1e-3), callbacks=[rec],
                       callback=lambda e, logs: seen.append(e), validation_data=(X[:20], y[:20]), verbose=0,
                       initial_epoch=1)
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["train_begin"] + (["epoch_begin"] + ["batch_end"] * 4 + ["epoch_end"]) * 2 + ["train_end"]
    assert [c[1] for c in rec.calls if c[0] == "epoch_begin"] == [2, 3] == h.epochs == seen
    ends = [c[2] for c in rec.calls if c[0] == "epoch_end"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert [logs[key] for logs in ends] == h[key]
    assert rec.calls[-1][1] == ends[-1]
    # batch logs: the rows of the step and the mean loss of the epoch so far; the last batch's is the epoch's loss
    batches = [c for c in rec.calls if c[0] == "batch_end"]
    assert [b[1] for b in batches[:4]] == [0, 1, 2, 3] and [b[2] for b in batches[:4]] == [32, 32, 32, 4]
    assert batches[3][3] == pytest.approx(ends[0]["loss"], rel=1e-12)
    assert rec.net is not None and rec.params["epochs"] == 3 and rec.params["steps"] == 4
    assert rec.params["metrics"] == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]


def test_duck_typed_callbacks_and_lambda_callback(backend):
    X, y = _digits(64)

    class Plain:  # not a Callback: only the hooks it has are called
        def __init__(self):
            self.ends = []

        def on_epoch_end(self, epoch, logs):
            self.ends.append(epoch)

    plain, begun = Plain(), []
    gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0).fit(
        X, y, epochs=2, callbacks=[plain, LambdaCallback(on_epoch_begin=begun.append)], verbose=0)
    assert plain.ends == [1, 2] and begun == [1, 2]


@pytest.mark.parametrize("where", ["on_epoch_end", "on_batch_end", "on_epoch_begin"])
def test_stop_training_ends_after_the_current_epoch(backend, where):
    X, y = _digits(128)
    net = gpubp.MLP([64, 16, 10], loss="cross_entropy", seed=0)
    batches = []

    class Stop(Callback):
        def on_batch_end(self, batch, logs):
            batches.append(batch)
            if where == "on_batch_end" and self.net.epoch == 1 and batch == 1:
                self.net.stop_training = True

        def on_epoch_begin(self, epoch):
            if where == "on_epoch_begin" and epoch == 3:
                self.net.stop_training = True

        def on_epoch_end(self, epoch, logs):
            if where == "on_epoch_end" and epoch == 3:
                self.net.stop_training = True

    h = net.fit(X, y, epochs=10, batch_size=32, callbacks=[Stop()], verbose=0)
    last = 2 if where == "on_batch_end" else 3
    assert h.epochs == list(range(1, last + 1)) and net.epoch == last and len(h["loss"]) == last
    assert len(batches) == 4 * last  # the epoch in which the stop was asked ran to its end
    # the next fit starts afresh: the flag is reset
    assert len(net.fit(X, y, epochs=1, verbose=0)["loss"]) == 1


def test_early_stopping_restores_the_best_epoch_exactly(backend):
    """evaluate after fit equals the best val_loss of the History, bit for bit: the parameters and
    BatchNorm's running statistics are the best epoch's."""
    X, y = _digits(400)
    net = _layered()
    es = EarlyStopping(patience=3)
    # a learning rate high enough that the validation loss turns up again
    h = net.fit(X[:300], y[:300], epochs=60, batch_size=16, optimizer=gpubp.Adam(2e-2),
                validation_data=(X[300:], y[300:]), callbacks=[es], verbose=0)
    best = h.best("val_loss")
    assert es.stopped_epoch == h.epochs[-1] == best.epoch + 3 < 60
    assert es.best_epoch == best.epoch and es.best == best.value
    assert net.evaluate(X[300:], y[300:]) == (best.value, h["val_accuracy"][h.epochs.index(best.epoch)])
    assert net.epoch == h.epochs[-1]  # the epoch count goes on (the weights are the best epoch's)


def test_early_stopping_restores_at_the_end_too_and_keeps_weights_when_the_last_epoch_is_best(backend):
    X, y = _digits(200)
    net = gpubp.MLP([64, 16, 10], loss="cross_entropy", seed=1)
    es = EarlyStopping(monitor="val_accuracy", patience=100)
    h = net.fit(X[:150], y[:150], epochs=8, batch_size=16, optimizer=gpubp.Adam(5e-2),
                validation_data=(X[150:], y[150:]), callbacks=[es], verbose=0)
    assert es.stopped_epoch == 0 and es.mode == "max"
    best = h.best("val_accuracy")
    assert net.evaluate(X[150:], y[150:])[1] == best.value
    # restore_best_weights=False leaves the last epoch's weights
    net2 = gpubp.MLP([64, 16, 10], loss="cross_entropy", seed=1)
    h2 = net2.fit(X[:150], y[:150], epochs=8, batch_size=16, optimizer=gpubp.Adam(5e-2),
                  validation_data=(X[150:], y[150:]), callbacks=[EarlyStopping(patience=100, restore_best_weights=False)],
                  verbose=0)
    assert net2.evaluate(X[150:], y[150:])[0] == h2["val_loss"][-1]


def test_early_stopping_min_delta_and_patience_follow_keras():
    es = EarlyStopping(monitor="loss", patience=2, min_delta=0.1)
    net = gpubp.MLP([2, 2], seed=0)
    es.set_model(net)
    es.set_params({"metrics": ["loss"], "optimizer": None})
    es.on_train_begin()
    for epoch, loss in enumerate([1.0, 0.95, 0.85, 0.84, 0.83], start=1):
        es.on_epoch_end(epoch, {"loss": loss})
        if net.stop_training:
            break
    # 0.95 is not better than 1.0 by more than 0.1; 0.85 is; 0.84 and 0.83 are not: stop after two
    assert (es.best_epoch, es.best, es.stopped_epoch) == (3, 0.85, 5)


def test_model_checkpoint_holds_the_best_epoch(backend, tmp_path):
    X, y = _digits(400)
    net = _layered(seed=2)
    path = tmp_path / "best.npz"
    ck = ModelCheckpoint(path)
    opt = gpubp.Adam(2e-2)
    h = net.fit(X[:300], y[:300], epochs=12, batch_size=16, optimizer=opt, validation_data=(X[300:], y[300:]),
                callbacks=[ck], verbose=0)
    best = h.best("val_loss")
    assert best.epoch < 12  # the last epoch is not the best: the file is not the final network
    back = gpubp.load(path)
    assert back.epoch == best.epoch == ck.best_epoch and ck.saved == [str(path)] * len(ck.saved)
    assert back.evaluate(X[300:], y[300:])[0] == best.value
    opt_back = gpubp.load_optimizer(path, back)
    assert type(opt_back) is gpubp.Adam and 0 < opt_back.t < opt.t


def test_model_checkpoint_every_epoch_with_the_epoch_in_the_name(backend, tmp_path):
    X, y = _digits(64)
    net = gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0)
    ck = ModelCheckpoint(str(tmp_path / "ep{epoch:02d}-{loss:.3f}.npz"), save_best_only=False)
    h = net.fit(X, y, epochs=3, callbacks=[ck], verbose=0)  # no validation needed without save_best_only
    assert [p.rsplit("/", 1)[-1] for p in ck.saved] == [f"ep{e:02d}-{loss:.3f}.npz" for e, loss in zip(h.epochs, h.loss)]
    assert [gpubp.load(p).epoch for p in ck.saved] == [1, 2, 3]


@pytest.mark.parametrize("make", [lambda: EarlyStopping(monitor="val_los", patience=1),
                                  lambda: gpubp.schedules.ReduceLROnPlateau(monitor="val_los", patience=0)],
                         ids=["EarlyStopping", "ReduceLROnPlateau"])
def test_a_monitor_the_logs_never_hold_is_an_error_not_a_silent_callback(make):
    """A misspelt metric fails at the end of the first epoch, naming what the logs hold (left
    alone, the callback would never act, or stop training for want of improvement)."""
    X, y = _digits(64)
    with pytest.raises(ValueError, match=r"monitors 'val_los', which epoch 1's logs do not hold; they hold .*val_loss"):
        gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0).fit(X, y, epochs=5, validation_split=0.25,
                                                                 callbacks=[make()], verbose=0)


def test_model_checkpoint_refuses_a_monitor_the_logs_never_hold(tmp_path):
    X, y = _digits(64)
    ckpt = ModelCheckpoint(str(tmp_path / "m.npz"), monitor="val_acc")
    with pytest.raises(ValueError, match="monitors 'val_acc'.*val_accuracy"):
        gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0).fit(X, y, epochs=3, validation_split=0.25,
                                                                 callbacks=[ckpt], verbose=0)
    assert not (tmp_path / "m.npz").exists()


def test_a_metric_of_ones_own_is_monitored_when_an_earlier_callback_logs_it():
    """Custom metrics: a callback listed before EarlyStopping puts its value in the logs."""
    X, y = _digits(64)
    values = iter([5.0, 4.0, 4.5, 4.6, 1.0, 1.0])

    class Score(Callback):
        def on_epoch_end(self, epoch, logs):
            logs["score"] = next(values)

    stop = EarlyStopping(monitor="score", patience=2, mode="min", restore_best_weights=False)
    history = gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0).fit(X, y, epochs=6, callbacks=[Score(), stop],
                                                                       verbose=0)
    assert len(history["loss"]) == 4 and stop.best == 4.0 and stop.best_epoch == 2 and stop.stopped_epoch == 4


def test_validation_split_holds_out_the_last_rows_as_keras(backend):
    X, y = _digits(103)
    a = gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0)
    b = gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0)
    ha = a.fit(X, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    cut = int(103 * 0.75)  # Keras: split_at = int(n (1 - validation_split))
    hb = b.fit(X[:cut], y[:cut], epochs=2, batch_size=16, validation_data=(X[cut:], y[cut:]), verbose=0)
    assert dict(ha) == dict(hb)
    assert np.array_equal(a.backend.to_numpy(a.params), b.backend.to_numpy(b.params))


def test_history_best_epochs_and_copies():
    h = gpubp.History.empty()
    for epoch, (loss, acc) in enumerate([(1.0, 0.5), (0.5, 0.7), (0.5, 0.9), (0.7, 0.9)], start=4):
        h.append(epoch, {"loss": loss, "accuracy": acc, "val_loss": None, "val_accuracy": None, "lr": 0.1})
    assert h.best("loss") == (5, 0.5) and h.best("accuracy") == (6, 0.9) and h.best("loss", mode="max") == (4, 1.0)
    assert h.epochs == [4, 5, 6, 7] and h.loss == [1.0, 0.5, 0.5, 0.7]
    with pytest.raises(ValueError, match="val_loss"):
        h.best("val_loss")
    with pytest.raises(KeyError, match="accuracy, loss"):
        h.best("f1")
    import copy
    import pickle

    for twin in (copy.deepcopy(h), pickle.loads(pickle.dumps(h))):
        assert twin == h and twin.epochs == h.epochs and type(twin) is gpubp.History
    h.append(8, {"loss": 0.1, "extra": 3})  # a new entry: None for the epochs before
    assert h["extra"] == [None] * 4 + [3] and h["accuracy"][-1] is None


def test_history_plot_draws_learning_curves(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = _digits(64)
    net = gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0)
    h = net.fit(X, y, epochs=4, validation_split=0.25, lr_schedule=gpubp.schedules.StepLR(2), verbose=0)
    fig = h.plot(path=tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    titles = [ax.get_ylabel() for ax in fig.axes]
    assert titles == ["loss", "accuracy", "lr"]
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert list(lines["val_loss"].get_xdata()) == [1, 2, 3, 4] and list(lines["loss"].get_ydata()) == h.loss
    plt.close(fig)
    fig, ax = plt.subplots()
    assert gpubp.plot.history(h, metrics="loss", ax=ax) is fig and len(ax.get_lines()) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="f1"):
        h.plot(metrics=["f1"])


def test_history_plot_names_the_extra_when_matplotlib_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    h = gpubp.History.empty()
    h.append(1, {"loss": 1.0})
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(MissingExtraError, match=r"gpubp\[plot\]"):
        h.plot()


def test_summary_is_a_table_of_the_layers_and_print_stays_short():
    net = gpubp.MLP([64, 128, 64, 10], loss="cross_entropy", dropout=0.2, batch_norm=True, seed=0)
    lines = []
    net.summary(print_fn=lines.append)
    text = "\n".join(lines)
    rows = [line.split() for line in lines if line.startswith(("input", "dense", "batch_norm", "dropout"))]
    assert [r[0] for r in rows] == ["input", "dense_1", "batch_norm_1", "dropout_1", "dense_2", "batch_norm_2",
                                    "dropout_2", "dense_3"]
    counts = [int(r[-1].replace(",", "")) for r in rows]
    assert counts == [0, 64 * 128 + 128, 2 * 128, 0, 128 * 64 + 64, 2 * 64, 0, 64 * 10 + 10]
    assert sum(counts) == net.n_params and f"Total params: {net.n_params:,}" in text
    assert f"Non-trainable state (BatchNorm statistics): {3 * (128 + 64):,}" in text  # running mean, var, batch mean
    assert "(n, 128)" in text and "softmax" in text and "p=0.2" in text
    assert "\n" not in repr(net) and len(repr(net)) < 200


def test_the_readme_training_example_runs(tmp_path, monkeypatch, capsys):
    """The README's example (early stopping and a cosine schedule on the digits), as written."""
    import re
    from pathlib import Path

    pytest.importorskip("matplotlib").use("Agg")
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Training: callbacks"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the project's own documentation
    history, net = namespace["history"], namespace["net"]
    best = history.best("val_loss")
    assert 3 < len(history.epochs) < 100 and history.epochs[-1] == best.epoch + 8  # stopped early
    assert (tmp_path / "best.npz").exists() and (tmp_path / "curves.png").exists()
    assert gpubp.load(tmp_path / "best.npz").epoch == best.epoch
    assert net.evaluate(namespace["X_te"], namespace["y_te"])[1] > 0.95
    assert "Total params:" in capsys.readouterr().out


def test_model_checkpoint_keeps_its_best_across_a_resumed_fit(tmp_path):
    X, y = _digits(300)
    net = gpubp.MLP([64, 16, 10], loss="cross_entropy", seed=3)
    ck, opt = ModelCheckpoint(tmp_path / "best.npz"), gpubp.Adam(3e-2)
    h1 = net.fit(X[:200], y[:200], epochs=6, batch_size=16, optimizer=opt, validation_data=(X[200:], y[200:]),
                 callbacks=[ck], verbose=0)
    h2 = net.fit(X[:200], y[:200], epochs=12, batch_size=16, optimizer=opt, validation_data=(X[200:], y[200:]),
                 callbacks=[ck], verbose=0, initial_epoch=6)
    values = h1["val_loss"] + h2["val_loss"]
    best = int(np.argmin(values)) + 1
    assert ck.best_epoch == best and ck.best == values[best - 1]
    assert gpubp.load(tmp_path / "best.npz").epoch == best
    assert len(ck.saved) == sum(v < min(values[:i], default=np.inf) for i, v in enumerate(values))


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(callbacks=[EarlyStopping]), TypeError, r"callbacks\[0\] is the class EarlyStopping, not a callback object"),
    (dict(lr_schedule=gpubp.schedules.StepLR), TypeError, "lr_schedule is the class StepLR, not a schedule object"),
    (dict(lr_schedule=EarlyStopping(monitor="loss")), TypeError, r"got the callback EarlyStopping \(pass it in callbacks"),
])
def test_classes_and_other_callbacks_where_an_object_or_a_schedule_belongs(kwargs, error, message):
    X, y = _digits(32)
    net = gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0)
    before = net.params.copy()
    with pytest.raises(error, match=message):
        net.fit(X, y, epochs=2, verbose=0, **kwargs)
    assert np.array_equal(net.params, before) and net.epoch == 0


def test_verbose_takes_numpy_integers_like_every_other_integer(capsys):
    X, y = _digits(32)
    history = gpubp.MLP([64, 8, 10], loss="cross_entropy", seed=0).fit(X, y, epochs=np.int64(2), verbose=np.int64(2))
    assert len(history["loss"]) == 2 and capsys.readouterr().out.count("epoch ") == 2
