"""Every loss head (gpubp.losses, each with its output activations), over every form it takes:
C_0 and Delta^(L) against the tutorial-literal oracle (gpubp.reference), the NumPy backend's
fused heads against the reference ops, the CUDA head kernels run on the host against NumPy,
and backprop through each head against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import gpubp
from gpubp import reference
from gpubp.activations import ACTIVATIONS
from gpubp.losses import LOSSES
from gpubp.ops.base import Ops
from gpubp.ops.numpy_ops import NumpyOps
from helpers import HEADS, assert_same, softmax_logits, targets
from host_kernels import REGIMES, assert_close, logits, run_head

DTYPES = ["float32", "float64"]


# ---- the formulas against the oracle ----------------------------------------------------------
@pytest.mark.parametrize("loss_key,act_name", HEADS)
def test_value_and_delta_equal_the_tutorial_oracle(loss_key, act_name):
    """C_0 of every row and Delta^(L) = dC_0/dZ^(L) (float64) against reference.py's per-sample,
    per-node formulas."""
    loss, act = LOSSES[loss_key.split(":")[0]], ACTIVATIONS[act_name]
    rng = np.random.default_rng(len(loss_key) + len(act_name))
    Z = rng.normal(scale=3.0, size=(6, 4))
    Y = targets(loss_key, 6, 4, rng, soft_first_row=True)
    A = act.forward(np, Z)
    value, delta = loss.value(np, Z, A, Y), loss.delta(np, Z, A, Y, act)
    Y_rows = np.eye(4)[Y] if Y.ndim == 1 else Y
    for i in range(6):
        c0, signal = reference._sample_loss_and_output_signal(loss.name, act_name, list(Z[i]), list(A[i]), list(Y_rows[i]))
        np.testing.assert_allclose(value[i], c0, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(delta[i], signal, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,act,labels", [("sse", "sigmoid", False), ("sse", "softmax", False), ("mse", "identity", False),
                                             ("mse", "tanh", False), ("cross_entropy", "softmax", True),
                                             ("cross_entropy", "softmax", False), ("binary_cross_entropy", "sigmoid", False)])
def test_loss_head_equals_reference_ops(dtype, loss, act, labels):
    from gpubp.losses import LOSSES

    rng = np.random.default_rng(7)
    Z = (rng.normal(scale=4.0, size=(9, 5))).astype(dtype)
    g = ACTIVATIONS[act]
    A = g.forward(np, Z)
    if labels:
        Y = rng.integers(0, 5, 9)
    elif loss == "cross_entropy":
        Y = np.eye(5, dtype=dtype)[rng.integers(0, 5, 9)]
    else:
        Y = rng.uniform(size=(9, 5)).astype(dtype)
    D1, D2 = np.empty_like(Z), np.empty_like(Z)
    C1 = NumpyOps().loss_head(LOSSES[loss], g, Z, A, Y, D1)
    C2 = Ops(np).loss_head(LOSSES[loss], g, Z, A, Y, D2)
    tol = 1e-6 if dtype == "float32" else 1e-14
    assert C1.shape == () and C1.dtype == np.dtype(dtype) and D1.dtype == np.dtype(dtype)
    np.testing.assert_allclose(C1, C2, rtol=tol)
    np.testing.assert_allclose(D1, D2, rtol=tol, atol=tol * np.abs(D2).max())




@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_head_with_labels_on_strided_arrays_gives_the_contiguous_numbers(dtype):
    """The labels head looks its entries up by flat index on C-contiguous arrays (the workspace's)
    and by (row, label) pairs on any other layout: the same C and Delta bit for bit, and Delta's
    neighbours untouched."""
    rng = np.random.default_rng(6)
    act, loss = ACTIVATIONS["softmax"], LOSSES["cross_entropy"]
    Z = rng.normal(scale=3.0, size=(11, 5)).astype(dtype)
    Y = rng.integers(0, 5, 11)
    A = act.forward(np, Z)
    D = np.empty_like(Z)
    C = NumpyOps().loss_head(loss, act, Z, A, Y, D)
    wide_A, wide_D = np.zeros((11, 9), dtype), np.full((11, 9), 7.0, dtype)
    wide_A[:, 2:7] = A
    Cs = NumpyOps().loss_head(loss, act, Z, wide_A[:, 2:7], Y, wide_D[:, 2:7])
    assert C.tobytes() == Cs.tobytes()
    assert_same(wide_D[:, 2:7], D)
    np.testing.assert_array_equal(wide_D[:, :2], 7.0)
    np.testing.assert_array_equal(wide_D[:, 7:], 7.0)


def _exact_cross_entropy(Z, Y):
    """C = (1/n) sum_i logsumexp(z_i) - z_{i, y_i} by reference.py's per-sample formula (float64)."""
    from gpubp import reference

    m = Z.shape[1]
    losses = [reference._sample_loss_and_output_signal("cross_entropy", "softmax", [float(v) for v in z], [0.0] * m,
                                                      [1.0 if j == y else 0.0 for j in range(m)])[0]
              for z, y in zip(Z, Y)]
    return float(np.mean(losses))

def _xent_heads(Z, Y):
    """(C, Delta) of the NumPy ops and of the reference ops for softmax cross-entropy with labels."""
    from gpubp.losses import LOSSES

    act, loss = ACTIVATIONS["softmax"], LOSSES["cross_entropy"]
    with np.errstate(all="ignore"):
        A = NumpyOps().bias_activation(Z.copy(), None, act, np.empty_like(Z))
        D1, D2 = np.empty_like(Z), np.empty_like(Z)
        C1 = NumpyOps().loss_head(loss, act, Z, A, Y, D1)
        C2 = Ops(np).loss_head(loss, act, Z, A, Y, D2)
    assert C1.shape == () and C1.dtype == D1.dtype == np.dtype(Z.dtype)
    assert_same(D1, D2)  # A - onehot(Y), the same numbers
    return C1, C2

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,scale", [(9, 4.0), (2_000, 4.0), (20_000, 1.0), (2_000, 30.0)])
def test_cross_entropy_head_from_probabilities_matches_the_exact_loss(dtype, n, scale):
    # C_0 = -log a_y against reference.py's logsumexp(z) - z_y; scale 30 flushes ~10% of all
    # float32 probabilities (some labels among them: that batch takes the logits formula)
    rng = np.random.default_rng(n)
    Z = rng.normal(scale=scale, size=(n, 10)).astype(dtype)
    Y = rng.integers(0, 10, n)
    C1, C2 = _xent_heads(Z, Y)
    exact = _exact_cross_entropy(Z, Y)
    eps = float(np.finfo(dtype).eps)
    # per sample both forms are within ~2 eps (1 + max|z|) of the exact loss; the mean adds the
    # rounding of a sum of n terms
    tol = dict(rtol=eps * np.log2(n), atol=4 * eps * (1.0 + np.abs(Z).max()))
    np.testing.assert_allclose(C1, exact, **tol)
    np.testing.assert_allclose(C1, C2, **tol)

@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_head_falls_back_to_the_logits_where_a_label_probability_is_flushed(dtype, monkeypatch):
    rng = np.random.default_rng(5)
    Z = softmax_logits(rng, 40, 5, dtype)
    far = 100.0 if dtype == "float32" else 800.0
    calls = []
    from_logits = NumpyOps._cross_entropy_from_logits
    monkeypatch.setattr(NumpyOps, "_cross_entropy_from_logits",
                        lambda self, *a: calls.append(1) or from_logits(self, *a))
    ordinary = Z[7:-7]
    Y = rng.integers(0, 5, len(ordinary))
    C1, _ = _xent_heads(ordinary, Y)
    assert not calls  # every a_y a normal number: -log a_y, no second pass over Z
    np.testing.assert_allclose(C1, _exact_cross_entropy(ordinary, Y), rtol=10 * float(np.finfo(dtype).eps))

    # a_y flushed to 0 (label on a -far entry) and a_y denormal after the division: the loss is
    # the exact large finite number, not -log 0 = inf
    for rows, labels, want in [(Z[[0, 7]], [1, 0], None), (Z[[1, 8]], [4, 2], None),
                               (np.array([[0.0, far]], dtype), [0], far)]:
        calls.clear()
        C1, C2 = _xent_heads(rows, np.array(labels))
        exact = _exact_cross_entropy(rows, labels)
        assert calls and np.isfinite(C1) and _exact_cross_entropy(rows[:1], labels[:1]) > 80.0
        np.testing.assert_allclose(C1, exact, rtol=4 * float(np.finfo(dtype).eps))
        np.testing.assert_array_equal(C1, C2)
        if want is not None:
            assert C1 == np.asarray(want, dtype)

    # a label at z = -inf: the loss is +inf; a NaN row (NaN, +inf or all -inf logits): NaN, as
    # the reference gives
    C1, C2 = _xent_heads(Z[[4, 9]], np.array([0, 1]))
    assert C1 == C2 == np.inf
    for bad in (2, 3, 5):
        C1, C2 = _xent_heads(Z[[bad, 9, 0]], np.array([0, 1, 0]))
        assert np.isnan(C1) and np.isnan(C2)

def test_cross_entropy_head_for_another_output_activation_keeps_the_logits_formula():
    # C comes from Z alone there (the reference ops), never from A
    from gpubp.losses import LOSSES

    rng = np.random.default_rng(6)
    Z = rng.normal(size=(6, 4))
    A = rng.uniform(size=(6, 4))  # not softmax(Z)
    Y = rng.integers(0, 4, 6)
    act = ACTIVATIONS["identity"]
    D1, D2 = np.empty_like(Z), np.empty_like(Z)
    C1 = NumpyOps().loss_head(LOSSES["cross_entropy"], act, Z, A, Y, D1)
    C2 = Ops(np).loss_head(LOSSES["cross_entropy"], act, Z, A, Y, D2)
    np.testing.assert_array_equal(C1, C2)
    np.testing.assert_array_equal(D1, D2)
    np.testing.assert_allclose(C1, _exact_cross_entropy(Z, Y), rtol=1e-14)


# ---- the CUDA head kernels, built for the host ------------------------------------------------
@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_key,act_name", HEADS)
def test_loss_head(kernels, loss_key, act_name, dtype, regime):
    """Delta^(L) = dC_0/dA * g'(Z) and C_0 per row, fused, against losses.py on NumPy."""
    loss = LOSSES[loss_key.split(":")[0]]
    act = ACTIVATIONS[act_name]
    Z = logits(dtype, regime)
    rows, cols = Z.shape
    Y = targets(loss_key, rows, cols, np.random.default_rng(4), dtype, soft_first_row=True)
    with np.errstate(all="ignore"):
        A = act.forward(np, Z)
        want_delta = loss.delta(np, Z, A, Y, act)
        want_c0 = loss.value(np, Z, A, Y)
    Yf = Y.astype(float)
    scale = max(1.0, float(np.nanmax(np.abs(np.nan_to_num(Z.astype(float), posinf=0, neginf=0)))))
    for grid in (1, 4):
        Delta, C0 = run_head(kernels, loss.name, act_name, Z, A, Y, grid=grid)
        assert_close(Delta, want_delta, dtype, scale=1.0 if regime != "tiny" else None, what=f"{loss_key}/{act_name} Delta")
        c0_scale = scale * cols * max(1.0, float(np.abs(Yf).max()))
        assert_close(C0, want_c0, dtype, scale=c0_scale if regime != "tiny" else None, what=f"{loss_key}/{act_name} C_0")

@pytest.mark.parametrize("dtype", DTYPES)
def test_labels_head_rejects_out_of_range_labels_with_nan(kernels, dtype):
    """A label outside [0, m) is never read out of bounds: its row becomes NaN."""
    Z = logits(dtype, "normal")
    A = ACTIVATIONS["softmax"].forward(np, Z)
    labels = np.array([0, 4, -1, 5, 2, 1], dtype=np.int64)
    Delta, C0 = run_head(kernels, "cross_entropy", "softmax", Z, A, labels)
    assert np.isnan(C0[[2, 3]]).all() and np.isnan(Delta[[2, 3]]).all()
    ok = [0, 1, 4, 5]
    want = LOSSES["cross_entropy"].delta(np, Z[ok], A[ok], labels[ok], ACTIVATIONS["softmax"])
    assert_close(Delta[ok], want, dtype, scale=1.0)


# ---- backprop through each head -------------------------------------------------------------
def test_cross_entropy_labels_equal_one_hot(backend):
    rng = np.random.default_rng(0)
    net = gpubp.MLP([4, 6, 5], activation="relu", loss="cross_entropy", dtype="float64", seed=0)
    X = rng.normal(size=(9, 4))
    y = rng.integers(0, 5, 9)
    C1, g1 = net.loss_and_grads(X, y)
    C2, g2 = net.loss_and_grads(X, np.eye(5)[y])
    assert C1 == pytest.approx(C2, rel=1e-14)
    for (a, b), (c, d) in zip(g1, g2):
        np.testing.assert_allclose(net.backend.to_numpy(a), net.backend.to_numpy(c), rtol=1e-13)
        np.testing.assert_allclose(net.backend.to_numpy(b), net.backend.to_numpy(d), rtol=1e-13)


@pytest.mark.parametrize("loss_key,act_name", HEADS)
def test_gradcheck_agrees(backend, loss_key, act_name):
    rng = np.random.default_rng(7)
    net = gpubp.MLP([3, 4, 3], activation="tanh", output_activation=act_name, loss=loss_key.split(":")[0],
                    dtype="float64", seed=11)
    assert gpubp.gradcheck(net, rng.normal(size=(5, 3)), targets(loss_key, 5, 3, rng)) < 1e-6


# ---- the backends choose by the form of the head ------------------------------------------
@pytest.mark.parametrize("loss_key,act_name", [("sse", "sigmoid"), ("mse", "identity"), ("mse", "softmax"),
                                               ("cross_entropy:labels", "softmax"), ("cross_entropy", "softmax"),
                                               ("binary_cross_entropy", "sigmoid")])
def test_backends_choose_the_fused_head_by_its_form_not_its_name(kernels, monkeypatch, loss_key, act_name):
    """A loss under another name with the same fields takes the same fused path on NumPy and the
    same kernel on CuPy (the CuPy ops run here with the host-built kernels), never the reference."""
    import dataclasses

    import host_kernels

    loss, act = LOSSES[loss_key.split(":")[0]], ACTIVATIONS[act_name]
    renamed = dataclasses.replace(loss, name="renamed")
    rng = np.random.default_rng(3)
    Z = rng.normal(scale=2.0, size=(9, 5))
    A = act.forward(np, Z)
    Y = targets(loss_key, 9, 5, rng)
    reference_calls = []
    real = Ops.loss_head
    monkeypatch.setattr(Ops, "loss_head", lambda self, *a: reference_calls.append(1) or real(self, *a))
    cupy_ops = host_kernels.host_cupy_ops(kernels)
    launched = []
    launch = cupy_ops.kernels.launch
    monkeypatch.setattr(cupy_ops.kernels, "launch", lambda name, *a, **k: launched.append(name) or launch(name, *a, **k))
    for ops in (NumpyOps(), cupy_ops):
        outputs = []
        for head in (loss, renamed):
            Delta = np.empty_like(Z)
            C = ops.loss_head(head, act, Z, A, Y, Delta)
            outputs.append((np.asarray(C), Delta))
        assert_same(outputs[0][0], outputs[1][0])
        assert_same(outputs[0][1], outputs[1][1])
    fused_on_numpy = loss.head != "sigmoid_cross_entropy" and (loss.head == "squared_error" or Y.ndim == 1)
    assert len(reference_calls) == (0 if fused_on_numpy else 2)
    # per call the head kernel, then C = (1/n) sum_i C_0 by the column reduction
    assert launched[0].startswith("head_") and launched == [launched[0], "bias_grad"] * 2


def test_target_range_comes_from_the_loss():
    import dataclasses

    renamed = dataclasses.replace(LOSSES["binary_cross_entropy"], name="renamed")
    net = gpubp.MLP([3, 2], loss=renamed, seed=0)
    with pytest.raises(ValueError, match=r"renamed targets must lie in \[0, 1\]"):
        net.loss_and_grads(np.zeros((2, 3)), np.full((2, 2), 1.5))
