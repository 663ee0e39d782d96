"""Learning-rate schedules against torch.optim.lr_scheduler, epoch by epoch, through fit."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gpubp
from gpubp.callbacks import LearningRateScheduler
from gpubp.schedules import CosineAnnealingLR, ReduceLROnPlateau, StepLR

torch = pytest.importorskip("torch")

EPOCHS = 50
BASE_LR = 0.1


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.integers(0, 2, n)


def _net():
    return gpubp.MLP([3, 4, 2], activation="tanh", loss="cross_entropy", dtype="float64", seed=0)


def _fit_lrs(schedule, epochs=EPOCHS, initial_epoch=0, opt=None, net=None, **kw):
    X, y = _data()
    net = net or _net()
    opt = opt or gpubp.SGD(BASE_LR)
    h = net.fit(X, y, epochs=epochs, batch_size=8, optimizer=opt, lr_schedule=schedule, initial_epoch=initial_epoch,
                verbose=0, **kw)
    return h["lr"], opt, net, h


def _torch_lrs(make, epochs=EPOCHS, metrics=None):
    """The lr of each epoch of a PyTorch loop: read before the epoch, scheduler stepped after it."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    sched = make(opt)
    lrs = []
    for e in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[e])
    return lrs


TORCH = torch.optim.lr_scheduler
SCHEDULES = [
    ("step 10", lambda: StepLR(10), lambda o: TORCH.StepLR(o, 10)),
    ("step 3 gamma 0.5", lambda: StepLR(3, gamma=0.5), lambda o: TORCH.StepLR(o, 3, gamma=0.5)),
    ("step 1 gamma 0.9", lambda: StepLR(1, gamma=0.9), lambda o: TORCH.StepLR(o, 1, gamma=0.9)),
    ("cosine 50", lambda: CosineAnnealingLR(50), lambda o: TORCH.CosineAnnealingLR(o, 50)),
    ("cosine 50 eta_min", lambda: CosineAnnealingLR(50, eta_min=0.01),
     lambda o: TORCH.CosineAnnealingLR(o, 50, eta_min=0.01)),
    # past T_max the cosine rises again (eta_min > 0 keeps every lr positive)
    ("cosine 7 eta_min, restarts", lambda: CosineAnnealingLR(7, eta_min=1e-3),
     lambda o: TORCH.CosineAnnealingLR(o, 7, eta_min=1e-3)),
    ("cosine 45 warmup 5", lambda: CosineAnnealingLR(45, warmup_epochs=5),
     lambda o: TORCH.SequentialLR(o, [TORCH.LinearLR(o, start_factor=1 / 6, total_iters=5),
                                      TORCH.CosineAnnealingLR(o, 45)], milestones=[5])),
    ("cosine 20 eta_min warmup 3, restarts", lambda: CosineAnnealingLR(20, eta_min=0.003, warmup_epochs=3),
     lambda o: TORCH.SequentialLR(o, [TORCH.LinearLR(o, start_factor=1 / 4, total_iters=3),
                                      TORCH.CosineAnnealingLR(o, 20, eta_min=0.003)], milestones=[3])),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # PyTorch's SequentialLR warns about its own get_lr calls
@pytest.mark.parametrize("name,ours,theirs", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedule_gives_pytorchs_learning_rates_over_50_epochs(name, ours, theirs):
    lrs, opt, _, _ = _fit_lrs(ours())
    want = _torch_lrs(theirs)
    assert lrs == want  # the same arithmetic: equal to the last bit
    assert opt.lr == lrs[-1]


def test_warmup_ramps_linearly_then_follows_the_cosine():
    lrs, _, _, _ = _fit_lrs(CosineAnnealingLR(10, eta_min=0.0, warmup_epochs=4), epochs=14)
    np.testing.assert_allclose(lrs[:4], [BASE_LR * e / 5 for e in range(1, 5)], rtol=1e-15)
    cosine = [BASE_LR * (1 + math.cos(math.pi * j / 10)) / 2 for j in range(10)]
    np.testing.assert_allclose(lrs[4:], cosine, rtol=1e-13, atol=1e-17)


@pytest.mark.parametrize("mode,threshold_mode,cooldown", [("min", "rel", 0), ("min", "abs", 2), ("max", "rel", 1)])
def test_reduce_on_plateau_follows_pytorch_on_a_metric_sequence(mode, threshold_mode, cooldown):
    rng = np.random.default_rng(3)
    # noisy plateaus, a NaN, and long runs without improvement
    metrics = list(np.repeat(rng.uniform(0.5, 1.0, 10), 5) + rng.normal(0, 1e-5, 50))
    metrics[17] = float("nan")
    want = _torch_lrs(lambda o: TORCH.ReduceLROnPlateau(o, mode=mode, factor=0.5, patience=3,
                                                         threshold_mode=threshold_mode, cooldown=cooldown,
                                                         min_lr=1e-3), metrics=metrics)
    sched = ReduceLROnPlateau(monitor="val_loss" if mode == "min" else "val_accuracy", factor=0.5, patience=3,
                              min_lr=1e-3, mode=mode, threshold_mode=threshold_mode, cooldown=cooldown)
    opt = gpubp.SGD(BASE_LR)
    sched.set_params({"optimizer": opt})
    got = []
    for value in metrics:
        got.append(opt.lr)
        sched.record(value)
    assert got == want
    assert min(got) == 1e-3 and got[0] == BASE_LR


def test_reduce_on_plateau_through_fit_uses_the_epochs_validation_loss():
    X, y = _data(40)
    net = _net()
    h = net.fit(X, y, epochs=EPOCHS, batch_size=8, optimizer=gpubp.SGD(0.5), validation_data=(X[:10], y[:10]),
                lr_schedule=ReduceLROnPlateau(factor=0.5, patience=2), verbose=0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = TORCH.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    want = []
    for v in h["val_loss"]:
        want.append(opt.param_groups[0]["lr"])
        sched.step(v)
    assert h["lr"] == want and len(set(want)) > 1  # the lr dropped at least once


def test_continuing_fit_continues_the_schedule():
    """Two fit calls (the second with initial_epoch) give the lrs of one."""
    one, _, _, _ = _fit_lrs(CosineAnnealingLR(30, warmup_epochs=3), epochs=30)
    sched = CosineAnnealingLR(30, warmup_epochs=3)
    first, opt, net, _ = _fit_lrs(sched, epochs=12)
    second, _, _, _ = _fit_lrs(sched, epochs=30, initial_epoch=12, opt=opt, net=net)
    assert first + second == one


@pytest.mark.parametrize("make,tol", [(lambda: StepLR(4, gamma=0.5), 0.0), (lambda: CosineAnnealingLR(30, warmup_epochs=3), 1e-15)])
def test_resuming_from_a_checkpoint_with_a_new_schedule(tmp_path, make, tol):
    """The base lr travels with the optimizer's checkpoint; a new schedule object starting at a
    later epoch takes that epoch's lr in closed form (PyTorch's step(epoch)) and goes on recursively."""
    one, _, _, _ = _fit_lrs(make(), epochs=30)
    first, opt, net, _ = _fit_lrs(make(), epochs=11)
    net.save(tmp_path / "mid.npz", optimizer=opt)
    back = gpubp.load(tmp_path / "mid.npz")
    opt2 = gpubp.load_optimizer(tmp_path / "mid.npz", back)
    assert opt2.initial_lr == BASE_LR and opt2.lr == first[-1]
    second, _, _, _ = _fit_lrs(make(), epochs=30, initial_epoch=back.epoch, opt=opt2, net=back)
    np.testing.assert_allclose(first + second, one, rtol=tol, atol=0)


@pytest.mark.parametrize("make,torch_make", [(lambda: CosineAnnealingLR(5), lambda o: TORCH.CosineAnnealingLR(o, 5)),
                                             (lambda: StepLR(2), lambda o: TORCH.StepLR(o, 2))])
def test_a_new_run_starts_from_the_lr_set_since_an_earlier_schedule(make, torch_make):
    """Fine-tuning: after a scheduled run, opt.lr = 1e-4 and a new schedule from epoch 1 start from
    1e-4, as a new PyTorch scheduler on the same optimizer does (not from the first run's base)."""
    first, opt, net, _ = _fit_lrs(CosineAnnealingLR(10), epochs=5)
    opt.lr = 1e-4
    second, _, _, _ = _fit_lrs(make(), epochs=4, opt=opt, net=net)
    t_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    t_first = TORCH.CosineAnnealingLR(t_opt, 10)
    for _ in range(5):
        t_opt.step()
        t_first.step()
    t_opt.param_groups[0]["lr"] = 1e-4
    t_second = torch_make(t_opt)
    want = []
    for _ in range(4):
        want.append(t_opt.param_groups[0]["lr"])
        t_opt.step()
        t_second.step()
    np.testing.assert_allclose(second, want, rtol=1e-15, atol=0)
    assert second[0] == 1e-4


def test_a_run_refused_before_its_first_epoch_leaves_the_optimizer_as_it_was():
    from gpubp.callbacks import EarlyStopping

    opt = gpubp.SGD(BASE_LR)
    with pytest.raises(ValueError, match="val_loss"):
        _fit_lrs(StepLR(2), epochs=3, opt=opt, callbacks=[EarlyStopping()])
    assert opt.initial_lr is None and opt.lr == BASE_LR and opt.t == 0
    opt.lr = 0.05
    lrs, _, _, _ = _fit_lrs(StepLR(2), epochs=3, opt=opt)
    assert lrs == pytest.approx([0.05, 0.05, 0.005], rel=1e-15)


def test_learning_rate_scheduler_calls_the_function_with_the_epoch_and_lr():
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return lr * 0.5 if epoch % 2 == 0 else lr

    lrs, _, _, _ = _fit_lrs(schedule, epochs=5)
    assert [e for e, _ in seen] == [1, 2, 3, 4, 5]
    assert lrs == [0.1, 0.05, 0.05, 0.025, 0.025]
    with pytest.raises(TypeError, match="must return a number"):
        _fit_lrs(LearningRateScheduler(lambda e, lr: "fast"), epochs=2)


def test_a_schedule_whose_lr_optimizers_refuse_is_refused_before_training():
    X, y = _data()
    net, opt = _net(), gpubp.SGD(BASE_LR)
    before = net.backend.to_numpy(net.params).copy()
    with pytest.raises(ValueError, match=r"epoch 11 .*at most 10 epochs"):
        net.fit(X, y, epochs=12, batch_size=8, optimizer=opt, lr_schedule=CosineAnnealingLR(10), verbose=0)
    assert np.array_equal(net.backend.to_numpy(net.params), before) and opt.lr == BASE_LR and net.epoch == 0
    # up to T_max epochs (or with eta_min > 0) it runs
    _fit_lrs(CosineAnnealingLR(10), epochs=10)
    _fit_lrs(CosineAnnealingLR(10, eta_min=1e-4), epochs=12)


@pytest.mark.parametrize("make,exc,fragment", [
    (lambda: StepLR(0), ValueError, "step_size"),
    (lambda: StepLR(2.5), TypeError, "step_size"),
    (lambda: StepLR(2, gamma=0.0), ValueError, "gamma"),
    (lambda: CosineAnnealingLR(0), ValueError, "T_max"),
    (lambda: CosineAnnealingLR(5, eta_min=-1.0), ValueError, "eta_min"),
    (lambda: CosineAnnealingLR(5, warmup_epochs=-1), ValueError, "warmup_epochs"),
    (lambda: ReduceLROnPlateau(factor=1.0), ValueError, "factor"),
    (lambda: ReduceLROnPlateau(mode="up"), ValueError, "mode"),
    (lambda: ReduceLROnPlateau(threshold_mode="log"), ValueError, "threshold_mode"),
    (lambda: ReduceLROnPlateau(patience=-1), ValueError, "patience"),
    (lambda: LearningRateScheduler(0.1), TypeError, "schedule"),
])
def test_schedule_arguments_are_checked(make, exc, fragment):
    with pytest.raises(exc, match=fragment):
        make()
