"""Checkpoints: exact round trips, refusal of broken or foreign files, atomic saves under
SIGKILL, and resuming that continues with the same numbers as an uninterrupted run."""
from __future__ import annotations

import io
import json
import os
import signal
import time

import numpy as np
import pytest

import gpubp
from gpubp.data import load_digits

pytestmark = pytest.mark.timeout(120)


def _data(n=40, n0=6, m=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n0)), rng.integers(0, m, n)


def _trained(optimizer, dtype="float32", epochs=2):
    X, y = _data()
    net = gpubp.MLP([6, 8, 3], activation="tanh", loss="cross_entropy", dtype=dtype, seed=4)
    net.fit(X, y, epochs=epochs, batch_size=8, optimizer=optimizer, progress=False)
    return net


def _np(net, a):
    return net.backend.to_numpy(a)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_opt", [lambda: gpubp.Adam(1e-2), lambda: gpubp.SGD(0.1, momentum=0.9, nesterov=True),
                                      lambda: gpubp.SGD(0.1)], ids=["adam", "nesterov", "sgd"])
def test_round_trip_is_exact(backend, tmp_path, dtype, make_opt):
    opt = make_opt()
    net = _trained(opt, dtype)
    path = tmp_path / "model.npz"
    net.save(path, optimizer=opt)
    back = gpubp.load(path)
    assert back.get_config() == net.get_config() and back.dtype == np.dtype(dtype) and back.epoch == 2
    assert _np(back, back.params).tobytes() == _np(net, net.params).tobytes()
    assert back.rng.bit_generator.state == net.rng.bit_generator.state
    opt2 = gpubp.load_optimizer(path, back)
    assert type(opt2) is type(opt) and opt2.get_config() == opt.get_config() and opt2.t == opt.t
    assert sorted(opt2.state) == sorted(opt.state)
    for k in opt.state:
        assert _np(back, opt2.state[k]).tobytes() == _np(net, opt.state[k]).tobytes()
    X, _ = _data()
    assert _np(back, back.forward(X)).tobytes() == _np(net, net.forward(X)).tobytes()


def test_saved_file_has_ordinary_permissions(tmp_path):
    net = gpubp.MLP([2, 1], seed=0)
    net.save(tmp_path / "m.npz")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind


# ---- broken, truncated and foreign files ---------------------------------------------------
@pytest.fixture()
def saved(tmp_path):
    opt = gpubp.Adam(1e-2)
    with gpubp.use_backend("numpy"):
        net = _trained(opt)
    path = tmp_path / "good.npz"
    net.save(path, optimizer=opt)
    return path, path.read_bytes(), net


def _refused(path, *fragments):
    with pytest.raises(gpubp.CheckpointError) as info:
        gpubp.load(path)
    assert str(path) in str(info.value), "the error must name the file"
    for f in fragments:
        assert f in str(info.value)


def test_truncated_files_are_refused(saved, tmp_path):
    _, blob, _ = saved
    path = tmp_path / "cut.npz"
    for length in sorted({0, 1, 4, 22, 100, len(blob) // 3, len(blob) // 2, len(blob) - 22, len(blob) - 1}):
        path.write_bytes(blob[:length])
        _refused(path)


def test_every_corrupted_byte_is_refused_or_harmless(saved, tmp_path):
    """Flip bytes all over the file: loading refuses it, or (a byte no reader uses, such as a
    timestamp) yields exactly the saved network."""
    _, blob, net = saved
    path = tmp_path / "bad.npz"
    rng = np.random.default_rng(0)
    refused = 0
    for pos in rng.choice(len(blob), size=min(len(blob), 300), replace=False):
        bad = bytearray(blob)
        bad[pos] ^= 0x5A
        path.write_bytes(bytes(bad))
        try:
            back = gpubp.load(path)
        except gpubp.CheckpointError as exc:
            assert str(path) in str(exc)
            refused += 1
        else:
            assert back.params.tobytes() == net.params.tobytes(), f"byte {pos} changed the weights silently"
            assert back.get_config() == net.get_config()
    assert refused > 250


def _rewrite(path, blob, **changes):
    """The checkpoint with some members replaced, the stored checksum kept (a forged file)."""
    with np.load(io.BytesIO(blob)) as z:
        members = {k: z[k] for k in z.files}
    members.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **members)


def test_changed_contents_fail_the_checksum(saved, tmp_path):
    _, blob, net = saved
    path = tmp_path / "forged.npz"
    params = net.params.copy()
    params[3] += 1.0
    _rewrite(path, blob, params=params)
    _refused(path, "checksum")


def _meta(blob):
    with np.load(io.BytesIO(blob)) as z:
        return json.loads(z["__meta__"].tobytes().decode())


def test_foreign_and_future_files_are_refused(saved, tmp_path):
    _, blob, _ = saved
    text = tmp_path / "notes.npz"
    text.write_text("these are not weights\n")
    _refused(text, "not a readable gpubp checkpoint")
    plain = tmp_path / "plain.npz"
    np.savez(plain, W=np.ones(3))
    _refused(plain, "not a gpubp checkpoint")
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _refused(pickled)
    for key, value, fragment in [("format", "other-library", "format"), ("version", 99, "version 99")]:
        meta = _meta(blob)
        meta[key] = value
        forged = tmp_path / f"{key}.npz"
        _rewrite(forged, blob, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        _refused(forged, fragment)


def test_missing_file_and_bad_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        gpubp.load(tmp_path / "nothing.npz")
    with pytest.raises(TypeError, match="path"):
        gpubp.load(3)
    net = gpubp.MLP([2, 1], seed=0)
    with pytest.raises(FileNotFoundError, match="folder"):
        net.save(tmp_path / "no" / "such" / "m.npz")
    with pytest.raises(TypeError, match="optimizer"):
        net.save(tmp_path / "m.npz", optimizer="adam")
    assert list(tmp_path.iterdir()) == []


def test_wrong_optimizer_type_is_refused_and_untouched(saved):
    path, _, _ = saved
    sgd = gpubp.SGD(0.1, momentum=0.9)
    with pytest.raises(gpubp.CheckpointError, match="Adam"):
        gpubp.load(path, optimizer=sgd)
    assert sgd.t == 0 and sgd.state == {}


# ---- atomic save under SIGKILL -------------------------------------------------------------
def test_kill_9_while_saving_leaves_old_or_new_checkpoint(tmp_path):
    """A forked child saves models A and B alternately over one file; the parent SIGKILLs it at
    random moments inside a save, many times. The file must always load as A or as B."""
    with gpubp.use_backend("numpy"):
        nets = [gpubp.MLP([300, 400, 10], seed=s) for s in (1, 2)]
        opts = [gpubp.Adam(), gpubp.Adam()]
        X = np.random.default_rng(3).normal(size=(8, 300))
        for steps, (net, opt) in enumerate(zip(nets, opts), start=1):  # A: one step, B: two
            for _ in range(steps):
                net.train_step(X, np.zeros((8, 10)), opt)
    expected = [net.params.tobytes() for net in nets]
    target = tmp_path / "ckpt.npz"
    nets[0].save(target, optimizer=opts[0])
    start = time.perf_counter()
    nets[1].save(target, optimizer=opts[1])
    save_time = time.perf_counter() - start
    rng = np.random.default_rng(0)
    kills = 50
    for i in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: save forever, one byte down the pipe before each save
            try:
                os.close(r)
                k = i
                while True:
                    os.write(w, b"s")
                    nets[k % 2].save(target, optimizer=opts[k % 2])
                    k += 1
            finally:
                os._exit(0)
        os.close(w)
        for _ in range(int(rng.integers(1, 3))):  # let it start its first or second save
            assert os.read(r, 1) == b"s"
        time.sleep(float(rng.uniform(0.0, 1.2 * save_time)))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        with gpubp.use_backend("numpy"):
            back = gpubp.load(target)
            opt = gpubp.load_optimizer(target, back)
        which = expected.index(back.params.tobytes())  # ValueError if neither A nor B
        assert opt.t == opts[which].t == which + 1
        for name in ("m", "v"):  # the optimizer state saved with those weights, not the other's
            np.testing.assert_array_equal(opt.state[name], opts[which].state[name])
    # a kill mid-write may leave its temporary file beside the target, and nothing else
    leftovers = {p.name for p in tmp_path.iterdir()} - {target.name}
    assert all(name.startswith(".gpubp-") and name.endswith(".tmp") for name in leftovers), leftovers


# ---- resuming ------------------------------------------------------------------------------
@pytest.mark.parametrize("make_opt", [lambda: gpubp.Adam(3e-3), lambda: gpubp.SGD(0.05, momentum=0.9, nesterov=True)],
                         ids=["adam", "nesterov"])
def test_resume_continues_with_the_same_numbers(backend, tmp_path, make_opt):
    X, y = load_digits()
    X, y = X[:300], y[:300]
    path = tmp_path / "mid.npz"

    def run():
        return gpubp.MLP([64, 32, 10], loss="cross_entropy", seed=7)

    net, opt = run(), make_opt()

    def save_at_2(epoch, logs):
        if epoch == 2:
            net.save(path, optimizer=opt)

    full = net.fit(X, y, epochs=4, batch_size=25, optimizer=opt, callback=save_at_2, progress=False,
                   validation_data=(X[:50], y[:50]))
    resumed = gpubp.load(path)
    opt2 = gpubp.load_optimizer(path, resumed)
    assert resumed.epoch == 2
    seen = []
    rest = resumed.fit(X, y, epochs=4, batch_size=25, optimizer=opt2, initial_epoch=resumed.epoch,
                       callback=lambda e, logs: seen.append(e), progress=False, validation_data=(X[:50], y[:50]))
    assert seen == [3, 4] and resumed.epoch == 4
    a, b = _np(net, net.params), _np(resumed, resumed.params)
    if backend.name == "numpy":
        assert a.tobytes() == b.tobytes(), "resuming must reproduce the uninterrupted run bit for bit"
        assert rest["loss"] == full["loss"][2:] and rest["val_loss"] == full["val_loss"][2:]
    else:
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(rest["loss"], full["loss"][2:], rtol=1e-5)
    assert opt2.t == opt.t
