"""Training with Dropout and BatchNorm: fit, the divergence guard, checkpoints and resuming, the
command line, and the NumPy step's memory."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gpubp
from gpubp import cli, guard
from gpubp.data import load_digits
from gpubp.layers import BatchNorm, Dense, Dropout

pytestmark = pytest.mark.timeout(120)


def _digits(n=300):
    X, y = load_digits()
    return X[:n], y[:n]


def _layered(seed=0, dtype="float32"):
    return gpubp.MLP.from_layers(64, [Dropout(0.1), Dense(32, None), BatchNorm(activation="relu"), Dropout(0.3),
                                      Dense(16, "tanh"), Dropout(0.2), Dense(10)], loss="cross_entropy", seed=seed,
                                 dtype=dtype)


def _state(net, opt=None):
    """Everything a training step changes: parameters, layer state, stream positions, optimizer."""
    to_np = net.backend.to_numpy
    opt_state = {} if opt is None else {k: to_np(v).copy() for k, v in opt.state.items()}
    return (to_np(net.params).copy(), to_np(net.state).copy(), net.host_state(), opt_state,
            None if opt is None else opt.t)


def _assert_same(a, b):
    (p1, s1, h1, o1, t1), (p2, s2, h2, o2, t2) = a, b
    assert p1.tobytes() == p2.tobytes() and s1.tobytes() == s2.tobytes() and h1 == h2 and t1 == t2
    assert o1.keys() == o2.keys() and all(o1[k].tobytes() == o2[k].tobytes() for k in o1)


def test_batch_norm_needs_two_rows_in_training_and_a_refusal_changes_nothing(backend):
    X, y = _digits(5)
    net, opt = _layered(), gpubp.Adam()
    net.train_step(X, y, opt)
    before = _state(net, opt)
    for call in (lambda: net.train_step(X[:1], y[:1], opt), lambda: net.loss_and_grads(X[:1], y[:1]),
                 lambda: net.forward(X[:1], training=True)):
        with pytest.raises(ValueError, match="at least 2 rows"):
            call()
        _assert_same(_state(net, opt), before) if backend.name == "numpy" else None
    assert net.forward(X[:1]).shape == (1, 10)  # inference uses the running statistics
    with pytest.raises(ValueError, match="batch_size=4 over 9 rows makes a step of 1 row"):
        net.fit(X[:9] if len(X) >= 9 else np.tile(X, (2, 1))[:9], np.tile(y, 2)[:9], epochs=1, batch_size=4,
                optimizer=opt, progress=False)
    if backend.name == "numpy":
        _assert_same(_state(net, opt), before)


def test_same_seed_same_run_with_dropout_and_batch_norm(backend):
    X, y = _digits()
    runs = []
    for seed in (3, 3, 4):
        net, opt = _layered(seed), gpubp.Adam(3e-3)
        h = net.fit(X, y, epochs=2, batch_size=32, optimizer=opt, progress=False, validation_data=(X[:40], y[:40]))
        runs.append((_state(net, opt), h))
    (a, ha), (b, hb), (c, _) = runs
    if backend.name == "numpy":
        _assert_same(a, b)
        assert ha == hb
    else:
        np.testing.assert_allclose(b[0], a[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a[0], c[0])
    assert ha["loss"][-1] < ha["loss"][0]


def test_resume_with_dropout_and_batch_norm_continues_exactly(backend, tmp_path):
    X, y = _digits()
    path = tmp_path / "mid.npz"
    net, opt = _layered(7), gpubp.SGD(0.05, momentum=0.9)

    def save_at_1(epoch, logs):
        if epoch == 1:
            net.save(path, optimizer=opt)

    full = net.fit(X, y, epochs=3, batch_size=25, optimizer=opt, callback=save_at_1, progress=False)
    back = gpubp.load(path)
    opt2 = gpubp.load_optimizer(path, back)
    assert [type(a) for a in back.layers] == [type(a) for a in net.layers]
    assert back.layers[1].calls == 12 and back.layers[3].passes == 12  # 300 rows / 25: 12 steps done
    rest = back.fit(X, y, epochs=3, batch_size=25, optimizer=opt2, initial_epoch=back.epoch, progress=False)
    if backend.name == "numpy":
        _assert_same(_state(back, opt2), _state(net, opt))
        assert rest["loss"] == full["loss"][1:]
    else:
        np.testing.assert_allclose(back.backend.to_numpy(back.params), net.backend.to_numpy(net.params), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("check_every", [1, 4, 32])
def test_divergence_restores_layer_state_and_streams(backend, monkeypatch, check_every):
    """The guard puts back the parameters, the running statistics, the dropout streams and the
    optimizer of the newest finite step, as a plain loop of train_step calls finds it."""
    monkeypatch.setattr(guard, "CHECK_EVERY", check_every)
    X, y = _digits(400)
    Y = np.eye(10, dtype=np.float32)[y] * 100

    def make():
        return gpubp.MLP([64, 32, 10], activation="identity", loss="mse", seed=3, dropout=0.2, batch_norm=True)

    def raise_lr(epoch, logs, box):
        box[0].lr = 1e30

    net, opt = make(), gpubp.SGD(0.01, momentum=0.9)
    box = [opt]
    with pytest.raises(gpubp.NonFiniteError) as info:
        net.fit(X, Y, epochs=3, batch_size=16, optimizer=opt, callback=lambda e, logs: raise_lr(e, logs, box),
                progress=False)
    err = info.value
    got = _state(net, opt)
    ref, ref_opt = make(), gpubp.SGD(0.01, momentum=0.9)
    n, states = len(X), []
    for epoch in range(1, err.epoch + 1):
        order = ref.rng.permutation(n)
        for b, s in enumerate(range(0, n, 16)):
            if epoch == err.epoch:
                states.append(_state(ref, ref_opt))
                if b == err.batch - 1:
                    break
            with np.errstate(all="ignore"):
                ref.train_step(X[order[s : s + 16]], Y[order[s : s + 16]], ref_opt)
        ref_opt.lr = 1e30
    want = states[max(err.batch - 2, 0)]
    if backend.name == "numpy":
        _assert_same(got, want)
    else:
        np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)
        assert got[2] == want[2]


def test_a_numpy_step_allocates_no_arrays_after_the_first_batch():
    """Dropout masks, BatchNorm statistics and every pass of the step go to reused buffers: what a
    step allocates at its peak is far below one activation array (NumPy's broadcasting ufuncs take
    a fixed 32 KiB iterator buffer for a moment) and grows with n by a few numbers per row (the
    loss head's per-sample values), not by rows of activations."""
    rng = np.random.default_rng(0)
    peaks = []
    for n in (256, 1024):
        X = rng.normal(size=(n, 64)).astype(np.float32)
        y = rng.integers(0, 10, n)
        with gpubp.use_backend("numpy"):
            net = gpubp.MLP([64, 128, 64, 10], loss="cross_entropy", dropout=0.3, batch_norm=True, seed=0)
            opt = gpubp.Adam()
            for _ in range(3):
                net.train_batch(X, y, opt)
            tracemalloc.start()
            try:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                for _ in range(3):
                    net.train_batch(X, y, opt)
                peaks.append(tracemalloc.get_traced_memory()[1] - base)
            finally:
                tracemalloc.stop()
    assert max(peaks) < 64 * 1024, peaks  # one activation array at 1024 rows: 512 KiB
    per_row = (peaks[1] - peaks[0]) / (1024 - 256)
    assert per_row < 16, f"a step allocates {per_row:.1f} bytes more per row: {peaks}"  # a row of A: 512 bytes


def test_cli_trains_with_dropout_and_batch_norm(tmp_path, capsys):
    path = tmp_path / "net.npz"
    argv = ["train", "--no-progress", "--backend", "numpy", "--hidden", "48,32", "--dropout", "0.2", "--batch-norm",
            "--epochs", "8", "--save", str(path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "dropout=0.2, batch_norm=True" in out
    acc = float(out.split("test accuracy ")[-1].split()[0])
    assert acc > 0.9
    with gpubp.use_backend("numpy"):
        net = gpubp.load(path)
    kinds = [type(layer).__name__ for layer in net.layers[1:]]
    assert kinds == ["Dense", "BatchNorm", "Dropout", "Dense", "BatchNorm", "Dropout", "Dense"]
    assert net.layers[2].passes > 0 and np.any(net.layers[2].running_var != 1)
    assert cli.main(["train", "--no-progress", "--backend", "numpy", "--dropout", "1.5"]) == 2
    assert "--dropout must lie in [0, 1)" in capsys.readouterr().err


# ---- untrusted checkpoints of layer networks ---------------------------------------------------
def _forged(tmp_path, path, change_meta=None, change_arrays=None):
    """A copy of checkpoint ``path`` with its metadata and arrays changed and a checksum to match."""
    import json

    from gpubp import checkpoint

    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(members.pop("__meta__").tobytes().decode())
    members.pop("__checksum__")
    if change_meta is not None:
        change_meta(meta)
    if change_arrays is not None:
        change_arrays(members)
    text = json.dumps(meta)
    out = tmp_path / "forged.npz"
    with open(out, "wb") as f:
        np.savez(f, __meta__=np.frombuffer(text.encode(), dtype=np.uint8),
                 __checksum__=np.frombuffer(checkpoint._digest(text, members).encode(), dtype=np.uint8), **members)
    return out


@pytest.mark.parametrize("what,change_meta,change_arrays,fragment", [
    ("a drop probability of 1.5", lambda m: m["config"]["layers"][0].update(p=1.5), None, "p must lie in [0, 1)"),
    ("an unknown layer type", lambda m: m["config"]["layers"][1].update(type="Conv2d"), None, "unknown layer type"),
    ("a layer setting no layer has", lambda m: m["config"]["layers"][2].update(units=3), None, "units"),
    ("a momentum of 2", lambda m: m["config"]["layers"][2].update(momentum=2.0), None, "momentum"),
    ("no state array", None, lambda a: a.pop("state"), "'state'"),
    ("a state array too short", None, lambda a: a.update(state=a["state"][:-1]), "'state'"),
    ("a negative pass count", lambda m: m["host_state"]["layers"][0].update(calls=-1), None, "pass count"),
    ("host state for too few layers", lambda m: m["host_state"].update(layers=[{}]), None, "one mapping per layer"),
    ("host state that is a list", lambda m: m.update(host_state=[1, 2]), None, "host_state"),
    ("a format version from the future", lambda m: m.update(version=3), None, "version 3"),
])
def test_forged_layer_checkpoints_are_refused(tmp_path, what, change_meta, change_arrays, fragment):
    X, y = _digits(100)
    net, opt = _layered(2), gpubp.SGD(0.1)
    net.fit(X, y, epochs=1, batch_size=25, optimizer=opt, progress=False)
    path = tmp_path / "good.npz"
    net.save(path, optimizer=opt)
    with gpubp.use_backend("numpy"):
        back = gpubp.load(path)
    _assert_same(_state(back), _state(net))
    forged = _forged(tmp_path, path, change_meta, change_arrays)
    with pytest.raises(gpubp.CheckpointError) as info:
        with gpubp.use_backend("numpy"):
            gpubp.load(forged)
    assert str(forged) in str(info.value) and fragment in str(info.value), (what, str(info.value))


def test_host_state_is_checked_before_any_layer_changes():
    net = _layered(0)
    before = net.host_state()
    bad = {"dropout_seed": 5, "layers": [{"calls": 3}, {}, {"passes": -1}, {}, {}, {}, {}]}
    with pytest.raises(ValueError, match="pass count"):
        net.set_host_state(bad)
    assert net.host_state() == before
    for seed in (-1, 2**64, 1.5, True):
        with pytest.raises(ValueError, match="dropout seed"):
            net.set_host_state({"dropout_seed": seed, "layers": before["layers"]})
    assert net.host_state() == before
