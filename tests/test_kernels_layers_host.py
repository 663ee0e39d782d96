"""The dropout and BatchNorm kernels (``activation.cu``, ``batch_norm.cu``) built for the host and
compared with the NumPy path: the generator bit for bit against NumPy's Philox (the masks of a
seed are the same on both backends), the fused passes and the row reductions against the
reference :class:`gpubp.ops.base.Ops`, and whole training steps of CupyOps with these kernels."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import gpubp
import host_kernels
from host_kernels import as_matrix, assert_close, z_grid, z_scale
from gpubp import philox
from gpubp.activations import ACTIVATIONS, ELEMENTWISE
from gpubp.layers import BatchNorm, Dense, Dropout, layer_from_config
from gpubp.layers.dropout import Draw
from gpubp.ops.base import Ops


pytestmark = pytest.mark.skipif(host_kernels.compiler_missing() is not None,
                                reason=str(host_kernels.compiler_missing()))

DTYPES = ["float32", "float64"]
REF = Ops(np)
SEED = 0x9E3779B97F4A7C15


@pytest.fixture(scope="module")
def kernels():
    return host_kernels.build()


def draw(shape, dtype, p=0.3, call=5, offset=0, stream=2, out=None):
    """A draw whose mask the NumPy path fills on the host (for REF) and the kernels compute."""
    out = np.empty(shape, dtype=dtype) if out is None else out
    return Draw(p, SEED, stream, call, offset, out, np.empty(shape, dtype=dtype), philox.Stream(SEED, stream))


def drop_args(d):
    return d.p, d.scale, d.seed, d.stream, d.call, d.offset


# ---- the generator ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 5, 1234567])
@pytest.mark.parametrize("grid", [1, 3])
def test_kernel_masks_are_numpys_masks_bit_for_bit(kernels, dtype, offset, grid):
    shape = (37, 11)
    d = draw(shape, dtype, p=0.4, offset=offset)
    mask = d.fill_mask(d.mask)
    X = np.ones(shape, dtype=dtype)
    out = np.full(shape, 7.0, dtype=dtype)
    kernels.run("dropout_forward", dtype, X, out, X.size, *drop_args(d), grid=grid)
    np.testing.assert_array_equal(out, mask)
    assert 0.5 < float((mask > 0).mean()) < 0.7
    back = np.full(shape, 2.0, dtype=dtype)
    kernels.run("dropout_backward", dtype, back, back, back.size, *drop_args(d), grid=grid)  # in place
    np.testing.assert_array_equal(back, np.full(shape, 2.0, dtype=dtype) * mask)


def test_kernel_rows_of_a_later_rank_continue_the_stream(kernels):
    """A rank whose rows start at row r of the step draws what one process draws there."""
    whole = draw((10, 7), "float32").fill_mask(np.empty((10, 7), np.float32))
    part = draw((4, 7), "float32", offset=6 * 7)
    out = np.empty((4, 7), np.float32)
    kernels.run("dropout_forward", "float32", np.ones((4, 7), np.float32), out, 28, *drop_args(part), grid=2)
    np.testing.assert_array_equal(out, whole[6:])


# ---- dropout fused into the activation passes --------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_fused_dropout_forward_and_backward(kernels, name, dtype):
    act = ACTIVATIONS[name]
    Z = as_matrix(z_grid(dtype))
    rows, cols = Z.shape
    b = np.random.default_rng(1).normal(size=cols).astype(dtype)
    for bias in (None, b):
        d = draw(Z.shape, dtype, offset=3)
        Z_ref, A_ref = Z.copy(), np.empty_like(Z)
        with np.errstate(all="ignore"):
            REF.bias_activation(Z_ref, bias, act, A_ref, dropout=d)
        Zk, A, D = Z.copy(), np.empty_like(Z), np.empty_like(Z)
        if bias is None:
            kernels.run("act_dropout_forward", dtype, Zk, A, D, rows, cols, *drop_args(d), act=name, grid=4)
        else:
            kernels.run("bias_act_dropout_forward", dtype, Zk, bias, A, D, rows, cols, *drop_args(d), act=name, grid=4)
        assert np.array_equal(Zk, Z_ref, equal_nan=True)
        assert_close(A, A_ref, dtype, z_scale(Z_ref), what=f"{name} forward")
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(D, A * d.mask)  # the same mask, applied to the kernel's own A
    dA = np.random.default_rng(2).normal(size=Z.shape).astype(dtype)
    d = draw(Z.shape, dtype, offset=3)
    d.fill_mask(d.mask)
    with np.errstate(all="ignore"):
        A = act.forward(np, Z)
        want = np.empty_like(Z)
        REF.activation_backward(dA, Z, A, act, out=want, dropout=d)
    got = dA.copy()
    kernels.run("act_dropout_backward", dtype, got, Z, A, got, Z.size, *drop_args(d), act=name, grid=3)
    assert_close(got, want, dtype, z_scale(Z) * np.abs(dA) * d.scale, what=f"{name} Delta below dropout")


# ---- BatchNorm -------------------------------------------------------------------------
def bn_inputs(dtype, rows=23, cols=13, seed=3):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(rows, cols)) * rng.uniform(0.1, 5, cols) + rng.normal(0, 50, cols)).astype(dtype)
    shift = (X.mean(axis=0) + rng.normal(0, 1, cols)).astype(dtype)
    gamma = rng.uniform(0.5, 2, cols).astype(dtype)
    beta = rng.normal(size=cols).astype(dtype)
    return X, shift, gamma, beta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training,update", [(True, True), (True, False), (False, False)])
def test_batch_norm_statistics(kernels, dtype, training, update):
    X, shift, _, _ = bn_inputs(dtype)
    rows, cols = X.shape
    s_ref = np.empty(2 * cols, dtype)
    REF.batch_norm_sums(X, shift, s_ref[:cols], s_ref[cols:], np.empty_like(X), np.empty_like(X))
    for grid in (1, 2):
        s = np.full(2 * cols, 9.0, dtype)
        kernels.run("bn_sums", dtype, X, shift, s[:cols], s[cols:], rows, cols, 1, grid=grid)
        assert_close(s[:cols], s_ref[:cols], dtype, rtol_eps=rows, atol_eps=rows, scale=np.abs(X - shift).max(),
                     what="s1")
        assert_close(s[cols:], s_ref[cols:], dtype, rtol_eps=2 * rows, what="s2")
    outs = []
    for impl in ("ref", "kernel"):
        rm = np.linspace(-1, 1, cols).astype(dtype)
        rv = np.linspace(0.5, 2, cols).astype(dtype)
        mean, inv_std = np.empty(cols, dtype), np.empty(cols, dtype)
        s1, s2 = s_ref[:cols].copy(), s_ref[cols:].copy()
        args = (s1, s2, shift, rm, rv, mean, inv_std)
        if impl == "ref":
            REF.batch_norm_stats(*args, float(rows), 0.1, 1e-5, training, update)
        else:
            kernels.run("bn_stats", dtype, *args, cols, float(rows), 0.1, 1e-5, training, update, grid=2)
        outs.append((rm, rv, mean, inv_std))
    for got, want, what in zip(outs[1], outs[0], ("running_mean", "running_var", "mean", "inv_std")):
        assert_close(got, want, dtype, rtol_eps=64, atol_eps=64, scale=50.0 if "mean" in what else 1.0, what=what)
    if training:
        np.testing.assert_allclose(outs[1][2], X.astype(float).mean(axis=0), rtol=1e-5 if dtype == "float32" else 1e-12)
        np.testing.assert_allclose(outs[1][3] ** -2.0, X.astype(float).var(axis=0) + 1e-5,
                                   rtol=1e-4 if dtype == "float32" else 1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [None, "relu", "tanh", "gelu", "silu"])
@pytest.mark.parametrize("dropped", [False, True])
def test_batch_norm_forward_and_backward(kernels, dtype, name, dropped):
    act = None if name is None else ACTIVATIONS[name]
    if act is None and dropped:
        pytest.skip("a dropout rides in BatchNorm's pass only after an activation")
    X, shift, gamma, beta = bn_inputs(dtype)
    rows, cols = X.shape
    rng = np.random.default_rng(4)
    mean = X.mean(axis=0).astype(dtype)
    inv_std = (1.0 / np.sqrt(X.var(axis=0) + 1e-5)).astype(dtype)
    arrays = {}
    for impl in ("ref", "kernel"):
        d = draw(X.shape, dtype, offset=7) if dropped else None
        Xhat, Y = np.empty_like(X), np.empty_like(X)
        A = Y if act is None else np.empty_like(X)
        if impl == "ref":
            REF.batch_norm_forward(X, mean, inv_std, gamma, beta, Xhat, Y, act, A, dropout=d)
        elif d is None:
            kernels.run("bn_forward", dtype, X, mean, inv_std, gamma, beta, Xhat, Y, A, rows, cols,
                        act=name or "identity", grid=3)
        else:
            kernels.run("bn_dropout_forward", dtype, X, mean, inv_std, gamma, beta, Xhat, Y, A, d.out, rows, cols,
                        *drop_args(d), act=name, grid=3)
        arrays[impl] = (Xhat, Y, A, None if d is None else d.out)
    for got, want, what in zip(arrays["kernel"], arrays["ref"], ("zhat", "y", "a", "dropped")):
        if want is not None:
            assert_close(got, want, dtype, rtol_eps=16, atol_eps=16, scale=np.abs(want).max(), what=what)
    Xhat, Y, A, _ = arrays["ref"]
    dout = rng.normal(size=X.shape).astype(dtype)
    grads = {}
    for impl in ("ref", "kernel"):
        d = draw(X.shape, dtype, offset=7) if dropped else None
        if d is not None:
            d.fill_mask(d.mask)
        delta = dout.copy()
        s = np.empty(2 * cols, dtype)
        dgamma, dbeta, dX = np.empty(cols, dtype), np.empty(cols, dtype), np.empty_like(X)
        if impl == "ref":
            REF.batch_norm_backward_sums(delta, Y, A, act, Xhat, s[:cols], s[cols:], dropout=d, work=np.empty_like(X))
            REF.batch_norm_backward(delta, Xhat, s[:cols], s[cols:], gamma, inv_std, float(rows), True, dgamma, dbeta,
                                    dX, np.empty_like(X), np.empty(cols, dtype))
        else:
            kernel = "bn_backward_sums" if d is None else "bn_dropout_backward_sums"
            extra = () if d is None else drop_args(d)
            kernels.run(kernel, dtype, delta, Y, A, Xhat, s[:cols], s[cols:], rows, cols, 1, *extra,
                        act=name or "identity", grid=2)
            kernels.run("bn_param_grads", dtype, s[:cols], s[cols:], dgamma, dbeta, cols, float(rows), grid=2)
            kernels.run("bn_backward", dtype, delta, Xhat, dgamma, dbeta, gamma, inv_std, dX, rows, cols, True, grid=3)
        grads[impl] = (delta, dgamma, dbeta, dX)
    scale = np.abs(dout).max() * (2.0 if dropped else 1.0) * np.abs(gamma).max() * np.abs(inv_std).max()
    for got, want, what in zip(grads["kernel"], grads["ref"], ("Delta", "dC/dgamma", "dC/dbeta", "dX")):
        assert_close(got, want, dtype, rtol_eps=4 * rows, atol_eps=4 * rows, scale=scale, what=what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chunks,grid", [(3, 1), (3, (2, 2)), (7, (1, 3)), (23, (3, 5))])
@pytest.mark.parametrize("name", ["bn_sums", "bn_backward_sums", "bn_dropout_backward_sums"])
def test_batch_norm_sums_split_into_chunks_of_rows(kernels, dtype, chunks, grid, name):
    """A tall batch's sums in two passes: partial sums per chunk of rows (grids smaller than
    the column tiles and the chunks wrap in both directions), which bias_grad adds up, equal
    the sums over every row; the backward sums' in-place Delta covers every row once."""
    X, shift, _, _ = bn_inputs(dtype, rows=37, cols=13)
    rows, cols = X.shape
    per = -(-rows // chunks)
    rng = np.random.default_rng(5)
    dout = rng.normal(size=X.shape).astype(dtype)
    Y = rng.normal(size=X.shape).astype(dtype)
    A = np.maximum(Y, 0)
    d = draw(X.shape, dtype, offset=3) if name == "bn_dropout_backward_sums" else None

    def run(chunks_, s1, s2):
        delta = dout.copy()
        if name == "bn_sums":
            kernels.run(name, dtype, X, shift, s1, s2, rows, cols, chunks_, grid=grid)
        else:
            extra = () if d is None else drop_args(d)
            kernels.run(name, dtype, delta, Y, A, X, s1, s2, rows, cols, chunks_, *extra, act="relu", grid=grid)
        return delta

    whole = np.full(2 * cols, 9.0, dtype)
    delta_whole = run(1, whole[:cols], whole[cols:])
    partial = np.full(2 * chunks * cols, 9.0, dtype)
    p1, p2 = partial[: chunks * cols], partial[chunks * cols:]
    delta_split = run(chunks, p1, p2)
    np.testing.assert_array_equal(delta_split, delta_whole)
    if name == "bn_sums":
        D = X.astype(np.float64) - shift
        terms = (D, D * D)
    else:
        terms = (delta_whole.astype(np.float64), delta_whole.astype(np.float64) * X)
    for p, term in zip((p1, p2), terms):
        want = np.stack([term[k * per:(k + 1) * per].sum(axis=0) for k in range(chunks)])
        scale = np.abs(term).max()
        assert_close(p.reshape(chunks, cols), want, dtype, rtol_eps=2 * per, atol_eps=2 * per, scale=scale,
                     what=f"{name} partial sums")
    s = np.full(2 * cols, 9.0, dtype)
    for p, out in ((p1, s[:cols]), (p2, s[cols:])):
        kernels.run("bias_grad", dtype, p, out, chunks, cols, 1, 1.0, grid=grid)
    for got, want, term in ((s[:cols], whole[:cols], terms[0]), (s[cols:], whole[cols:], terms[1])):
        assert_close(got, want, dtype, rtol_eps=4 * rows, atol_eps=4 * rows, scale=np.abs(term).max() * rows,
                     what=f"{name} in two passes")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_tall_batch_norm_step_takes_two_deterministic_passes_per_sum(dtype, dropout):
    """On a device that a tall batch's column tiles alone do not fill, CupyOps splits BatchNorm's
    sums (forward and backward) over chunks of rows and adds the partial sums in a second pass:
    the step equals NumPy's, repeats bit for bit, and a short batch keeps one launch per sum."""
    layers = lambda: [Dense(20, None), BatchNorm(activation="relu"), Dropout(dropout), Dense(3)]  # noqa: E731
    rng = np.random.default_rng(6)
    X, y = rng.normal(2.0, 3.0, size=(1000, 6)), rng.integers(0, 3, 1000)
    runs = []
    for ops_kind in ("numpy", "host", "host"):
        with gpubp.use_backend("numpy"):
            net = gpubp.MLP.from_layers(6, layers(), loss="cross_entropy", dtype=dtype, seed=2)
        device = None
        if ops_kind == "host":
            device = host_kernels.HostDevice(multiprocessors=3)  # 3 blocks fill it: the 1000 rows split in 3
            net.backend = dataclasses.replace(net.backend, ops=host_kernels.host_cupy_ops(
                launcher=host_kernels.host_launcher(device)))
            device.grids = []
        opt = gpubp.SGD(0.05)
        losses = [float(net.train_step(X, y, opt)) for _ in range(2)]
        runs.append((net, losses, device))
    (ref, ref_losses, _), (a, a_losses, dev), (b, b_losses, _) = runs
    names = [name for name, _ in dev.grids]
    sums = "bn_backward_sums" if dropout == 0.0 else "bn_dropout_backward_sums"
    # per step: the sums forward (twice in the first step, to centre on its own mean) and backward,
    # each followed by the two passes of bias_grad that add up its partial sums
    for kernel in ("bn_sums", sums):
        at = [i for i, name in enumerate(names) if name == kernel]
        assert at and all(names[i + 1:i + 3] == ["bias_grad", "bias_grad"] for i in at), names
    assert names.count("bn_sums") == 3 and names.count(sums) == 2
    rtol = {"float32": 2e-5, "float64": 1e-12}[dtype]
    np.testing.assert_allclose(a_losses, ref_losses, rtol=rtol)
    for got, want, what in ((a.params, ref.params, "parameters"), (a.state, ref.state, "running statistics")):
        err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)
        assert err < rtol, f"{what} after 2 steps differ by {err:.2e}"
    assert a_losses == b_losses and np.array_equal(a.params, b.params) and np.array_equal(a.state, b.state)


# ---- CupyOps with these kernels, whole training steps --------------------------------------
ARCHS = {
    "dropout": lambda: [Dense(9, "gelu_tanh"), Dropout(0.3), Dense(7, "elu"), Dropout(0.2), Dense(4)],
    "batch_norm": lambda: [Dense(9, None), BatchNorm(activation="relu"), Dense(7, None, bias=False), BatchNorm(),
                           Dense(4)],
    "both": lambda: [Dropout(0.1), BatchNorm(), Dense(9, None), BatchNorm(activation="silu"), Dropout(0.4),
                     Dense(7, "tanh"), Dropout(0.0), Dense(4)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_cupy_ops_training_steps_with_layers_match_numpy(kernels, dtype, arch, loss):
    rng = np.random.default_rng(8)
    X = rng.normal(1.0, 2.0, size=(13, 5))
    Y = rng.integers(0, 4, 13) if loss == "cross_entropy" else rng.normal(size=(13, 4))
    runs = []
    for ops in (None, host_kernels.host_cupy_ops(kernels)):
        with gpubp.use_backend("numpy"):
            net = gpubp.MLP.from_layers(5, ARCHS[arch](), loss=loss, dtype=dtype, seed=4)
        if ops is not None:
            net.backend = dataclasses.replace(net.backend, ops=ops)
        # SGD: Adam divides every gradient entry by its own magnitude, so an entry of rounding size
        # (a unit gelu_tanh saturates) takes a step of size lr whose sign the rounding decides
        opt = gpubp.SGD(0.05, momentum=0.9)
        losses = [float(net.train_step(X, Y, opt)) for _ in range(3)]
        A = net.forward(X)  # inference: the running statistics
        runs.append((net, losses, A))
    (ref, ref_losses, ref_A), (host, host_losses, host_A) = runs
    rtol = {"float32": 2e-5, "float64": 1e-12}[dtype]
    np.testing.assert_allclose(host_losses, ref_losses, rtol=rtol)
    for a, b, what in ((host.params, ref.params, "parameters"), (host.state, ref.state, "running statistics"),
                       (host_A, ref_A, "inference outputs")):
        if not b.size:
            continue
        err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)
        assert err < rtol, f"{what} after 3 steps differ by {err:.2e}"
    assert host.host_state() == ref.host_state()


def _launches(kernels, layers, steps=2):
    """The names of the kernels each of ``steps`` SGD steps launches, on the host device (which
    records every launch) through gpubp's own launcher."""
    device = host_kernels.HostDevice()
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP.from_layers(6, layers, loss="cross_entropy", seed=0)
    net.backend = dataclasses.replace(net.backend, ops=host_kernels.host_cupy_ops(
        launcher=host_kernels.host_launcher(device)))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 6)), rng.integers(0, 3, 8)
    opt = gpubp.SGD(0.1)
    per_step = []
    for _ in range(steps):
        device.grids = []
        net.train_step(X, y, opt)
        per_step.append([name for name, _ in device.grids])
    return per_step


def test_a_dropout_after_an_activation_adds_no_launch(kernels):
    """Fused: the dropout rides in the activation's forward and backward kernels."""
    plain = _launches(kernels, [Dense(10, "relu"), Dense(9, "tanh"), Dense(3)])[-1]
    dropped = _launches(kernels, [Dense(10, "relu"), Dropout(0.5), Dense(9, "tanh"), Dropout(0.2), Dense(3)])[-1]
    assert len(dropped) == len(plain)
    assert dropped.count("bias_act_dropout_forward") == 2 and dropped.count("act_dropout_backward") == 2
    assert "dropout_forward" not in dropped and "dropout_backward" not in dropped
    # on its own (on the inputs, after a linear part) it is one launch each way
    alone = _launches(kernels, [Dropout(0.1), Dense(10, None), Dropout(0.3), Dense(3)])[-1]
    assert alone.count("dropout_forward") == 2 and alone.count("dropout_backward") == 1  # none below the first layer


def test_batch_norm_launches(kernels):
    """Per BatchNorm: sums, statistics and one fused pass forward (the first pass sums twice, to
    centre on its own mean); the sums with the activation's derivative, the parameter gradients
    and one pass backward."""
    first, later = _launches(kernels, [Dense(10, None), BatchNorm(activation="relu"), Dropout(0.5), Dense(3)])
    bn = [name for name in later if name.startswith("bn_")]
    assert bn == ["bn_sums", "bn_stats", "bn_dropout_forward", "bn_dropout_backward_sums", "bn_param_grads",
                  "bn_backward"]
    assert [name for name in first if name.startswith("bn_")] == ["bn_sums"] + bn
    assert "dropout_forward" not in later and "act_backward" not in later


def test_layer_sources_are_compiled_once_and_only_for_networks_with_those_layers():
    compiler = host_kernels.HostCompiler(host_kernels.build_dir())
    device = host_kernels.HostDevice(name=f"layers-{id(compiler)}")
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(8, 6)), rng.integers(0, 3, 8)
    for k, layers in enumerate(([Dense(7, "tanh"), Dense(3)],
                                [Dense(7, "tanh"), Dropout(0.3), Dense(3)],
                                [Dense(7, None), BatchNorm(activation="relu"), Dropout(0.2), Dense(3)])):
        for _ in range(2):  # a second backend on the same device compiles nothing
            launcher = host_kernels.host_launcher(device, compiler)
            with gpubp.use_backend(host_kernels.host_backend(launcher=launcher)):
                net = gpubp.MLP.from_layers(6, layers if _ == 0 else [layer_from_config(layer.get_config())
                                                                      for layer in layers], loss="cross_entropy",
                                            seed=0)
            net.train_step(X, y, gpubp.SGD(0.1))
        used = {s for s, _ in compiler.calls}
        assert ("dropout.cu" in used) == (k >= 1) and ("batch_norm.cu" in used) == (k == 2), used
    assert all(count == 1 for count in compiler.calls.values()), compiler.calls


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_layer_launch_passes_the_drivers_checks_on_the_stand_in_device(dtype):
    """Each launch of a step with Dropout and BatchNorm (first pass, later passes, inference)
    carries one argument of the C type the kernel takes (the generator's words as 64-bit
    unsigned integers), arrays long enough, grids and blocks within CUDA's limits."""
    from gpubp.ops.standin import StandInDevice, standin_backend, standin_kernels

    device = StandInDevice(name=f"layers-{dtype}")
    with gpubp.use_backend(standin_backend(standin_kernels(device))):
        net = gpubp.MLP([20, 64, 32, 4], activation="gelu", loss="cross_entropy", dtype=dtype, seed=0, dropout=0.3,
                        batch_norm=True)
        first = gpubp.MLP.from_layers(20, [Dropout(0.2), BatchNorm(), Dense(16, None), Dropout(0.5), Dense(4)],
                                      loss="cross_entropy", dtype=dtype, seed=1)
    X, y = np.zeros((300, 20), dtype), np.zeros(300, np.int64)
    for model in (net, first):
        for _ in range(2):
            model.train_batch(X, y, gpubp.SGD(0.1, momentum=0.9))
        model.forward(X)
    launched = set(device.kernels)
    assert {"bn_sums", "bn_stats", "bn_dropout_forward", "bn_dropout_backward_sums", "bn_param_grads", "bn_backward",
            "bn_forward", "bn_backward_sums", "dropout_forward", "dropout_backward"} <= launched, launched
