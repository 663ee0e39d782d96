"""Saving checkpoints: every network the constructor accepts round-trips, a save writes through a
symbolic link and keeps the replaced file's permissions, refuses what it cannot save before
touching the file, and an interrupt at any point leaves no temporary file behind."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import gpubp
from gpubp import checkpoint

pytestmark = pytest.mark.timeout(120)

# every spelling of the two dtypes NumPy accepts, native or not
DTYPE_SPELLINGS = ["float32", "float64", "f4", "f8", ">f4", "<f4", ">f8", "<f8", "=f4", "single", "double",
                   np.float32, np.float64, np.dtype(">f4"), np.dtype(">f8")]


@pytest.mark.parametrize("dtype", DTYPE_SPELLINGS, ids=[str(d) for d in DTYPE_SPELLINGS])
def test_every_accepted_dtype_round_trips(backend, tmp_path, dtype):
    net = gpubp.MLP([3, 4, 2], loss="mse", dtype=dtype, seed=1)
    assert net.dtype.isnative and net.dtype.name in ("float32", "float64")
    assert net.params.dtype == net.dtype
    opt = gpubp.SGD(0.1, momentum=0.9)
    X = np.linspace(-1, 1, 15).reshape(5, 3)
    net.train_step(X, np.ones((5, 2)), opt)
    net.save(tmp_path / "m.npz", optimizer=opt)
    back = gpubp.load(tmp_path / "m.npz")
    assert back.dtype == net.dtype and back.get_config() == net.get_config()
    assert net.backend.to_numpy(back.params).tobytes() == net.backend.to_numpy(net.params).tobytes()
    opt2 = gpubp.load_optimizer(tmp_path / "m.npz", back)
    assert opt2.t == 1


@pytest.mark.parametrize("seed", [None, 0, 2**64 + 1, 2**128 - 1])
def test_every_accepted_seed_round_trips(tmp_path, seed):
    net = gpubp.MLP([3, 2], seed=seed)
    net.save(tmp_path / "m.npz")
    back = gpubp.load(tmp_path / "m.npz")
    assert back.seed == seed and back.params.tobytes() == net.params.tobytes()


# ---- symbolic links and permissions -------------------------------------------------------------
def test_save_through_a_symlink_writes_its_target(tmp_path):
    real = tmp_path / "store" / "model.npz"
    real.parent.mkdir()
    link = tmp_path / "latest.npz"
    link.symlink_to(real)
    a, b = gpubp.MLP([3, 2], seed=1), gpubp.MLP([3, 2], seed=2)
    a.save(link)  # a dangling link: its target is created
    assert link.is_symlink() and real.is_file()
    b.save(link)  # an existing target: replaced, the link kept
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert gpubp.load(real).params.tobytes() == b.params.tobytes()
    assert sorted(p.name for p in real.parent.iterdir()) == ["model.npz"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444, 0o604])
def test_save_keeps_the_existing_file_permissions(tmp_path, mode):
    path = tmp_path / "m.npz"
    gpubp.MLP([3, 2], seed=1).save(path)
    os.chmod(path, mode)
    gpubp.MLP([3, 2], seed=2).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert gpubp.load(path).params.tobytes() == gpubp.MLP([3, 2], seed=2).params.tobytes()


# ---- refused before the file is touched ---------------------------------------------------------
def _bound_to_another_network():
    other = gpubp.MLP([5, 7, 2], seed=2)
    opt = gpubp.Adam()
    opt.step(other)
    return opt


def _fresh_state_of_another_network():
    """An optimizer that has not stepped yet but holds (zero) state sized for another network."""
    opt = gpubp.SGD(0.1, momentum=0.9)
    opt._bind(gpubp.MLP([5, 7, 2], seed=2))
    return opt


BAD_SAVES = [
    ("empty path", "", None, ValueError, "path"),
    ("path None", None, None, TypeError, "path"),
    ("a folder", ".", None, IsADirectoryError, "folder"),
    ("missing folder", "no/such/m.npz", None, FileNotFoundError, "folder"),
    ("optimizer of another network", "m.npz", _bound_to_another_network, ValueError, "optimizer"),
    ("optimizer state of another network", "m.npz", _fresh_state_of_another_network, ValueError, "optimizer"),
    ("optimizer a class", "m.npz", lambda: gpubp.Adam, TypeError, "optimizer"),
    ("optimizer a name", "m.npz", lambda: "adam", TypeError, "optimizer"),
]


@pytest.mark.parametrize("case,name,make_opt,exc,fragment", BAD_SAVES, ids=[c[0] for c in BAD_SAVES])
def test_bad_saves_are_refused_and_touch_nothing(tmp_path, monkeypatch, case, name, make_opt, exc, fragment):
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / "m.npz"
    net = gpubp.MLP([3, 4, 2], seed=0)
    gpubp.MLP([3, 4, 2], seed=9).save(existing)
    before = existing.read_bytes()
    with pytest.raises(exc) as info:
        net.save(name, optimizer=make_opt() if make_opt else None)
    assert fragment in str(info.value)
    assert existing.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_save_over_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        gpubp.MLP([3, 2], seed=0).save(fifo)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_check_save_path_is_what_save_checks(tmp_path):
    assert checkpoint.check_save_path(tmp_path / "m.npz") == (str(tmp_path / "m.npz"), None)
    with pytest.raises(IsADirectoryError):
        checkpoint.check_save_path(tmp_path)


# ---- interrupts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["after creating the file", "while writing", "before renaming"])
def test_an_interrupt_while_saving_leaves_no_file_behind(tmp_path, monkeypatch, where):
    """Ctrl-C (KeyboardInterrupt) at three moments of a save over an existing checkpoint: the old
    checkpoint stays, and no temporary file is left, including when the interrupt arrives just
    after the temporary file was created, before the save has its descriptor."""
    path = tmp_path / "m.npz"
    old = gpubp.MLP([3, 2], seed=1)
    old.save(path)
    before = path.read_bytes()
    real_open, real_savez, real_replace = os.open, np.savez, os.replace

    def open_then_interrupt(file, flags, *args, **kwargs):
        fd = real_open(file, flags, *args, **kwargs)
        if str(file).endswith(".tmp"):
            os.close(fd)  # a signal right after the call: the caller never sees the descriptor
            raise KeyboardInterrupt
        return fd

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "after creating the file":
        monkeypatch.setattr(os, "open", open_then_interrupt)
    elif where == "while writing":
        monkeypatch.setattr(np, "savez", lambda f, **arrays: (f.write(b"PK partial"), interrupt()))
    else:
        monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        gpubp.MLP([3, 2], seed=2).save(path)
    monkeypatch.setattr(os, "open", real_open)
    monkeypatch.setattr(np, "savez", real_savez)
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    assert path.read_bytes() == before


def test_load_of_an_empty_path_is_refused():
    with pytest.raises(ValueError, match="path"):
        gpubp.load("")


def test_from_parameters_never_shares_memory_it_should_not():
    """The network's buffer is the caller's array only where that is safe: given with its dtype,
    contiguous, aligned and writable; any other array (a view of a memmap, a read-only or an
    unaligned one, another dtype) is copied or converted."""
    pytest.importorskip("hypothesis", reason="the memory layouts of tests/layouts.py are hypothesis strategies")
    from layouts import arrange

    net = gpubp.MLP([3, 4, 2], seed=0)
    cfg = net.get_config()
    own = net.params.copy()
    assert gpubp.MLP.from_parameters(own, **cfg).params is own
    for layout in ("read-only", "unaligned", "memmap", "read-only memmap", "reversed", "strided", "big-endian"):
        given = arrange(own, layout)
        back = gpubp.MLP.from_parameters(given, **cfg) if layout != "big-endian" else None
        if back is None:  # a non-native dtype is another dtype: refused, not reinterpreted
            with pytest.raises(ValueError, match="params"):
                gpubp.MLP.from_parameters(given, **cfg)
            continue
        assert not np.may_share_memory(back.params, given), layout
        assert back.params.flags.c_contiguous and back.params.flags.aligned and back.params.flags.writeable
        assert back.params.tobytes() == own.tobytes()
    with pytest.raises(ValueError, match=r"params must be an array of shape \(26,\)"):
        gpubp.MLP.from_parameters(own[:-1], **cfg)


# ---- the optimizer's state belongs to one network -----------------------------------------------
def _twins():
    X = np.linspace(-1, 1, 15).reshape(5, 3)
    Y = np.ones((5, 2))
    return gpubp.MLP([3, 4, 2], seed=0), gpubp.MLP([3, 4, 2], seed=1), X, Y


def test_save_refuses_an_optimizer_that_stepped_a_twin_network(tmp_path):
    """The same architecture, so the buffers' shapes fit: the optimizer still names the network
    it stepped, and the save is refused before the file is touched."""
    net, twin, X, Y = _twins()
    opt = gpubp.Adam(0.01)
    twin.train_step(X, Y, opt)
    with pytest.raises(ValueError) as info:
        net.save(tmp_path / "m.npz", optimizer=opt)
    msg = str(info.value)
    assert f"at {id(twin):#x}" in msg and f"at {id(net):#x}" in msg and "t = 1" in msg, msg
    assert list(tmp_path.iterdir()) == []
    twin.save(tmp_path / "m.npz", optimizer=opt)  # its own network: saved
    assert gpubp.load_optimizer(tmp_path / "m.npz", twin).t == 1
    net.train_step(X, Y, opt)  # now it last stepped net: net's state from here on
    net.save(tmp_path / "n.npz", optimizer=opt)
    with pytest.raises(ValueError, match="optimizer: this Adam's state"):
        twin.save(tmp_path / "t.npz", optimizer=opt)


def test_save_accepts_an_optimizer_that_never_stepped(tmp_path):
    net, twin, _, _ = _twins()
    net.save(tmp_path / "m.npz", optimizer=gpubp.Adam(0.01))
    assert gpubp.load_optimizer(tmp_path / "m.npz", twin).t == 0


def test_the_optimizer_keeps_no_network_alive_and_refuses_after_it_is_gone(tmp_path):
    import gc
    import weakref

    net, twin, X, Y = _twins()
    opt = gpubp.SGD(0.1)  # no buffers: its step count is its state
    twin.train_step(X, Y, opt)
    gone = weakref.ref(twin)
    del twin
    gc.collect()
    assert gone() is None
    with pytest.raises(ValueError, match="belongs to a network that no longer exists"):
        net.save(tmp_path / "m.npz", optimizer=opt)


def test_loading_binds_the_optimizer_to_the_network_it_is_loaded_for(tmp_path):
    net, twin, X, Y = _twins()
    opt = gpubp.Adam(0.01)
    net.train_step(X, Y, opt)
    net.save(tmp_path / "m.npz", optimizer=opt)
    back = gpubp.load(tmp_path / "m.npz")
    opt2 = gpubp.load_optimizer(tmp_path / "m.npz", back)
    back.save(tmp_path / "b.npz", optimizer=opt2)
    with pytest.raises(ValueError, match="not to the network given"):
        net.save(tmp_path / "n.npz", optimizer=opt2)
    opt3 = gpubp.Adam(0.01)
    back3 = gpubp.load(tmp_path / "m.npz", optimizer=opt3)
    back3.save(tmp_path / "c.npz", optimizer=opt3)
    with pytest.raises(ValueError, match="not to the network given"):
        back.save(tmp_path / "d.npz", optimizer=opt3)


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_copied_optimizers_keep_their_state_and_save(tmp_path, how):
    """A copy keeps the hyper-parameters, t and the buffers, not the link to the network (a weak
    reference cannot be pickled): it saves with a network of its size and binds on its next step."""
    import copy
    import pickle

    net, twin, X, Y = _twins()
    opt = gpubp.Adam(0.01)
    net.train_step(X, Y, opt)
    dup = {"pickle": lambda o: pickle.loads(pickle.dumps(o)), "deepcopy": copy.deepcopy, "copy": copy.copy}[how](opt)
    assert dup.t == 1 and dup.get_config() == opt.get_config()
    for name in ("m", "v"):
        np.testing.assert_array_equal(dup.state[name], opt.state[name])
    twin.save(tmp_path / "m.npz", optimizer=dup)  # owner unknown: accepted on size
    twin.train_step(X, Y, dup)  # binds to twin
    with pytest.raises(ValueError, match="not to the network given"):
        net.save(tmp_path / "n.npz", optimizer=dup)
    net.save(tmp_path / "n.npz", optimizer=opt)  # the original still belongs to net
