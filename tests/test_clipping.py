"""Gradient clipping by global norm against torch.nn.utils.clip_grad_norm_: the reference op,
the NumPy backend (BLAS NRM2 and SCAL, or NumPy alone), the CUDA kernels built for the host,
and fit(clip_norm=...) against steps clipped by hand."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
import host_kernels
from helpers import ops_of
from gpubp.ops import _blas

torch = pytest.importorskip("torch")

BLASES = ["numpy"] + list(_blas.available())


OPS = ["reference", "kernels"] + [f"{b}" for b in BLASES]


def _torch_clip(pieces, max_norm):
    """(clipped pieces, total norm) from clip_grad_norm_ on tensors holding ``pieces`` as gradients."""
    params = [torch.nn.Parameter(torch.zeros(p.shape, dtype=torch.from_numpy(p).dtype)) for p in pieces]
    for p, g in zip(params, pieces):
        p.grad = torch.from_numpy(g.copy())
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad.numpy() for p in params], float(norm)


def _gradients(dtype, scale=1.0, size=5000):
    """A flat gradient buffer and its split into a network's pieces (weights and biases)."""
    rng = np.random.default_rng(7)
    flat = (rng.normal(size=size) * scale).astype(dtype)
    cuts = [0, 3000, 3100, 4900, 5000][: 5 if size == 5000 else 2]
    if size != 5000:
        cuts = [0, size]
    return flat, [flat[a:b].copy() for a, b in zip(cuts[:-1], cuts[1:])]


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and left alone
def test_clip_grad_norm_equals_pytorch(kind, dtype, max_norm):
    ops = ops_of(kind)
    flat, pieces = _gradients(dtype)
    want, want_norm = _torch_clip(pieces, max_norm)
    g = flat.copy()
    norm = float(ops.clip_grad_norm(g, max_norm))
    tol = 1e-13 if dtype == "float64" else 2e-6
    assert norm == pytest.approx(want_norm, rel=tol)
    np.testing.assert_allclose(g, np.concatenate(want), rtol=tol, atol=0)
    if max_norm > want_norm:
        assert np.array_equal(g, flat)  # not clipped: untouched
    else:
        # the norm after clipping: max_norm ||g|| / (||g|| + 1e-6), PyTorch's 1e-6 guard
        assert float(np.linalg.norm(g.astype(np.float64))) == pytest.approx(
            max_norm * want_norm / (want_norm + 1e-6), rel=tol * 10)


@pytest.mark.parametrize("kind", OPS)
@pytest.mark.parametrize("size", [1, 2047, 2049, 70001])  # below, around and well above one chunk of partial sums
def test_clip_grad_norm_any_size(kind, size):
    ops = ops_of(kind)
    flat, pieces = _gradients("float64", size=size)
    want, want_norm = _torch_clip(pieces, 0.1)
    g = flat.copy()
    assert float(ops.clip_grad_norm(g, 0.1)) == pytest.approx(want_norm, rel=1e-13)
    np.testing.assert_allclose(g, np.concatenate(want), rtol=1e-13, atol=0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("kind", OPS)
def test_clip_grad_norm_spreads_nan_and_inf_as_pytorch(kind):
    ops = ops_of(kind)
    for bad in (np.nan, np.inf):
        flat, pieces = _gradients("float64", size=10)
        flat[3] = bad
        pieces = [flat.copy()]
        want, want_norm = _torch_clip(pieces, 1.0)
        g = flat.copy()
        norm = float(ops.clip_grad_norm(g, 1.0))
        assert np.isnan(norm) == np.isnan(want_norm) and (np.isnan(norm) or norm == want_norm)
        np.testing.assert_array_equal(g, want[0])  # inf * 0 and NaN * anything: NaN, as PyTorch


def test_clip_kernels_launch_three_times_without_reading_back():
    """On the GPU the clip is three launches (partial sums, factor, scaling) and no read-back:
    counted on the host build with a stand-in for the launches."""
    if host_kernels.compiler_missing():
        pytest.skip(host_kernels.compiler_missing())
    ops = host_kernels.host_cupy_ops(host_kernels.build())
    launched = []
    real = ops.kernels.launch

    def count(name, *args, **kw):
        launched.append(name)
        return real(name, *args, **kw)

    ops.kernels.launch = count
    g = np.ones(10000)
    norm = ops.clip_grad_norm(g, 1.0)
    assert launched == ["grad_sq_norm_parts", "grad_clip_factor", "grad_scale"]
    assert np.ndim(norm) == 0 and float(norm) == 100.0  # a 0-d value left on the device


def test_fit_with_clip_norm_equals_steps_clipped_by_hand(backend):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 5)) * 3, rng.normal(size=(40, 2)) * 3
    make = lambda: gpubp.MLP([5, 8, 2], activation="tanh", loss="mse", dtype="float64", seed=3)  # noqa: E731
    a, b = make(), make()
    opt_a, opt_b = gpubp.SGD(0.1, momentum=0.9), gpubp.SGD(0.1, momentum=0.9)
    a.fit(X, Y, epochs=2, batch_size=10, optimizer=opt_a, shuffle=False, clip_norm=0.05, verbose=0)
    norms = []
    for _ in range(2):
        for s in range(0, 40, 10):
            b.loss_and_grads(X[s:s + 10], Y[s:s + 10])
            norms.append(float(np.linalg.norm(b.backend.to_numpy(b.grads))))
            b.train_step(X[s:s + 10], Y[s:s + 10], opt_b, clip_norm=0.05)
    assert min(norms) > 0.05  # every step was clipped
    np.testing.assert_allclose(a.backend.to_numpy(a.params), b.backend.to_numpy(b.params), rtol=1e-13, atol=1e-15)


def test_train_step_clip_norm_against_pytorch_sgd(backend):
    """One step of a network against torch: autograd's gradients, clip_grad_norm_, SGD."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(16, 4)), rng.normal(size=(16, 3))
    net = gpubp.MLP([4, 6, 3], activation="tanh", output_activation="identity", loss="mse", dtype="float64", seed=0)
    layers = [(net.backend.to_numpy(d.W).copy(), net.backend.to_numpy(d.b).copy()) for d in net.layers[1:]]
    tparams = [torch.tensor(w, requires_grad=True) for pair in layers for w in pair]
    Xt = torch.tensor(X)
    h = torch.tanh(Xt @ tparams[0].T + tparams[1])
    out = h @ tparams[2].T + tparams[3]
    loss = ((out - torch.tensor(Y)) ** 2).mean(dim=1).mean()  # mse: sse / outputs, averaged over rows
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tparams, 0.01)
    with torch.no_grad():
        want = [p - 0.2 * p.grad for p in tparams]
    net.train_step(X, Y, gpubp.SGD(0.2), clip_norm=0.01)
    got = [net.backend.to_numpy(a) for d in net.layers[1:] for a in (d.W, d.b)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", BLASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_clipping_rounds_alike_wherever_the_buffer_lies(kind, dtype):
    """Replicas of a distributed run hold the same gradients at different addresses: the clipped
    values must not depend on the address (MKL's NRM2 does, its DOT does not)."""
    ops = ops_of(kind)
    flat, _ = _gradients(dtype, size=100003)
    results = set()
    for offset in range(8):
        buf = np.empty(flat.size + 8, dtype=dtype)
        g = buf[offset:offset + flat.size]
        g[...] = flat
        norm = float(ops.clip_grad_norm(g, 0.5))
        results.add((norm, g.tobytes()))
    assert len(results) == 1


def test_a_clipped_adamw_step_on_the_stand_in_device():
    """The CuPy path of a step with clipping and AdamW, on the stand-in device (every launch checked
    as the driver would: argument types, array lengths, grid and block): clipping adds three
    launches to a step, AdamW's update is one launch like SGD's."""
    from gpubp.ops.cuda_launcher import CudaKernels
    from gpubp.ops.standin import StandInCompiler, StandInDevice, standin_backend

    device = StandInDevice(name="clip-adamw")
    backend = standin_backend(CudaKernels(device, StandInCompiler(), disk=None))
    with gpubp.use_backend(backend):
        net = gpubp.MLP([784, 512, 256, 10], loss="cross_entropy", seed=0)
    X, y = np.zeros((256, 784), np.float32), np.zeros(256, np.int64)
    counts = {}
    for name, opt, clip in (("sgd", gpubp.SGD(0.01), None), ("adamw", gpubp.AdamW(), None),
                            ("adamw clipped", gpubp.AdamW(), 1.0)):
        net.train_batch(X, y, opt, clip_norm=clip)
        device.reset()
        net.train_batch(X, y, opt, clip_norm=clip)
        counts[name] = (device.launches, dict(device.kernels))
    assert counts["adamw"][0] == counts["sgd"][0] and counts["adamw"][1]["adamw"] == 1
    assert counts["adamw clipped"][0] == counts["adamw"][0] + 3
    assert all(counts["adamw clipped"][1][k] == 1 for k in ("grad_sq_norm_parts", "grad_clip_factor", "grad_scale"))
