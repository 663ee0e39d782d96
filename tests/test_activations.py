"""Every activation of the table (gpubp.activations), its formulas over every form they take:
the table's math against the tutorial-literal oracle (gpubp.reference), the NumPy backend's
in-place forms against the table (bit for bit), the CUDA bodies run as host-built kernels
against the NumPy path, and backprop through each against finite differences."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import gpubp
from gpubp import activations, reference
from gpubp.activations import ACTIVATIONS, ELEMENTWISE, softmax_backward
from gpubp.ops import cuda_kernels as ck
from gpubp.ops.base import Ops
from gpubp.ops.numpy_activations import IN_PLACE, SOFTMAX_TRANSPOSED_MAX_COLS
from gpubp.ops.numpy_ops import NumpyOps
from helpers import SPECIALS, assert_same, softmax_logits, special_values, targets
from host_kernels import as_matrix, assert_close, logits, REGIMES, z_grid, z_scale

DTYPES = ["float32", "float64"]
GRIDS = [1, 5]
REF = Ops(np)


# ---- the table's math against the oracle ---------------------------------------------------
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_forward_and_derivative_equal_the_tutorial_oracle(name):
    """g(z) and g'(z) of the table (float64) against reference.py's scalar formulas, written
    independently for one Python float, over [-30, 30] and the points where branches meet."""
    act = ACTIVATIONS[name]
    g, dg = reference.SCALAR_ACTIVATIONS[name]
    z = np.concatenate([np.linspace(-30.0, 30.0, 1201), [0.0, -0.0, 1e-300, -1e-300, 49.9, -49.9, 50.5, -50.5]])
    A = act.forward(np, z)
    G = act.grad(np, z, A)
    want_a = np.array([g(float(v)) for v in z])
    want_g = np.array([dg(float(v)) for v in z])
    scale = np.maximum(np.abs(z), 1.0)  # terms of size |z| can cancel (gelu, silu near their zeros)
    assert np.all(np.abs(A - want_a) <= 8e-16 * scale), name
    assert np.all(np.abs(G - want_g) <= 8e-16 * scale * scale), name


def test_the_cuda_bodies_take_their_constants_from_python():
    """Every constant in a CUDA body other than 0, 1, 2, 3 and 0.5 is the very double of a Python
    constant of the module (so the two cannot drift apart), written by cuda_literal."""
    constants = {float(v) for k, v in vars(activations).items() if k.isupper() and isinstance(v, float)}
    constants |= {-c for c in constants} | {2.0 * activations.SQRT_2_OVER_PI}
    bodies = "\n".join(a.cuda_forward + a.cuda_grad for a in ACTIVATIONS.values())
    literals = re.findall(r"\bT\(([-+0-9.eE]+)\)", bodies)
    assert literals
    for text in literals:
        value = float(text)
        if value not in (0.0, 1.0, 2.0, 3.0, 0.5, -0.5):
            assert value in constants and text == repr(value), f"the literal {text} is not a Python constant"
    for name in ("LEAKY_RELU_SLOPE", "INV_SQRT_2", "INV_SQRT_2PI", "GELU_Z2_MAX", "SQRT_2_OVER_PI", "GELU_TANH_K"):
        assert activations.cuda_literal(getattr(activations, name)) in bodies, name
    assert activations.cuda_literal(math.sqrt(0.5)) == "T(0.7071067811865476)"


# ---- the NumPy in-place forms ----------------------------------------------------------------
def test_every_activation_has_its_in_place_forms():
    for act in ACTIVATIONS.values():
        forms = IN_PLACE[act]
        assert (forms.grad is not None) == act.elementwise, act.name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(6, 11), (700, 300)])  # one block; several row blocks and a ragged last one
def test_activation_forward_and_backward_equal_reference_ops(dtype, name, shape):
    rng = np.random.default_rng(len(name))
    act = ACTIVATIONS[name]
    fast, ref = NumpyOps(), Ops(np)
    Z = special_values(rng, shape, dtype)
    b = rng.normal(size=shape[1]).astype(dtype)
    b[: len(SPECIALS)] = 0.0  # the special values of Z reach g and g' unchanged
    Z1, Z2 = Z.copy(), Z.copy()
    A1, A2 = np.empty_like(Z), np.empty_like(Z)
    with np.errstate(all="ignore"):
        fast.bias_activation(Z1, b, act, A1)
        ref.bias_activation(Z2, b, act, A2)
        assert_same(Z1, Z2)
        assert_same(A1, A2)  # NaN where the reference has NaN
        # dA's own special values sit at other places than Z's: g'(z) at every special z is
        # multiplied by an ordinary number and shows in Delta
        dA = special_values(rng, shape, dtype, at_end=True)
        assert np.isfinite(dA.reshape(-1)[: len(SPECIALS)]).all()
        D1 = fast.activation_backward(dA.copy(), Z1, A1, act, out=np.empty_like(Z))
        D2 = ref.activation_backward(dA.copy(), Z2, A2, act, out=np.empty_like(Z))
        D3 = dA.copy()
        fast.activation_backward(D3, Z1, A1, act, out=D3)  # in place over dA
    assert A1.dtype == D1.dtype == np.dtype(dtype)
    assert_same(D1, D2)
    assert_same(D3, D2)

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_in_place_forms_without_scratch_and_on_a_vector_equal_reference(dtype, name):
    # called as the table documents them, with no scratch getter (fresh arrays are made), on
    # a 1-d array; and a 1-d array through the blocked NumpyOps path (several blocks of rows)
    rng = np.random.default_rng(7)
    act = ACTIVATIONS[name]
    Z = special_values(rng, (200_001,), dtype)
    with np.errstate(all="ignore"):
        A_ref, G_ref = act.forward(np, Z), act.grad(np, Z, act.forward(np, Z))
        A, G = np.empty_like(Z), np.empty_like(Z)
        IN_PLACE[act].forward(Z, A)
        IN_PLACE[act].grad(Z, A, G)
        A_ops = NumpyOps().bias_activation(Z.copy(), None, act, np.empty_like(Z))
        ones = np.ones_like(Z)
        G_ops = NumpyOps().activation_backward(ones, Z, A_ops, act, out=np.empty_like(Z))
    assert_same(A, A_ref)
    assert_same(G, G_ref.astype(dtype))
    assert_same(A_ops, A_ref)
    assert_same(G_ops, G_ref.astype(dtype))

def test_softmax_backward_in_place_equals_reference():
    rng = np.random.default_rng(0)
    act = ACTIVATIONS["softmax"]
    Z = rng.normal(size=(4, 5))
    A = act.forward(np, Z)
    dA = rng.normal(size=(4, 5))
    out = NumpyOps().activation_backward(dA.copy(), Z, A, act, out=np.empty_like(Z))
    np.testing.assert_array_equal(out, Ops(np).activation_backward(dA.copy(), Z, A, act, out=np.empty_like(Z)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", [(14, 5), (300, 10), (20_000, 10), (700, SOFTMAX_TRANSPOSED_MAX_COLS + 1)])
def test_softmax_forward_in_place_is_the_reference_bit_for_bit(dtype, n, m):
    # (20_000, 10) and (700, 65) span several row blocks of NumpyOps (float32 and float64);
    # 65 columns take the row-wise maximum, the others the transposed copy
    rng = np.random.default_rng(n + m)
    act = ACTIVATIONS["softmax"]
    Z = softmax_logits(rng, n, m, dtype)
    b = rng.normal(size=m).astype(dtype)
    with np.errstate(all="ignore"):
        A_ref = act.forward(np, Z)
        A_direct = np.empty_like(Z)
        IN_PLACE[act].forward(Z, A_direct)  # no scratch getter
        wide = np.full((n, m + 3), 7.0, dtype)
        IN_PLACE[act].forward(Z, wide[:, 1:m + 1])  # into a non-contiguous A
        A_ops = NumpyOps().bias_activation(Z.copy(), None, act, np.empty_like(Z))
        Zb_ref, Zb = Z.copy(), Z.copy()
        Ab_ref = Ops(np).bias_activation(Zb_ref, b, act, np.empty_like(Z))
        Ab = NumpyOps().bias_activation(Zb, b, act, np.empty_like(Z))
    for A in (A_direct, wide[:, 1:m + 1], A_ops):
        assert_same(A, A_ref)
    np.testing.assert_array_equal(wide[:, [0, m + 1, m + 2]], 7.0)  # nothing written beside A
    assert_same(Zb, Zb_ref)
    assert_same(Ab, Ab_ref)
    assert Ab.dtype == A_ops.dtype == np.dtype(dtype)
    # the data took every branch: flushed entries, a denormal made by the division, NaN rows
    # (NaN, +inf, all -inf) and ordinary rows summing to 1
    tiny = float(np.finfo(dtype).tiny)
    assert A_ref[0, 1] == 0.0 and A_ref[-7, 1] == 0.0
    assert 0.0 < A_ref[1, 4 % m] < tiny
    assert np.isnan(A_ref[[2, 3, 5]]).all() and not np.isnan(A_ref[[0, 1, 4, 6]]).any()
    np.testing.assert_array_equal(A_ref[4, ::3], 0.0)
    np.testing.assert_allclose(A_ref[7:-7].sum(axis=1), 1.0, rtol=10 * np.finfo(dtype).eps)


# ---- the CUDA bodies, as host-built kernels --------------------------------------------------
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_forward_and_derivative(kernels, name, dtype, grid):
    act = ACTIVATIONS[name]
    Z = as_matrix(z_grid(dtype))
    rows, cols = Z.shape
    with np.errstate(all="ignore"):
        A_ref = act.forward(np, Z)
        g_ref = act.grad(np, Z, A_ref)
    Zk, A = Z.copy(), np.full_like(Z, 123.0)
    kernels.run("act_forward", dtype, Zk, A, rows, cols, act=name, grid=grid)
    assert np.array_equal(Zk, Z, equal_nan=True), "act_forward must not change Z"
    assert_close(A, A_ref, dtype, z_scale(Z), what=f"{name} forward")
    # dA = 1 gives g'(Z) itself
    D = np.full_like(Z, 123.0)
    kernels.run("act_backward", dtype, np.ones_like(Z), Z, A_ref, D, Z.size, act=name, grid=grid)
    assert_close(D, g_ref, dtype, z_scale(Z), what=f"{name} derivative")

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_bias_activation_forward(kernels, name, dtype):
    """Z += b broadcast over rows, then A = g(Z), in one pass; Z keeps the biased values."""
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    Z = as_matrix(z_grid(dtype), cols=9)
    b = rng.normal(0.0, 2.0, Z.shape[1]).astype(dtype)
    b[3] = np.nan
    b[5] = -0.0
    Z_ref, A_ref = Z.copy(), np.empty_like(Z)
    with np.errstate(all="ignore"):
        REF.bias_activation(Z_ref, b, act, A_ref)
    for grid in (1, 4):  # a grid stride that is not a multiple of the row length
        Zk, A = Z.copy(), np.empty_like(Z)
        kernels.run("bias_act_forward", dtype, Zk, b, A, Z.shape[0], Z.shape[1], act=name, grid=grid)
        assert np.array_equal(Zk, Z_ref, equal_nan=True), "Z + b"
        assert_close(A, A_ref, dtype, z_scale(Z_ref), what=f"{name} bias + forward, grid {grid}")

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_backward_chain_rule_and_in_place(kernels, name, dtype):
    """Delta = dA * g'(Z), into a separate array and in place over dA."""
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(2)
    Z = as_matrix(z_grid(dtype))
    dA = rng.normal(size=Z.shape).astype(dtype)
    dA.flat[::11] = np.array([0.0, -0.0, np.nan, 1e-30], dtype=dtype)[np.arange(dA.flat[::11].size) % 4]
    with np.errstate(all="ignore"):
        A = act.forward(np, Z)
        want = np.empty_like(Z)
        REF.activation_backward(dA, Z, A, act, out=want)
    scale = z_scale(Z) * np.abs(np.nan_to_num(dA))
    out = np.empty_like(Z)
    kernels.run("act_backward", dtype, dA, Z, A, out, Z.size, act=name, grid=3)
    assert_close(out, want, dtype, scale, what=f"{name} Delta")
    inplace = dA.copy()
    kernels.run("act_backward", dtype, inplace, Z, A, inplace, Z.size, act=name)
    assert np.array_equal(inplace, out, equal_nan=True), "in place gives the same Delta"

@pytest.mark.parametrize("regime", REGIMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_forward_and_backward(kernels, dtype, regime):
    act = ACTIVATIONS["softmax"]
    Z = logits(dtype, regime)
    rows, cols = Z.shape
    b = np.linspace(-1, 1, cols).astype(dtype)
    for bias in (None, b):
        Z_ref, A_ref = Z.copy(), np.empty_like(Z)
        with np.errstate(all="ignore"):
            REF.bias_activation(Z_ref, bias, act, A_ref)
        for grid in (1, 4):
            Zk, A = Z.copy(), np.empty_like(Z)
            if bias is None:
                kernels.run("softmax_forward", dtype, Zk, A, rows, cols, grid=grid)
            else:
                kernels.run("bias_softmax_forward", dtype, Zk, bias, A, rows, cols, grid=grid)
            assert np.array_equal(Zk, Z_ref, equal_nan=True)
            assert_close(A, A_ref, dtype, what=f"softmax, bias={bias is not None}")
    dA = np.random.default_rng(3).normal(size=Z.shape).astype(dtype)
    with np.errstate(all="ignore"):
        want = softmax_backward(np, dA, A_ref)
    D = np.empty_like(Z)
    kernels.run("softmax_backward", dtype, dA, A_ref, D, rows, cols, grid=2)
    assert_close(D, want, dtype, scale=np.abs(dA).max(), what="softmax Jacobian-vector product")

def test_every_table_activation_has_its_kernels():
    """Adding an activation to the table is one entry: its functor and every per-activation
    kernel instantiation come from the table."""
    functors = ck.activation_functors()
    names = {e for s in ck.SOURCES for e in ck.instantiations(s)}
    for name in ELEMENTWISE:
        assert f"struct gpubp_act_{name} {{" in functors
        for kernel in ("bias_act_forward", "act_forward", "act_backward", "head_squared"):
            for T in ("float", "double"):
                assert f"{kernel}<{T}, gpubp_act_{name}>" in names
    assert "gpubp_act_softmax" not in functors


# ---- backprop through each activation against finite differences -----------------------------
@pytest.mark.parametrize("activation", ELEMENTWISE)
def test_gradcheck_agrees(backend, activation):
    """Through two hidden layers of the activation (inputs away from the kinks of relu,
    leaky_relu and elu: finite differences need a derivative)."""
    rng = np.random.default_rng(7)
    net = gpubp.MLP([3, 4, 4, 3], activation=activation, output_activation="identity", loss="mse", dtype="float64",
                    seed=11)
    X = rng.normal(size=(5, 3))
    assert gpubp.gradcheck(net, X, targets("mse", 5, 3, rng)) < 1e-6
