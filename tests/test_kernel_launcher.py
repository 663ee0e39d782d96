"""The launcher checks arguments once per signature, and still refuses every wrong call: a
new signature is checked in full, values that change per call (scalars, the contents of
copied inputs) are converted per call. Run on the host build of the kernels."""
from __future__ import annotations

import numpy as np
import pytest

import host_kernels
from gpubp.activations import ACTIVATIONS
from gpubp.ops.cuda_launcher import CudaKernels
from gpubp.ops.standin import StandInCompiler, StandInDevice

pytestmark = pytest.mark.skipif(host_kernels.compiler_missing() is not None,
                                reason=str(host_kernels.compiler_missing()))


@pytest.fixture
def launcher():
    return host_kernels.host_launcher()


def test_a_known_signature_skips_the_check_but_not_the_work(launcher):
    rng = np.random.default_rng(0)
    for _ in range(3):  # the same signature, new values every call
        Z, dA = rng.normal(size=(2, 5, 4))
        A = np.tanh(Z)
        out = np.empty_like(Z)
        launcher.launch("act_backward", Z.dtype, dA, Z, A, out, Z.size, act="tanh")
        np.testing.assert_allclose(out, dA * (1 - A * A), rtol=1e-15)
    assert len(launcher._plans) == 1


def test_a_new_signature_is_checked_in_full(launcher):
    Z = np.ones((4, 3))
    A = np.empty_like(Z)
    launcher.launch("act_forward", Z.dtype, Z, A, 4, 3, act="relu")
    with pytest.raises(TypeError, match="must have dtype float64; got float32"):
        launcher.launch("act_forward", Z.dtype, Z, A.astype(np.float32), 4, 3, act="relu")
    with pytest.raises(ValueError, match="must hold rows=4\\*cols=3 = 12 elements; got shape \\(4, 2\\)"):
        launcher.launch("act_forward", Z.dtype, Z, np.empty((4, 2)), 4, 3, act="relu")
    with pytest.raises(ValueError, match="must hold rows=5\\*cols=3 = 15 elements"):
        launcher.launch("act_forward", Z.dtype, Z, A, 5, 3, act="relu")  # another size: another signature
    with pytest.raises(ValueError, match="output A must be C-contiguous"):
        launcher.launch("act_forward", Z.dtype, Z, np.ones((3, 4)).T, 4, 3, act="relu")
    with pytest.raises(TypeError, match="must be a numpy array; got list"):
        launcher.launch("act_forward", Z.dtype, Z, [0.0] * 12, 4, 3, act="relu")
    with pytest.raises(TypeError, match="takes 4 arguments \\(Z, A, rows, cols\\); got 3"):
        launcher.launch("act_forward", Z.dtype, Z, A, 4, act="relu")
    with pytest.raises(ValueError, match="needs an elementwise activation"):
        launcher.launch("act_forward", Z.dtype, Z, A, 4, 3, act="softmax_typo")
    with pytest.raises(ValueError, match="unknown kernel 'nope'"):
        launcher.launch("nope", Z.dtype, Z)
    with pytest.raises(TypeError, match="float32 or float64"):
        launcher.launch("act_forward", np.int32, Z, A, 4, 3, act="relu")
    assert len(launcher._plans) == 1  # only the valid call was remembered


def test_non_contiguous_inputs_are_copied_on_every_call(launcher):
    rng = np.random.default_rng(1)
    for _ in range(2):
        base = rng.normal(size=(6, 8))
        Z = base[:, ::2]  # strided: read through a contiguous copy, made anew each call
        A = ACTIVATIONS["tanh"].forward(np, Z)
        dA = rng.normal(size=Z.shape)
        out = np.empty(Z.shape)
        launcher.launch("act_backward", "float64", dA, Z, np.asfortranarray(A), out, Z.size, act="tanh")
        np.testing.assert_allclose(out, dA * (1 - A * A), rtol=1e-15)
    labels = np.array([0, 2, 1], dtype=np.int32)  # read as int64 through a copy
    Zs = np.random.default_rng(2).normal(size=(3, 3))
    As = ACTIVATIONS["softmax"].forward(np, Zs)
    Delta, C0 = np.empty_like(Zs), np.empty(3)
    for _ in range(2):
        launcher.launch("head_xent_labels", "float64", Zs, As, labels, Delta, C0, 3, 3)
        want = As - np.eye(3)[labels]
        np.testing.assert_allclose(Delta, want, rtol=1e-14, atol=1e-16)


def test_scalars_and_flags_are_converted_per_call(launcher):
    p, g, v = np.ones(10, np.float32), np.full(10, 0.5, np.float32), np.zeros(10, np.float32)
    for lr, nesterov in ((0.1, False), (0.2, True), (0.3, 0)):
        before = p.copy()
        v_before = v.copy()
        launcher.launch("sgd_momentum", p.dtype, p, g, v, p.size, lr, 0.9, 0.0, nesterov)
        v_new = 0.9 * v_before + g
        step = g + 0.9 * v_new if nesterov else v_new
        np.testing.assert_allclose(p, before - np.float32(lr) * step, rtol=1e-6)
    assert len(launcher._plans) == 1


def test_empty_work_launches_nothing():
    device = StandInDevice(name="empty")
    k = CudaKernels(device, StandInCompiler(), disk=None)
    Z = np.empty((0, 3), np.float32)
    for _ in range(2):
        k.launch("act_forward", Z.dtype, Z, Z.copy(), 0, 3, act="relu")
    assert device.launches == 0


def test_gemm_checks_each_signature_once_and_refuses_wrong_operands(launcher):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    out = np.empty((5, 4))
    for alpha in (1.0, 0.5):
        launcher.gemm("N", "T", a, b, out, alpha)
        np.testing.assert_allclose(out, alpha * a @ b.T, rtol=1e-14)
    assert len(launcher._gemms) == 1
    with pytest.raises(ValueError, match="out must be \\(5, 4\\)"):
        launcher.gemm("N", "T", a, b, np.empty((4, 5)))
    with pytest.raises(ValueError, match="inner sizes"):
        launcher.gemm("N", "N", a, b, out)
    with pytest.raises(TypeError, match="share a dtype"):
        launcher.gemm("N", "T", a, b.astype(np.float32), out)
    with pytest.raises(ValueError, match="C-contiguous"):
        launcher.gemm("N", "T", a, b, np.empty((4, 5)).T)
    with pytest.raises(ValueError, match="'N' or 'T'"):
        launcher.gemm("C", "T", a, b, out)
    assert len(launcher._gemms) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tall_bias_gradient_and_loss_value_take_two_deterministic_passes(dtype):
    device = host_kernels.HostDevice(multiprocessors=3)  # 3 blocks fill it: a tall Delta splits in 3 chunks
    ops = host_kernels.host_cupy_ops(launcher=host_kernels.host_launcher(device))
    rng = np.random.default_rng(4)
    Delta = rng.normal(size=(1000, 20)).astype(dtype)
    want = Delta.astype(np.float64).mean(axis=0)
    outs = []
    for _ in range(2):
        out = np.empty(20, dtype=dtype)
        device.launches = 0
        ops.grad_bias(Delta, out)
        assert device.launches == 2  # partial sums over chunks of rows, then their sum
        outs.append(out)
    np.testing.assert_allclose(outs[0], want, rtol=1e-5 if dtype == "float32" else 1e-13, atol=1e-6)
    assert np.array_equal(outs[0], outs[1])  # same order of additions every time
    short = np.empty(20, dtype=dtype)
    device.launches = 0
    ops.grad_bias(Delta[:256], short)
    assert device.launches == 1
    np.testing.assert_allclose(short, Delta[:256].astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)

    from gpubp.activations import ACTIVATIONS
    from gpubp.losses import LOSSES

    Z = rng.normal(size=(1000, 4)).astype(dtype)
    A = ACTIVATIONS["softmax"].forward(np, Z).astype(dtype)
    y = rng.integers(0, 4, 1000)
    C = ops.loss_head(LOSSES["cross_entropy"], ACTIVATIONS["softmax"], Z, A, y, np.empty_like(Z))
    assert C.shape == () and C.dtype == np.dtype(dtype)
    want_C = LOSSES["cross_entropy"].value(np, Z.astype(np.float64), A.astype(np.float64), y).mean()
    assert abs(float(C) - want_C) <= (1e-5 if dtype == "float32" else 1e-12) * abs(want_C)
