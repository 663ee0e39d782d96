"""The divergence guard covers the weights an update produces, not only the loss and gradient a
step computes: ``fit`` never returns (nor stops) with NaN or inf weights, also when the last
update of an epoch or of the run overflows, or when a weight overflows while the loss and every
gradient stay finite."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp import guard

pytestmark = pytest.mark.timeout(120)


class _DeviceLike(np.ndarray):
    """A NumPy array with CuPy's ``.get()``: stands in for a device array read back to the host."""

    def get(self):
        return np.asarray(self)


class _DeviceXp:
    """NumPy as the guard's array module, except that ``isfinite`` returns arrays with ``.get()``."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def isfinite(a):
        return np.asarray(np.isfinite(a)).view(_DeviceLike)


@pytest.fixture(params=["host", "device stand-in"])
def guard_branch(request, monkeypatch):
    """The guard as it runs on NumPy (each check at once), and as it runs on a GPU (the checks of
    a window gathered in a device vector and read back once), the latter on NumPy arrays."""
    if request.param == "device stand-in":
        real_init = guard.DivergenceGuard.__init__

        def init(self, net, optimizer, every):
            real_init(self, net, optimizer, every)
            self.xp, self.on_host = _DeviceXp(), False
            self.sums = np.empty(every + 1, dtype=net.dtype)

        monkeypatch.setattr(guard.DivergenceGuard, "__init__", init)
    return request.param


def _regression(n=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([[1.0], [2.0], [-3.0]])


def _params(net):
    return net.backend.to_numpy(net.params).copy()


def test_an_overflowing_final_update_is_caught(backend, guard_branch):
    """SGD(3e38) on one batch: the loss and gradient are finite, the one update overflows."""
    X, Y = _regression()
    net = gpubp.MLP([3, 1], loss="mse", seed=0)
    start = _params(net)
    opt = gpubp.SGD(3e38)
    with pytest.raises(gpubp.NonFiniteError) as info:
        net.fit(X, Y, epochs=1, batch_size=16, optimizer=opt, progress=False)
    assert (info.value.epoch, info.value.batch) == (1, 1)
    assert "update of batch 1 of 1" in str(info.value)
    np.testing.assert_array_equal(_params(net), start)  # before that update
    assert opt.t == 0 and net.epoch == 0


@pytest.mark.parametrize("check_every", [1, 32])
@pytest.mark.parametrize("last_epoch", [2, 3])
def test_an_overflowing_last_update_of_an_epoch_is_caught_in_that_epoch(backend, guard_branch, monkeypatch, check_every,
                                                                          last_epoch):
    """A stable first epoch, then a rate that makes epoch 2's update overflow (one batch per
    epoch): fit stops in epoch 2, with the weights epoch 1 left, both when epoch 2 is the last
    and when epoch 3 would otherwise start from (and restore) the non-finite weights."""
    monkeypatch.setattr(guard, "CHECK_EVERY", check_every)
    X, Y = _regression(20)
    net = gpubp.MLP([3, 1], loss="mse", seed=0)
    opt = gpubp.SGD(0.01)
    after = {}

    def raise_lr(epoch, logs):
        after[epoch] = (_params(net), opt.t)
        opt.lr = 3e38

    with pytest.raises(gpubp.NonFiniteError) as info:
        net.fit(X, Y, epochs=last_epoch, batch_size=20, optimizer=opt, callback=raise_lr, progress=False)
    err = info.value
    assert (err.epoch, err.batch) == (2, 1) and net.epoch == 1
    assert "update of batch 1 of 1" in str(err)
    np.testing.assert_array_equal(_params(net), after[1][0])
    assert opt.t == after[1][1] == 1


def test_weights_that_overflow_while_loss_and_gradients_stay_finite_are_caught(backend, guard_branch, monkeypatch):
    """An update that sends a hidden unit's incoming weights to -inf: ReLU then outputs 0 there,
    so the loss and every gradient stay finite, but the weights are not. The window check of
    the weights finds it and names the step that did it."""
    monkeypatch.setattr(guard, "CHECK_EVERY", 4)
    X, Y = _regression(24, seed=1)
    X = np.abs(X)  # positive inputs: a unit with -inf incoming weights is dead, not NaN
    net = gpubp.MLP([3, 4, 1], activation="relu", loss="mse", seed=2)
    opt = gpubp.SGD(1e-3)
    real_step = opt.step
    before = {}

    def step(n):  # the 6th update (from t = 5), also when the guard replays it: unit 0's weights -> -inf
        if opt.t == 5:
            before.setdefault("params", _params(n))
            real_step(n)
            n.layers[1].W[0] = -np.inf
            return
        real_step(n)

    monkeypatch.setattr(opt, "step", step)
    with pytest.raises(gpubp.NonFiniteError) as info:
        net.fit(X, Y, epochs=2, batch_size=3, optimizer=opt, progress=False)
    assert (info.value.epoch, info.value.batch) == (1, 6)
    assert "update of batch 6" in str(info.value)
    assert np.isfinite(_params(net)).all()
    if backend.name == "numpy":
        assert _params(net).tobytes() == before["params"].tobytes()


def test_a_finite_run_is_unchanged_by_the_weight_check(backend, guard_branch):
    X, Y = _regression(40)
    a, b = gpubp.MLP([3, 5, 1], loss="mse", seed=4), gpubp.MLP([3, 5, 1], loss="mse", seed=4)
    h = a.fit(X, Y, epochs=3, batch_size=7, optimizer=gpubp.SGD(0.01), progress=False)
    opt = gpubp.SGD(0.01)
    for _ in range(3):
        order = b.rng.permutation(40)
        for s in range(0, 40, 7):
            b.train_step(X[order[s : s + 7]], Y[order[s : s + 7]], opt)
    assert len(h["loss"]) == 3
    if a.backend.name == "numpy":
        assert _params(a).tobytes() == _params(b).tobytes()


@pytest.mark.parametrize("check_every", [1, 4, 32])
def test_a_nan_loss_mid_window_is_found_by_either_branch(backend, guard_branch, monkeypatch, check_every):
    """The device branch reads a window's checks back at once: the first failing batch is still
    the one named, and the state restored is the one before the batch ahead of it."""
    monkeypatch.setattr(guard, "CHECK_EVERY", check_every)
    X, Y = _regression(30)
    X[17] = np.nan  # batch 6 (batch size 3, no shuffling) has a NaN loss
    net = gpubp.MLP([3, 4, 1], loss="mse", seed=1)
    opt = gpubp.SGD(0.01)
    ref = gpubp.MLP([3, 4, 1], loss="mse", seed=1)
    ref_opt = gpubp.SGD(0.01)
    for s in range(0, 12, 3):  # batches 1-4: the state before batch 5
        ref.train_step(X[s : s + 3], Y[s : s + 3], ref_opt)
    with np.errstate(all="ignore"), gpubp.validation.check_finite(False):
        with pytest.raises(gpubp.NonFiniteError) as info:
            net.fit(X, Y, epochs=1, batch_size=3, optimizer=opt, shuffle=False, progress=False)
    assert (info.value.epoch, info.value.batch) == (1, 6)
    assert "batch 6 of 10: its loss" in str(info.value) and "before batch 5" in str(info.value)
    assert opt.t == 4
    np.testing.assert_array_equal(_params(net), _params(ref))


@pytest.mark.parametrize("check_every", [1, 4, 32])
@pytest.mark.parametrize("make_opt", [lambda: gpubp.SGD(0.01, momentum=0.9), lambda: gpubp.Adam(0.01)],
                         ids=["sgd-momentum", "adam"])
def test_a_nan_gradient_with_a_finite_loss_is_found_as_a_per_step_check_finds_it(backend, monkeypatch, check_every,
                                                                                  make_opt):
    """On NumPy the guard tests the loss alone after each step when the optimizer carries a
    non-finite gradient into the weights (SGD, Adam, AdamW): a NaN in one gradient entry at a
    finite loss is then seen one batch later (the loss of the NaN weights) and located by the
    replay. Fit stops at the same batch with the same message and the same state, bit for bit
    on NumPy, as with the sum over the gradients tested after every step."""
    monkeypatch.setattr(guard, "CHECK_EVERY", check_every)
    X, Y = _regression(30, seed=3)
    outcomes = []
    for per_step in (False, True):
        net = gpubp.MLP([3, 4, 1], activation="tanh", loss="mse", seed=5)
        opt = make_opt()
        assert type(opt).spreads_nonfinite
        if per_step:
            opt.spreads_nonfinite = False  # the guard then tests C + sum of the gradients after every step
        real_step = opt.step

        def step(n, opt=opt, real_step=real_step):  # the 8th update (also when replayed): one NaN gradient
            if opt.t == 7:
                n.grads[2] = np.nan
            real_step(n)

        monkeypatch.setattr(opt, "step", step)
        with pytest.raises(gpubp.NonFiniteError) as info:
            net.fit(X, Y, epochs=3, batch_size=4, optimizer=opt, progress=False)
        outcomes.append((info.value.epoch, info.value.batch, str(info.value), _params(net), opt.t,
                         {k: net.backend.to_numpy(v).copy() for k, v in opt.state.items()}))
    (e1, b1, msg1, p1, t1, s1), (e2, b2, msg2, p2, t2, s2) = outcomes
    assert (e1, b1) == (e2, b2) == (1, 8) and msg1 == msg2 and "its loss or a gradient is NaN or inf" in msg1
    assert t1 == t2 == 6 and np.isfinite(p1).all()
    if backend.name == "numpy":
        assert p1.tobytes() == p2.tobytes()
        assert all(s1[k].tobytes() == s2[k].tobytes() for k in s1)
    else:
        np.testing.assert_allclose(p1, p2, rtol=1e-5, atol=1e-6)
