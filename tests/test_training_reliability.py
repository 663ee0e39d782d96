"""fit under stress: divergence stops it with the weights of the last finite step, the same seed
gives the same numbers, streaming from host memory gives the same numbers as a resident data
set, the data set is never copied per epoch, and running out of memory (or Ctrl-C) leaves a
consistent network."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gpubp
from helpers import snapshot
from gpubp import guard, memory
from gpubp.data import load_digits

pytestmark = pytest.mark.timeout(120)


def _digits(n=400):
    X, y = load_digits()
    return X[:n], y[:n]


def _reference_divergence(net, opt, X, Y, epochs, batch_size, callback):
    """The plain loop, one validated train_step at a time, keeping every state: the (epoch,
    batch) of the first step whose loss or gradient is not finite, and the state before the
    step ahead of it (the newest state with a finite loss and gradient; the epoch's first
    state when the first batch fails)."""
    n = X.shape[0]
    xp = net.backend.xp
    for epoch in range(1, epochs + 1):
        order = net.rng.permutation(n)
        states = []
        for b, s in enumerate(range(0, n, batch_size)):
            idx = order[s : s + batch_size]
            states.append(snapshot(net, opt))
            with np.errstate(all="ignore"):
                C = net.train_step(X[idx], Y[idx], opt)
            if not (bool(xp.isfinite(C)) and bool(xp.isfinite(net.grads).all())):
                return epoch, b + 1, states[max(b - 1, 0)]
        callback(epoch, None)
    raise AssertionError("the reference run did not diverge")


@pytest.mark.parametrize("check_every", [1, 4, 32])
@pytest.mark.parametrize("lr2", [0.025, 0.04, 1e30])
def test_divergence_stops_fit_at_the_last_finite_step(backend, monkeypatch, check_every, lr2):
    monkeypatch.setattr(guard, "CHECK_EVERY", check_every)
    X, y = _digits()
    Y = np.eye(10, dtype=np.float32)[y] * 100
    runs = {}
    for kind in ("fit", "reference"):
        net = gpubp.MLP([64, 32, 10], activation="identity", loss="mse", seed=3)
        opt = gpubp.SGD(0.01, momentum=0.9)

        def raise_lr(epoch, logs, opt=opt):  # a stable first epoch, then a rate that diverges
            opt.lr = lr2

        if kind == "fit":
            with pytest.raises(gpubp.NonFiniteError) as info:
                net.fit(X, Y, epochs=4, batch_size=16, optimizer=opt, callback=raise_lr, progress=False)
            err = info.value
            assert isinstance(err, FloatingPointError)
            assert f"epoch {err.epoch}, batch {err.batch} of 25" in str(err)
            assert f"before batch {max(err.batch - 1, 1)}," in str(err)
            runs[kind] = (err.epoch, err.batch, snapshot(net, opt))
            assert net.epoch == err.epoch - 1
        else:
            runs[kind] = _reference_divergence(net, opt, X, Y, 4, 16, raise_lr)
    (e1, b1, s1), (e2, b2, s2) = runs["fit"], runs["reference"]
    assert (e1, b1) == (e2, b2) and e1 == 2
    assert s1.t == s2.t and np.isfinite(s1.params).all()
    if backend.name == "numpy":
        assert s1.params.tobytes() == s2.params.tobytes()
        assert s1.state["velocity"].tobytes() == s2.state["velocity"].tobytes()
    else:
        np.testing.assert_allclose(s1.params, s2.params, rtol=1e-4, atol=1e-5)


def test_training_goes_on_after_divergence_with_a_lower_rate(backend):
    X, y = _digits()
    net = gpubp.MLP([64, 32, 10], loss="cross_entropy", seed=0)
    opt = gpubp.SGD(1e30)
    with pytest.raises(gpubp.NonFiniteError) as info:
        net.fit(X, y, epochs=2, batch_size=32, optimizer=opt, progress=False)
    assert info.value.epoch == 1 and info.value.batch >= 1
    opt.lr = 0.05
    history = net.fit(X, y, epochs=3, batch_size=32, optimizer=opt, progress=False, initial_epoch=info.value.epoch - 1)
    assert len(history["loss"]) == 3 and np.isfinite(history["loss"]).all()
    assert history["loss"][-1] < history["loss"][0]


def test_adam_divergence_restores_moments(backend):
    X, y = _digits()
    Y = np.eye(10)[y]
    net = gpubp.MLP([64, 16, 10], activation="identity", loss="mse", seed=1)
    opt = gpubp.Adam(1e20)
    with pytest.raises(gpubp.NonFiniteError) as info:
        net.fit(X, Y, epochs=1, batch_size=16, optimizer=opt, progress=False)
    assert info.value.epoch == 1 and info.value.batch >= 2
    assert opt.t == info.value.batch - 2  # back to before the step ahead of the failing one
    after = snapshot(net, opt)
    assert np.isfinite(after.params).all() and all(np.isfinite(v).all() for v in after.state.values())


# ---- determinism -----------------------------------------------------------------------------
@pytest.mark.parametrize("make_opt", [lambda: gpubp.Adam(1e-3), lambda: gpubp.SGD(0.05, momentum=0.9)],
                         ids=["adam", "sgd"])
def test_same_seed_same_numbers(backend, make_opt):
    X, y = _digits(300)
    results = []
    for seed in (5, 5, 6):
        net = gpubp.MLP([64, 32, 16, 10], activation="gelu", loss="cross_entropy", seed=seed)
        h = net.fit(X, y, epochs=3, batch_size=20, optimizer=make_opt(), progress=False)
        results.append((net.backend.to_numpy(net.params), h["loss"]))
    (a, ha), (b, hb), (c, _) = results
    if backend.name == "numpy":
        assert a.tobytes() == b.tobytes() and ha == hb
    else:  # the tolerance README.md documents for CuPy
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a, c), "a different seed must give a different run"


# ---- data movement ---------------------------------------------------------------------------
def test_streaming_from_host_gives_the_same_numbers(backend, monkeypatch):
    X, y = _digits(300)
    val = (X[:60], y[:60])
    runs = []
    for stream in (False, True):
        monkeypatch.setattr(memory, "should_stream", lambda backend, nbytes, stream=stream: stream)
        net = gpubp.MLP([64, 32, 10], loss="cross_entropy", seed=2)
        h = net.fit(X, y, epochs=2, batch_size=32, optimizer=gpubp.Adam(1e-3), validation_data=val, progress=False)
        runs.append((net.backend.to_numpy(net.params), h, net.evaluate(X, y, batch_size=64)))
    (a, ha, ea), (b, hb, eb) = runs
    if backend.name == "numpy":
        assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert hb["accuracy"] == ha["accuracy"] and hb["val_accuracy"] == ha["val_accuracy"]
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-6)
    np.testing.assert_allclose(eb, ea, rtol=1e-6)


def test_stream_decision():
    assert memory.data_fits(400, 1000) and not memory.data_fits(600, 1000)
    assert memory.data_fits(900, 1000, fraction=0.9)
    with gpubp.use_backend("numpy") as be:
        assert memory.device_free_bytes(be) is None and not memory.should_stream(be, 10**15)


def test_fit_does_not_copy_the_data_set_per_epoch():
    with gpubp.use_backend("numpy"):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(20000, 64)).astype(np.float32)  # 5 MB
        y = rng.integers(0, 10, 20000)
        net = gpubp.MLP([64, 16, 10], loss="cross_entropy", seed=0)
        tracemalloc.start()
        try:
            net.fit(X, y, epochs=3, batch_size=500, optimizer=gpubp.Adam(), progress=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    # the NaN scan's boolean mask (X.nbytes / 4) and the index permutation are the largest temporaries
    assert peak < 0.5 * X.nbytes, f"fit allocated {peak} bytes at its peak for a {X.nbytes}-byte data set"


# ---- out of memory and interruption ----------------------------------------------------------
def _failing_step(net, exc, at):
    calls = {"n": 0}
    real = net.train_batch

    def step(X, Y, optimizer, comm=None, rows=None, row_offset=0, clip_norm=None):
        calls["n"] += 1
        if calls["n"] == at:
            raise exc
        return real(X, Y, optimizer, comm, rows, row_offset, clip_norm=clip_norm)

    return step


def _oom_errors():
    errors = [MemoryError("cannot allocate"), RuntimeError("cudaErrorMemoryAllocation: out of memory")]
    try:
        import cupy

        errors.append(cupy.cuda.memory.OutOfMemoryError(1 << 30, 1 << 20))  # what CuPy raises
    except Exception:
        pass
    return errors


@pytest.mark.parametrize("exc", _oom_errors(), ids=lambda e: type(e).__name__)
def test_out_of_memory_in_fit_is_a_clear_error_with_a_consistent_network(backend, monkeypatch, exc):
    monkeypatch.setattr(guard, "CHECK_EVERY", 4)
    X, y = _digits(200)
    ref, ref_opt = gpubp.MLP([64, 32, 10], loss="cross_entropy", seed=0), gpubp.Adam()
    order = ref.rng.permutation(200)
    for b in range(3):  # the last verified state: before the last batch of the first window
        ref.train_step(X[order[16 * b : 16 * b + 16]], y[order[16 * b : 16 * b + 16]], ref_opt)
    net, opt = gpubp.MLP([64, 32, 10], loss="cross_entropy", seed=0), gpubp.Adam()
    monkeypatch.setattr(net, "train_batch", _failing_step(net, exc, at=7))
    with pytest.raises(gpubp.OutOfMemoryError) as info:
        net.fit(X, y, epochs=2, batch_size=16, optimizer=opt, progress=False)
    err = info.value
    assert isinstance(err, MemoryError) and (err.epoch, err.batch) == (1, 7)
    assert "smaller batch_size (got 16, e.g. 8)" in str(err) and "before batch 4 of epoch 1" in str(err)
    assert opt.t == ref_opt.t == 3
    np.testing.assert_array_equal(net.backend.to_numpy(net.params), ref.backend.to_numpy(ref.params))


def test_other_errors_are_not_mistaken_for_out_of_memory():
    assert not memory.is_out_of_memory(RuntimeError("cuBLAS failed: invalid value"))
    assert not memory.is_out_of_memory(ValueError("out of memory"))
    assert memory.is_out_of_memory(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED"))


def test_keyboard_interrupt_leaves_a_consistent_network(backend, monkeypatch):
    monkeypatch.setattr(guard, "CHECK_EVERY", 4)
    X, y = _digits(200)
    net, opt = gpubp.MLP([64, 32, 10], loss="cross_entropy", seed=0), gpubp.Adam()
    monkeypatch.setattr(net, "train_batch", _failing_step(net, KeyboardInterrupt(), at=11))
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=2, batch_size=16, optimizer=opt, progress=False)
    assert opt.t == 7 and net.epoch == 0  # back to the verified state: before batch 8
