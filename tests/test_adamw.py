"""AdamW against torch.optim.AdamW on the same gradients: every form of the update (the
reference, the NumPy backend with and without its BLAS form, the CUDA kernel built for the
host), the optimizer object, its hyper-parameters and its checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from helpers import ops_of
from gpubp.ops import _blas
from gpubp.ops.numpy_ops import ADAM_BLAS_MIN_SIZE
from gpubp.optim import AdamWHyperparameters

torch = pytest.importorskip("torch")

SETTINGS = [dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
            dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3),
            dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)]


OPS = ["reference", "kernels", "numpy"] + list(_blas.available())


def _torch_trajectory(w0, grads, settings):
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.AdamW([p], **settings)
    out = []
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        out.append(p.detach().numpy().copy())
    return out


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("size", [1000, ADAM_BLAS_MIN_SIZE + 3])  # the blocked form and, from 2^17, the BLAS form
@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "strong decay", "no decay"])
def test_adamw_update_follows_pytorch_step_by_step(kind, size, settings):
    if kind in ("reference", "kernels") and size > 1000:
        pytest.skip("one size is enough for the forms without a size threshold")
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=size)
    grads = [rng.normal(size=size) * 10.0 ** -k for k in range(6)]  # shrinking gradients: the moments matter
    want = _torch_trajectory(w0, grads, settings)
    ops, hyper = ops_of(kind), AdamWHyperparameters(**settings)
    p, m, v = w0.copy(), np.zeros(size), np.zeros(size)
    for t, (g, w) in enumerate(zip(grads, want), start=1):
        ops.adamw_update(p, g.copy(), m, v, t, hyper)
        np.testing.assert_allclose(p, w, rtol=1e-12, atol=1e-15, err_msg=f"step {t}")


@pytest.mark.parametrize("kind", OPS)
def test_adamw_update_float32_close_to_pytorch(kind):
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=4000).astype(np.float32)
    grads = [rng.normal(size=4000).astype(np.float32) for _ in range(4)]
    want = _torch_trajectory(w0, grads, SETTINGS[0])
    ops, hyper = ops_of(kind), AdamWHyperparameters(**SETTINGS[0])
    p, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t, g in enumerate(grads, start=1):
        ops.adamw_update(p, g, m, v, t, hyper)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, want[-1], rtol=2e-6, atol=1e-7)


def test_adamw_optimizer_trajectory_equals_pytorch_on_the_same_gradients(backend):
    """The optimizer on a network's flat buffer, fed the gradients of its own steps, against
    torch.optim.AdamW fed the same gradients: float64, 1e-12."""
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(32, 6)), rng.integers(0, 3, 32)
    net = gpubp.MLP([6, 8, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=0)
    opt = gpubp.AdamW(lr=5e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05)
    p = torch.nn.Parameter(torch.from_numpy(net.backend.to_numpy(net.params).copy()))
    topt = torch.optim.AdamW([p], lr=5e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05)
    for _ in range(20):
        net.loss_and_grads(X, Y)
        p.grad = torch.from_numpy(net.backend.to_numpy(net.grads).copy())
        opt.step(net)
        topt.step()
        np.testing.assert_allclose(net.backend.to_numpy(net.params), p.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert opt.t == 20


def test_adamw_decay_is_decoupled_from_the_gradient(backend):
    """With zero gradients Adam's L2 decay moves every weight by about lr (the moments normalise
    it away), AdamW's shrinks every weight by the factor 1 - lr wd, step after step."""
    net = gpubp.MLP([4, 3], loss="mse", dtype="float64", seed=0)
    w0 = net.backend.to_numpy(net.params).copy()
    opt = gpubp.AdamW(lr=0.1, weight_decay=0.5)
    for _ in range(3):
        net.grads[...] = 0.0
        opt.step(net)
    np.testing.assert_allclose(net.backend.to_numpy(net.params), w0 * (1 - 0.05) ** 3, rtol=1e-14)


def test_adamw_hyperparameters_are_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match="weight_decay"):
        gpubp.AdamW(weight_decay=-0.1)
    with pytest.raises(ValueError, match="betas"):
        gpubp.AdamW(betas=(0.9, 1.0))
    opt = gpubp.AdamW(1e-3)
    assert opt.weight_decay == 0.01  # torch.optim.AdamW's default
    with pytest.raises(ValueError, match="lr"):
        opt.lr = 0.0
    assert opt.lr == 1e-3
    opt.weight_decay = 0.2
    assert opt.hyper.weight_decay == 0.2
    net = gpubp.MLP([4, 3], loss="mse", seed=0)
    rng = np.random.default_rng(0)
    net.fit(rng.normal(size=(8, 4)), rng.normal(size=(8, 3)), epochs=2, batch_size=4, optimizer=opt, verbose=0)
    net.save(tmp_path / "c.npz", optimizer=opt)
    back = gpubp.load_optimizer(tmp_path / "c.npz", gpubp.load(tmp_path / "c.npz"))
    assert type(back) is gpubp.AdamW and back.hyper == opt.hyper and back.t == opt.t == 4
    assert type(gpubp.optim.make_optimizer("AdamW", lr=0.1)) is gpubp.AdamW
