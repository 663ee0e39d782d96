"""Every bad input at the public boundary: the right exception, a message naming the argument,
and nothing changed (weights, optimizer state, shuffling generator, epoch counter)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import gpubp
from helpers import snapshot
from gpubp import validation
from gpubp.backend import cupy_problem
from gpubp.cli import main as cli_main
from gpubp.optim import make_optimizer

N0, M, N = 4, 3, 6
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(gpubp.__file__)))


def _good(loss: str, n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N0))
    if loss == "cross_entropy":
        Y = rng.integers(0, M, n)
    elif loss == "binary_cross_entropy":
        Y = rng.uniform(size=(n, M))
    else:
        Y = rng.normal(size=(n, M))
    return X, Y


def _trained(loss: str = "cross_entropy"):
    """A network and an Adam that has already stepped it (so the optimizer holds state)."""
    net = gpubp.MLP([N0, 5, M], loss=loss, seed=1)
    opt = gpubp.Adam(1e-2)
    X, Y = _good(loss)
    net.train_step(X, Y, opt)
    return net, opt


def _rejects(net, opt, call, exc, fragment):
    before = snapshot(net, opt)
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"message does not name {fragment!r}: {info.value}"
    assert snapshot(net, opt) == before, "a rejected call changed the network or the optimizer"
    return info.value


# ---- X: bad values, every entry point that reads X -----------------------------------------
BAD_X = [
    ("1-D", lambda X: X[0], ValueError),
    ("wrong width", lambda X: X[:, :3], ValueError),
    ("3-D", lambda X: X[:, :, None], ValueError),
    ("0 rows", lambda X: X[:0], ValueError),
    ("NaN", lambda X: np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), ValueError),
    ("+inf", lambda X: np.where(np.arange(X.size).reshape(X.shape) == 2, np.inf, X), ValueError),
    ("-inf", lambda X: np.full_like(X, -np.inf), ValueError),
    ("overflows float32", lambda X: X * 1e300, ValueError),
    ("object dtype", lambda X: X.astype(object), TypeError),
    ("strings", lambda X: X.astype(str), TypeError),
    ("complex", lambda X: X.astype(complex), TypeError),
    ("None", lambda X: None, TypeError),
    ("a str", lambda X: "data.csv", TypeError),
    ("ragged list", lambda X: [[1.0, 2.0, 3.0, 4.0], [1.0]], TypeError),
    ("generator", lambda X: (row for row in X), TypeError),
    ("iterator", lambda X: iter(X.tolist()), TypeError),
    ("dict", lambda X: {"X": X}, TypeError),
    ("set", lambda X: {1.0, 2.0}, TypeError),
    ("a class", lambda X: np.ndarray, TypeError),
]
ENTRY_X = {
    "forward": lambda net, opt, X, Y: net.forward(X),
    "predict": lambda net, opt, X, Y: net.predict(X),
    "predict_classes": lambda net, opt, X, Y: net.predict_classes(X),
    "loss_and_grads": lambda net, opt, X, Y: net.loss_and_grads(X, Y),
    "train_step": lambda net, opt, X, Y: net.train_step(X, Y, opt),
    "fit": lambda net, opt, X, Y: net.fit(X, Y, epochs=1, batch_size=2, optimizer=opt, progress=False),
    "evaluate": lambda net, opt, X, Y: net.evaluate(X, Y),
    "gradcheck": lambda net, opt, X, Y: gpubp.gradcheck(net, X, Y),
}


@pytest.mark.parametrize("entry", list(ENTRY_X))
@pytest.mark.parametrize("case,bad,exc", BAD_X, ids=[c[0] for c in BAD_X])
def test_bad_X_is_rejected_and_changes_nothing(backend, entry, case, bad, exc):
    if entry == "gradcheck" and case == "overflows float32":
        return  # gradcheck works on a float64 twin, where 1e300 is a legal input
    net, opt = _trained()
    X, Y = _good("cross_entropy")
    _rejects(net, opt, lambda: ENTRY_X[entry](net, opt, bad(X), Y), exc, "X")


@pytest.mark.parametrize("case,bad,exc", BAD_X, ids=[c[0] for c in BAD_X])
def test_bad_validation_X_is_rejected_before_training(backend, case, bad, exc):
    net, opt = _trained()
    X, Y = _good("cross_entropy")
    call = lambda: net.fit(X, Y, epochs=2, optimizer=opt, validation_data=(bad(X), Y), progress=False)  # noqa: E731
    _rejects(net, opt, call, exc, "validation_data[0]")


# ---- Y: bad targets, for every loss head that can meet them --------------------------------
def _nan_at(Y, i=1):
    Y = Y.astype(float).copy()
    Y.flat[i] = np.nan
    return Y


BAD_Y = [
    ("too few rows", "mse", lambda Y: Y[:-1], ValueError),
    ("too many rows", "mse", lambda Y: np.vstack([Y, Y]), ValueError),
    ("wrong width", "mse", lambda Y: Y[:, :2], ValueError),
    ("1-D for several outputs", "mse", lambda Y: Y[:, 0], ValueError),
    ("3-D", "sse", lambda Y: Y[:, :, None], ValueError),
    ("scalar", "sse", lambda Y: 1.0, ValueError),
    ("NaN", "mse", _nan_at, ValueError),
    ("inf", "sse", lambda Y: Y * np.inf, ValueError),
    ("object", "mse", lambda Y: Y.astype(object), TypeError),
    ("None", "mse", lambda Y: None, TypeError),
    ("strings", "cross_entropy", lambda Y: Y.astype(str), TypeError),
    ("label == m", "cross_entropy", lambda Y: np.where(np.arange(N) == 0, M, Y), ValueError),
    ("label > m", "cross_entropy", lambda Y: Y + 100, ValueError),
    ("negative label", "cross_entropy", lambda Y: np.where(np.arange(N) == 3, -1, Y), ValueError),
    ("fractional label", "cross_entropy", lambda Y: Y + 0.5, ValueError),
    ("NaN label", "cross_entropy", lambda Y: _nan_at(Y, 0)[:, None][:, 0], ValueError),
    ("labels vs rows", "cross_entropy", lambda Y: Y[:-2], ValueError),
    ("one-hot width", "cross_entropy", lambda Y: np.eye(M + 1)[Y], ValueError),
    ("BCE target > 1", "binary_cross_entropy", lambda Y: Y + 1.5, ValueError),
    ("BCE target < 0", "binary_cross_entropy", lambda Y: -Y - 0.1, ValueError),
]
ENTRY_Y = {
    "loss_and_grads": lambda net, opt, X, Y: net.loss_and_grads(X, Y),
    "train_step": lambda net, opt, X, Y: net.train_step(X, Y, opt),
    "fit": lambda net, opt, X, Y: net.fit(X, Y, epochs=1, batch_size=2, optimizer=opt, progress=False),
    "evaluate": lambda net, opt, X, Y: net.evaluate(X, Y),
}


@pytest.mark.parametrize("entry", list(ENTRY_Y))
@pytest.mark.parametrize("case,loss,bad,exc", BAD_Y, ids=[c[0] for c in BAD_Y])
def test_bad_Y_is_rejected_and_changes_nothing(backend, entry, case, loss, bad, exc):
    net, opt = _trained(loss)
    X, Y = _good(loss)
    err = _rejects(net, opt, lambda: ENTRY_Y[entry](net, opt, X, bad(Y)), exc, "Y")
    if "label" in case and "rows" not in case:
        assert f"[0, {M})" in str(err)


def test_label_message_reports_the_range_found(backend):
    net, opt = _trained()
    X, Y = _good("cross_entropy")
    err = _rejects(net, opt, lambda: net.loss_and_grads(X, np.where(np.arange(N) == 2, 7, Y)), ValueError, "Y")
    assert "got values in [" in str(err) and "7]" in str(err)


def test_finite_scan_can_be_switched_off(backend):
    net, _ = _trained("mse")
    X, Y = _good("mse")
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X must be finite"):
        net.forward(X)
    with validation.check_finite(False):
        A = net.backend.to_numpy(net.forward(X))
    assert np.isnan(A[0]).all() and np.isfinite(A[1:]).all()
    assert validation.CHECK_FINITE is True


# ---- hyper-parameters of fit / evaluate / train_step ----------------------------------------
def _fit(**kw):
    def call(net, opt, X, Y):
        args = dict(epochs=1, batch_size=2, optimizer=opt, progress=False)
        args.update(kw)
        return net.fit(X, Y, **args)
    return call


BAD_ARGS = [
    ("batch_size 0", _fit(batch_size=0), ValueError, "batch_size"),
    ("batch_size -3", _fit(batch_size=-3), ValueError, "batch_size"),
    ("batch_size 2.0", _fit(batch_size=2.0), TypeError, "batch_size"),
    ("batch_size True", _fit(batch_size=True), TypeError, "batch_size"),
    ("epochs -1", _fit(epochs=-1), ValueError, "epochs"),
    ("epochs 1.5", _fit(epochs=1.5), TypeError, "epochs"),
    ("epochs None", _fit(epochs=None), TypeError, "epochs"),
    ("initial_epoch > epochs", _fit(epochs=2, initial_epoch=3), ValueError, "initial_epoch"),
    ("initial_epoch -1", _fit(initial_epoch=-1), ValueError, "initial_epoch"),
    ("optimizer a name", _fit(optimizer="adam"), TypeError, "optimizer"),
    ("optimizer a class", _fit(optimizer=gpubp.Adam), TypeError, "optimizer"),
    ("train_step optimizer a class", lambda net, opt, X, Y: net.train_step(X, Y, gpubp.SGD), TypeError, "optimizer"),
    ("load optimizer a class", lambda net, opt, X, Y: gpubp.load(_saved(net, opt), optimizer=gpubp.Adam), TypeError,
     "optimizer"),
    ("batch_size a huge negative integer", _fit(batch_size=-10**5000), ValueError, "batch_size"),
    ("shuffle a str", _fit(shuffle="yes"), TypeError, "shuffle"),
    ("progress a str", _fit(progress="no"), TypeError, "progress"),
    ("verbose 3", _fit(verbose=3), ValueError, "verbose"),
    ("verbose True", _fit(verbose=True), TypeError, "verbose"),
    ("verbose 1 with progress False", _fit(verbose=1), ValueError, "progress"),
    ("callbacks not a list", _fit(callbacks=gpubp.callbacks.EarlyStopping()), TypeError, "callbacks"),
    ("callbacks without a hook", _fit(callbacks=[object()]), TypeError, "callbacks[0]"),
    ("validation_split 1", _fit(validation_split=1.0), ValueError, "validation_split"),
    ("validation_split -0.1", _fit(validation_split=-0.1), ValueError, "validation_split"),
    ("validation_split a str", _fit(validation_split="0.1"), TypeError, "validation_split"),
    ("validation_split leaving no training row", _fit(validation_split=0.99), ValueError, "validation_split"),
    ("validation_split and validation_data", lambda net, opt, X, Y: net.fit(
        X, Y, optimizer=opt, progress=False, validation_split=0.5, validation_data=(X, Y)), ValueError, "not both"),
    ("clip_norm 0", _fit(clip_norm=0.0), ValueError, "clip_norm"),
    ("clip_norm inf", _fit(clip_norm=float("inf")), ValueError, "clip_norm"),
    ("clip_norm a str", _fit(clip_norm="1"), TypeError, "clip_norm"),
    ("train_step clip_norm -1", lambda net, opt, X, Y: net.train_step(X, Y, opt, clip_norm=-1.0), ValueError, "clip_norm"),
    ("lr_schedule not a schedule", _fit(lr_schedule=0.1), TypeError, "lr_schedule"),
    ("early stopping on val_loss without validation data", _fit(callbacks=[gpubp.callbacks.EarlyStopping()]),
     ValueError, "val_loss"),
    ("checkpoint into a missing folder", _fit(callbacks=[gpubp.callbacks.ModelCheckpoint(
        "/nonexistent-gpubp-folder/x.npz", monitor="loss")]), FileNotFoundError, "nonexistent"),
    ("cosine schedule reaching lr 0", _fit(epochs=4, lr_schedule=gpubp.schedules.CosineAnnealingLR(2)),
     ValueError, "eta_min"),
    ("callback not callable", _fit(callback=3), TypeError, "callback"),
    ("validation_data not a pair", lambda net, opt, X, Y: net.fit(X, Y, optimizer=opt, validation_data=(X,)),
     TypeError, "validation_data"),
    ("validation labels out of range", lambda net, opt, X, Y: net.fit(X, Y, optimizer=opt, progress=False,
                                                                        validation_data=(X, Y + M)),
     ValueError, "validation_data[1]"),
    ("evaluate batch_size 0", lambda net, opt, X, Y: net.evaluate(X, Y, batch_size=0), ValueError, "batch_size"),
    ("train_step optimizer None", lambda net, opt, X, Y: net.train_step(X, Y, None), TypeError, "optimizer"),
    ("train_step optimizer of another network",
     lambda net, opt, X, Y: net.train_step(X, Y, _trained_other()), ValueError, "optimizer"),
    ("fit optimizer of another network",
     lambda net, opt, X, Y: net.fit(X, Y, optimizer=_trained_other(), progress=False), ValueError, "optimizer"),
    ("gradcheck eps 0", lambda net, opt, X, Y: gpubp.gradcheck(net, X, Y, eps=0.0), ValueError, "eps"),
    ("gradcheck max_params 0", lambda net, opt, X, Y: gpubp.gradcheck(net, X, Y, max_params=0), ValueError, "max_params"),
    ("gradcheck max_params str", lambda net, opt, X, Y: gpubp.gradcheck(net, X, Y, max_params="9"), TypeError, "max_params"),
]


def _saved(net, opt):
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "m.npz")
    net.save(path, optimizer=opt)
    return path


def _trained_other():
    other = gpubp.MLP([N0, 7, M], loss="cross_entropy", seed=2)
    opt = gpubp.Adam()
    opt.step(other)
    return opt


@pytest.mark.parametrize("case,call,exc,fragment", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_are_rejected_and_change_nothing(backend, case, call, exc, fragment):
    net, opt = _trained()
    X, Y = _good("cross_entropy")
    _rejects(net, opt, lambda: call(net, opt, X, Y), exc, fragment)


def test_epochs_zero_trains_nothing(backend):
    net, opt = _trained()
    X, Y = _good("cross_entropy")
    before = snapshot(net, opt)
    history = net.fit(X, Y, epochs=0, optimizer=opt, progress=False)
    assert history["loss"] == [] and snapshot(net, opt) == before


# ---- construction, optimizers, backend names ------------------------------------------------
BAD_CONSTRUCTION = [
    ("one size", dict(sizes=[3]), ValueError, "sizes", None),
    ("no sizes", dict(sizes=[]), ValueError, "sizes", None),
    ("size 0", dict(sizes=[3, 0]), ValueError, "sizes[1]", None),
    ("negative size", dict(sizes=[3, -2, 1]), ValueError, "sizes[1]", None),
    ("fractional size", dict(sizes=[3, 2.5]), TypeError, "sizes[1]", None),
    ("sizes a str", dict(sizes="34"), TypeError, "sizes", None),
    ("sizes an int", dict(sizes=3), TypeError, "sizes", None),
    ("unknown activation", dict(activation="swish2"), ValueError, "activation", "relu"),
    ("activation None", dict(activation=None), TypeError, "activation", None),
    ("activation list length", dict(activation=["relu", "tanh"]), ValueError, "activation", None),
    ("softmax hidden", dict(activation="softmax"), ValueError, "activation", None),
    ("unknown output_activation", dict(output_activation="maxout"), ValueError, "output_activation", "sigmoid"),
    ("unknown loss", dict(loss="hinge"), ValueError, "loss", "cross_entropy"),
    ("loss not a str", dict(loss=3), TypeError, "loss", None),
    ("loss/output mismatch", dict(loss="cross_entropy", output_activation="sigmoid"), ValueError, "output_activation", None),
    ("dtype float16", dict(dtype="float16"), ValueError, "dtype", "float32"),
    ("dtype int", dict(dtype=int), ValueError, "dtype", "float64"),
    ("dtype nonsense", dict(dtype="bogus"), TypeError, "dtype", None),
    ("seed negative", dict(seed=-1), ValueError, "seed", None),
    ("seed float", dict(seed=1.5), TypeError, "seed", None),
    ("seed 2**128", dict(seed=2**128), ValueError, "seed", None),
    ("bias str", dict(bias="yes"), TypeError, "bias", None),
]


@pytest.mark.parametrize("case,kwargs,exc,fragment,lists", BAD_CONSTRUCTION, ids=[c[0] for c in BAD_CONSTRUCTION])
def test_bad_construction(backend, case, kwargs, exc, fragment, lists):
    args = dict(sizes=[4, 5, 3])
    args.update(kwargs)
    with pytest.raises(exc) as info:
        gpubp.MLP(**args)
    assert fragment in str(info.value)
    if lists:
        assert lists in str(info.value), "the message should list the valid names"


BAD_OPTIMIZERS = [
    ("SGD lr 0", lambda: gpubp.SGD(lr=0.0), ValueError, "lr"),
    ("SGD lr negative", lambda: gpubp.SGD(lr=-0.1), ValueError, "lr"),
    ("SGD lr nan", lambda: gpubp.SGD(lr=float("nan")), ValueError, "lr"),
    ("SGD lr inf", lambda: gpubp.SGD(lr=float("inf")), ValueError, "lr"),
    ("SGD lr str", lambda: gpubp.SGD(lr="0.1"), TypeError, "lr"),
    ("SGD momentum 1", lambda: gpubp.SGD(momentum=1.0), ValueError, "momentum"),
    ("SGD momentum negative", lambda: gpubp.SGD(momentum=-0.5), ValueError, "momentum"),
    ("SGD nesterov without momentum", lambda: gpubp.SGD(nesterov=True), ValueError, "nesterov"),
    ("SGD weight_decay nan", lambda: gpubp.SGD(weight_decay=float("nan")), ValueError, "weight_decay"),
    ("Adam lr 0", lambda: gpubp.Adam(lr=0.0), ValueError, "lr"),
    ("Adam lr -inf", lambda: gpubp.Adam(lr=-float("inf")), ValueError, "lr"),
    ("Adam beta 1", lambda: gpubp.Adam(betas=(0.9, 1.0)), ValueError, "betas"),
    ("Adam betas scalar", lambda: gpubp.Adam(betas=0.9), TypeError, "betas"),
    ("Adam eps 0", lambda: gpubp.Adam(eps=0.0), ValueError, "eps"),
    ("Adam lr 10**400", lambda: gpubp.Adam(lr=10**400), ValueError, "lr"),
    ("SGD lr -10**5000", lambda: gpubp.SGD(lr=-10**5000), ValueError, "lr"),
    ("SGD weight_decay 10**400", lambda: gpubp.SGD(weight_decay=10**400), ValueError, "weight_decay"),
    ("Adam betas of 10**400", lambda: gpubp.Adam(betas=(10**400, 0.9)), ValueError, "betas"),
    ("unknown optimizer", lambda: make_optimizer("rmsprop"), ValueError, "sgd"),
]


@pytest.mark.parametrize("case,call,exc,fragment", BAD_OPTIMIZERS, ids=[c[0] for c in BAD_OPTIMIZERS])
def test_bad_optimizer_settings(case, call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value)


def _beyond_float_range_cases():
    from gpubp.callbacks import EarlyStopping
    from gpubp.layers import BatchNorm, Dropout
    from gpubp.schedules import CosineAnnealingLR, ReduceLROnPlateau, StepLR

    big = 10**400
    return [
        ("MLP dropout", lambda: gpubp.MLP([3, 4, 2], dropout=big), "p must be a finite number"),
        ("Dropout p", lambda: Dropout(big), "p must be a finite number"),
        ("BatchNorm eps", lambda: BatchNorm(eps=big), "eps must be a finite number"),
        ("BatchNorm momentum", lambda: BatchNorm(momentum=-big), "momentum must be a finite number"),
        ("StepLR gamma", lambda: StepLR(2, gamma=big), "gamma must be a finite number"),
        ("CosineAnnealingLR eta_min", lambda: CosineAnnealingLR(5, eta_min=big), "eta_min must be a finite number"),
        ("ReduceLROnPlateau factor", lambda: ReduceLROnPlateau(factor=big), "factor must be a finite number"),
        ("ReduceLROnPlateau min_lr", lambda: ReduceLROnPlateau(min_lr=big), "min_lr must be a finite number"),
        ("EarlyStopping min_delta", lambda: EarlyStopping(min_delta=big), "min_delta must be a finite number"),
    ]


@pytest.mark.parametrize("case", range(9))
def test_integers_beyond_the_float_range_name_the_argument(case):
    """10**400 converts to no float: a ValueError naming the argument, not a bare OverflowError."""
    name, call, message = _beyond_float_range_cases()[case]
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("name,exc", [("tpu", ValueError), ("", ValueError), (3, TypeError), (None, TypeError)])
def test_bad_backend_name(name, exc):
    before = gpubp.get_backend()
    with pytest.raises(exc) as info:
        gpubp.set_backend(name)
    assert "backend" in str(info.value)
    if exc is ValueError:
        assert "numpy" in str(info.value) and "cupy" in str(info.value)
    assert gpubp.get_backend() is before


# ---- NumPy and CuPy arrays in one call -----------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(cupy_problem() is not None, reason="needs a CUDA GPU (CuPy backend)")
def test_arrays_of_the_other_backend_are_moved_once():
    import cupy

    X, Y = _good("cross_entropy")
    results = {}
    for name in ("numpy", "cupy"):
        with gpubp.use_backend(name):
            net = gpubp.MLP([N0, 5, M], loss="cross_entropy", dtype="float64", seed=1)
            mixed = (cupy.asarray(X), Y) if name == "numpy" else (X, cupy.asarray(Y))
            C, _ = net.loss_and_grads(*mixed)
            A = net.forward(cupy.asarray(X) if name == "numpy" else X)
            assert isinstance(A, net.backend.xp.ndarray)
            net.fit(*mixed, epochs=1, batch_size=4, optimizer=gpubp.SGD(0.1), progress=False,
                    validation_data=(X, cupy.asarray(Y)))
            results[name] = (C, net.backend.to_numpy(net.params))
    assert abs(results["numpy"][0] - results["cupy"][0]) <= 1e-12 * abs(results["numpy"][0])
    np.testing.assert_allclose(results["numpy"][1], results["cupy"][1], rtol=1e-9, atol=1e-12)


# ---- the command line -----------------------------------------------------------------------
BAD_CLI = [
    (["train", "--epochs", "-1"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--save", "/no/such/folder/model.npz"], "--save"),
    (["train", "--optimizer", "sgd", "--momentum", "1.5", "--epochs", "1"], "momentum"),
    (["train", "--test-fraction", "1.5", "--epochs", "1"], "fraction"),
]


@pytest.mark.parametrize("argv,fragment", BAD_CLI, ids=[" ".join(a[1:]) for a, _ in BAD_CLI])
def test_cli_reports_bad_input_in_one_line(argv, fragment, capsys):
    with gpubp.use_backend("numpy"):
        code = cli_main(argv + ["--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err and "Traceback" not in err
    assert err.strip().startswith("gpubp train: error:") and len(err.strip().splitlines()) == 1


def test_cli_divergence_is_an_error_without_traceback(capsys):
    with gpubp.use_backend("numpy"):
        code = cli_main(["train", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "diverged at epoch 1, batch" in err and "Traceback" not in err


def test_cli_process_exits_nonzero_without_traceback():
    env = dict(os.environ, GPUBP_BACKEND="numpy", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "gpubp.cli", "train", "--batch-size", "0"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 2
    assert "batch-size" in proc.stderr and "Traceback" not in proc.stderr


NAME_TABLES = [
    ("activation[0]", lambda name: gpubp.MLP([2, 2, 2], activation=[name]), gpubp.ACTIVATIONS),
    ("output_activation", lambda name: gpubp.MLP([2, 2], output_activation=name), gpubp.ACTIVATIONS),
    ("loss", lambda name: gpubp.MLP([2, 2], loss=name), gpubp.LOSSES),
    ("optimizer", lambda name: make_optimizer(name), gpubp.optim.OPTIMIZERS),
    ("backend", lambda name: gpubp.use_backend(name).__enter__(), gpubp.backend.BACKENDS),
]


@pytest.mark.parametrize("argument,call,table", NAME_TABLES, ids=[t[0] for t in NAME_TABLES])
def test_every_name_table_refuses_alike(argument, call, table):
    with pytest.raises(ValueError) as info:
        call("no-such-name")
    assert str(info.value) == f"unknown {argument} 'no-such-name': expected one of {', '.join(table)}"
    with pytest.raises(TypeError) as info:
        call(7)
    assert str(info.value).startswith(f"{argument} must be a")
    assert f"name (str), one of {', '.join(table)}; got int 7" in str(info.value)


@pytest.mark.parametrize("make, name, message", [
    (lambda: gpubp.AdamW(), "learning_rate", r"AdamW has no hyper-parameter 'learning_rate' \(gpubp's name: lr\)"),
    (lambda: gpubp.Adam(), "epsilon", r"gpubp's name: eps"),
    (lambda: gpubp.Adam(), "momentum", "Adam has no hyper-parameter 'momentum'; it has lr, betas"),
    (lambda: gpubp.SGD(0.1), "betas", "SGD has no hyper-parameter 'betas'; it has lr, momentum"),
])
def test_another_optimizers_or_librarys_hyper_parameter_is_refused(make, name, message):
    """Assigned silently it would change nothing (opt.learning_rate = ... as in Keras)."""
    opt = make()
    before = opt.get_config()
    with pytest.raises(AttributeError, match=message):
        setattr(opt, name, 0.5)
    assert opt.get_config() == before and name not in vars(opt)
    opt.note = "kept"  # an attribute of the user's own is still an attribute
    assert opt.note == "kept"


def test_counters_a_checkpoint_cannot_store_are_refused(tmp_path):
    opt = gpubp.Adam()
    with pytest.raises(ValueError, match="t must be an integer below 2\\^63"):
        opt.t = 2**63
    assert opt.t == 0
    net = gpubp.MLP([3, 4, 2], loss="cross_entropy", seed=0)
    with pytest.raises(ValueError, match="epochs must be an integer below 2\\^63"):
        net.fit(np.ones((4, 3)), np.array([0, 1, 0, 1]), epochs=2**63, initial_epoch=2**63 - 1, verbose=0)
    net.train_step(np.ones((4, 3)), np.array([0, 1, 0, 1]), opt)
    opt.t = 2**63 - 1  # the largest a checkpoint holds: saved and loaded
    net.save(tmp_path / "m.npz", optimizer=opt)
    assert gpubp.load_optimizer(tmp_path / "m.npz", gpubp.load(tmp_path / "m.npz")).t == 2**63 - 1


@pytest.mark.parametrize("sizes", [[3, 2**62], [2**31, 2**31]])
def test_sizes_beyond_any_address_space_are_out_of_memory_naming_sizes_and_bytes(sizes):
    """NumPy refuses such arrays with a ValueError of its own ("array is too big", "Maximum
    allowed dimension exceeded"): the same error as any allocation that fails."""
    with pytest.raises(gpubp.OutOfMemoryError, match=r"building a network of sizes .* parameters need [\d,]+ bytes"):
        gpubp.MLP(sizes)


def test_the_hyper_parameter_object_is_replaced_only_by_one_of_its_class():
    from gpubp.optim import AdamHyperparameters, SGDHyperparameters

    opt = gpubp.Adam(1e-3)
    for bad in (None, SGDHyperparameters(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)):
        with pytest.raises(TypeError, match="Adam.hyper must be a AdamHyperparameters object"):
            opt.hyper = bad
    assert opt.lr == 1e-3
    with pytest.raises(TypeError, match="missing hyper-parameter 'betas'"):
        AdamHyperparameters(lr=0.1)
    opt.hyper = AdamHyperparameters(lr=0.2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0)
    assert opt.lr == 0.2 and opt.betas == (0.9, 0.99)
