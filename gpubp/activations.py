"""The activation table: every activation g described once.

Each :class:`Activation` entry holds, side by side (micrograd style: the derivative next to
its forward):

* ``forward(xp, Z)`` -> A = g(Z), written once against the array module ``xp`` (NumPy or CuPy);
* ``grad(xp, Z, A)`` -> g'(Z), using A where that is cheaper (sigmoid, tanh, relu);
* ``cuda_forward`` / ``cuda_grad``: the same two formulas as the CUDA C++ body of a device
  function of ``z`` (and ``a`` for the derivative) of template type ``T``, which may call the
  NaN-preserving helpers ``gpubp_sigmoid`` and ``gpubp_clip`` of ``kernels/``; the kernels are
  generic and get these bodies spliced in, so adding an activation is one entry here;
* ``init``: the initialisation scheme for a layer using it (``"he"`` for ReLU-like,
  ``"glorot"`` otherwise);
* ``forward_into(xp, Z, A, tmp)`` / ``grad_into(xp, Z, A, out, tmp)``: the same ``forward`` and
  ``grad`` written with ``out=`` ufuncs into a preallocated array, bit for bit the same numbers
  (NaN, infinities and the sign of zeros included); where they need room for intermediate
  values they take it from ``tmp``, a :data:`Scratch` getter (``tmp(k)`` is the k-th scratch
  array shaped and typed like ``Z``, never ``Z``, ``A`` or ``out``; left out, fresh arrays are
  allocated). The NumPy ops use them on the hot path, block by block with reused scratch.

MATH.md: ``A^(l) = g^(l)(Z^(l))`` (forward) and ``Delta^(l) = dC_0/dA^(l) * g'^(l)(Z^(l))``
(backward). Every formula is stable for large |z| and propagates NaN from ``z``.
``softmax`` is the one non-elementwise entry (output layer only): it works row by row (each
row of A from the same row of Z alone, so blocks of rows may be computed apart), its
``forward_into`` needs no scratch, and its Jacobian-vector product is :func:`softmax_backward`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import _optional

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_K = 0.044715
# Beyond |z| = 50 the tanh-GELU is exactly z or 0 in float64 (and float32); clipping there
# keeps z**3 from overflowing without changing any result.
GELU_TANH_CLIP = 50.0


def _erf(xp: Any, x: Any) -> Any:
    """The exact error function, elementwise, on either backend."""
    if xp is np:
        special = _optional.scipy_special()
        if special is not None:
            return special.erf(x)
        return _np_erf(x)
    import cupyx.scipy.special  # only reached on the CuPy backend

    return cupyx.scipy.special.erf(x)


_np_erf_ufunc = np.frompyfunc(math.erf, 1, 1)


def _np_erf(x: np.ndarray) -> np.ndarray:
    """``math.erf`` applied elementwise (exact; used when SciPy is not installed)."""
    return _np_erf_ufunc(x).astype(x.dtype, copy=False)


def _sigmoid(xp: Any, Z: Any) -> Any:
    # exp(-|z|) never overflows; sigma(z) = 1/(1+e) for z >= 0 and e/(1+e) for z < 0
    e = xp.exp(-xp.abs(Z))
    return xp.where(Z >= 0, 1.0, e) / (1.0 + e)


def _gelu_tanh_parts(xp: Any, Z: Any) -> Tuple[Any, Any, Any]:
    """zc = clip(z), s = (1 + tanh u) / 2 = sigmoid(2u) and 1 - s = sigmoid(-2u), for
    u = sqrt(2/pi) (zc + 0.044715 zc^3): the sigmoid form avoids the cancellation of 1 + tanh u
    for negative z (which loses every digit of gelu_tanh below z = -5 in float32)."""
    Zc = xp.clip(Z, -GELU_TANH_CLIP, GELU_TANH_CLIP)
    u2 = 2.0 * SQRT_2_OVER_PI * (Zc + GELU_TANH_K * Zc * Zc * Zc)
    return Zc, _sigmoid(xp, u2), _sigmoid(xp, -u2)


def _gelu_tanh_grad(xp: Any, Z: Any, A: Any) -> Any:
    # d/dz [z s] = s + z s (1 - s) 2 du/dz (as 0.5 (1 + t) + 0.5 z (1 - t^2) du/dz, t = tanh u)
    Zc, s, sn = _gelu_tanh_parts(xp, Z)
    return s + 2.0 * Zc * (s * sn) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_K * Zc * Zc)


def _heaviside(xp: Any, Z: Any) -> Any:
    # 1 for z > 0, 0 for z <= 0, NaN for NaN
    return xp.heaviside(Z, xp.zeros((), dtype=Z.dtype))


# ---- in-place forms -------------------------------------------------------------------------
# Each repeats its reference formula above operation for operation (the same ufuncs on the
# same operands, so the same roundings), except where a comment shows why another sequence
# gives the identical result for every input, NaN, +-inf and +-0 included. Operands of + and *
# may be swapped: IEEE addition and multiplication are commutative, bit for bit.

Scratch = Callable[[int], Any]
"""``tmp(k)``: the k-th scratch array (k = 0, 1, 2), shaped and typed like ``Z``."""


def _scratch_or_fresh(xp: Any, tmp: Optional[Scratch], like: Any) -> Scratch:
    """``tmp``, or a getter of fresh arrays like ``like`` (one per k) when none was given."""
    if tmp is not None:
        return tmp
    made: Dict[int, Any] = {}

    def fresh(k: int) -> Any:
        if k not in made:
            made[k] = xp.empty_like(like)
        return made[k]

    return fresh


def _erf_into(xp: Any, X: Any, out: Any) -> Any:
    """out = erf(X) (``out`` may be ``X``), the same function as :func:`_erf`."""
    special = _optional.scipy_special() if xp is np else None
    if special is not None:
        return special.erf(X, out=out)
    out[...] = _erf(xp, X)
    return out


def _sigmoid_into(xp: Any, X: Any, out: Any, T: Any) -> Any:
    """out = _sigmoid(X); ``T`` is scratch and may be ``X`` itself, ``out`` must not be ``X``.

    where(x >= 0, 1, e) is computed as max([x >= 0], e) with e = exp(-|x|) in [0, 1]: 1 where
    x >= 0, e where x < 0, and NaN for NaN x (e is NaN there): the same value without a mask.
    """
    xp.abs(X, out=out)
    xp.negative(out, out=out)
    xp.exp(out, out=out)  # e
    xp.greater_equal(X, 0.0, out=T)  # 1.0 / 0.0
    xp.maximum(T, out, out=T)  # where(x >= 0, 1, e)
    xp.add(out, 1.0, out=out)  # 1 + e
    return xp.divide(T, out, out=out)


def _sigmoid_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    return _sigmoid_into(xp, Z, A, _scratch_or_fresh(xp, tmp, Z)(0))


def _leaky_relu_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z > 0, z, 0.01 z) = max(z, 0.01 z): the product is correctly rounded, so 0.01 z <= z
    # for z > 0 and >= z for z < 0; +-0 gives +-0 either way, NaN stays NaN
    xp.multiply(Z, 0.01, out=A)
    return xp.maximum(Z, A, out=A)


def _identity_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z == z, 1, z) = clip(z, 1, 1): 1 for every number (+-inf included), NaN for NaN, in
    # one pass (faster than maximum then minimum with a scalar)
    return xp.clip(Z, 1.0, 1.0, out=out)


def _relu_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # A = max(z, 0) is +0, positive, +inf or NaN, where heaviside(A, 0) = ceil(min(A, 1)): min
    # maps into [0, 1] and ceil takes (0, 1] to 1 and +0 to +0 (two passes, each faster than sign)
    xp.minimum(A, 1.0, out=out)
    return xp.ceil(out, out=out)


def _leaky_relu_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # 0.99 heaviside(z) + 0.01 is 0.99 * 1 + 0.01, which rounds to exactly 1 in float32 and
    # float64, for z > 0 and 0.01 for z <= 0 (-inf included): max(ceil(min(z, 1)), 0.01), as
    # ceil(min(z, 1)) is 1 for z > 0 and <= 0 otherwise; NaN stays NaN
    xp.minimum(Z, 1.0, out=out)
    xp.ceil(out, out=out)
    return xp.maximum(out, 0.01, out=out)


def _elu_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z > 0, z, E) with E = expm1(min(z, 0)) is E + max(z, -0): for z > 0, E = expm1(+0)
    # = +0 and +0 + z = z; for z <= 0 (and -inf), max(z, -0) = -0 and E + (-0) = E, its sign of
    # zero included; NaN stays NaN
    T = _scratch_or_fresh(xp, tmp, Z)(0)
    xp.minimum(Z, 0.0, out=A)
    xp.expm1(A, out=A)
    xp.maximum(Z, -0.0, out=T)
    return xp.add(A, T, out=A)


def _elu_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z > 0, 1, a + 1) = min(a + 1, 1) for a = elu(z): z > 0 gives a = z > 0 and a + 1 >= 1
    # (+inf included); z <= 0 gives a = expm1(z) in [-1, 0] and a + 1 <= 1; NaN stays NaN
    xp.add(A, 1.0, out=out)
    return xp.minimum(out, 1.0, out=out)


def _softplus_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(xp, tmp, Z)(0)
    xp.abs(Z, out=A)
    xp.negative(A, out=A)
    xp.exp(A, out=A)
    xp.log1p(A, out=A)
    xp.maximum(Z, 0.0, out=T)
    return xp.add(T, A, out=A)


def _softplus_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    return _sigmoid_into(xp, Z, out, _scratch_or_fresh(xp, tmp, Z)(0))


def _gelu_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(xp, tmp, Z)(0)
    xp.multiply(Z, math.sqrt(0.5), out=T)
    _erf_into(xp, T, T)
    xp.add(T, 1.0, out=T)
    xp.multiply(Z, 0.5, out=A)
    return xp.multiply(A, T, out=A)


def _gelu_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(xp, tmp, Z)(0)
    xp.multiply(Z, math.sqrt(0.5), out=out)
    _erf_into(xp, out, out)
    xp.add(out, 1.0, out=out)
    xp.multiply(out, 0.5, out=out)  # 0.5 (1 + erf(z / sqrt 2))
    xp.multiply(Z, Z, out=T)
    xp.minimum(T, 1e4, out=T)
    xp.multiply(T, -0.5, out=T)
    xp.exp(T, out=T)
    xp.multiply(Z, T, out=T)
    xp.multiply(T, 1.0 / math.sqrt(2.0 * math.pi), out=T)
    return xp.add(out, T, out=out)


def _gelu_tanh_u2_into(xp: Any, Z: Any, Zc: Any, U: Any) -> Any:
    """Zc = clip(z), U = u2 = 2 sqrt(2/pi) (zc + 0.044715 zc^3), as in :func:`_gelu_tanh_parts`."""
    xp.clip(Z, -GELU_TANH_CLIP, GELU_TANH_CLIP, out=Zc)
    xp.multiply(Zc, GELU_TANH_K, out=U)
    xp.multiply(U, Zc, out=U)
    xp.multiply(U, Zc, out=U)
    xp.add(Zc, U, out=U)
    return xp.multiply(U, 2.0 * SQRT_2_OVER_PI, out=U)


def _gelu_tanh_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(xp, tmp, Z)(0)
    _gelu_tanh_u2_into(xp, Z, T, A)
    _sigmoid_into(xp, A, T, A)  # s
    return xp.multiply(Z, T, out=A)


def _gelu_tanh_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    tmp = _scratch_or_fresh(xp, tmp, Z)
    Zc, S, T = tmp(0), tmp(1), tmp(2)
    _gelu_tanh_u2_into(xp, Z, Zc, S)
    # s = sigmoid(u2) and sn = sigmoid(-u2) share e = exp(-|u2|) and d = 1 + e: one of them is
    # 1/d, the other e/d (both 1/2 at u2 = +-0, where e = 1), so s * sn = (1/d) * (e/d)
    xp.abs(S, out=out)
    xp.negative(out, out=out)
    xp.exp(out, out=out)  # e
    xp.greater_equal(S, 0.0, out=S)
    xp.maximum(S, out, out=S)  # where(u2 >= 0, 1, e), see _sigmoid_into
    xp.add(out, 1.0, out=T)  # d
    xp.divide(S, T, out=S)  # s
    xp.divide(out, T, out=out)  # e/d
    xp.divide(1.0, T, out=T)  # 1/d
    xp.multiply(T, out, out=out)  # s * sn
    # s + 2 zc (s sn) sqrt(2/pi) (1 + 3 * 0.044715 zc^2), left to right as in _gelu_tanh_grad
    xp.multiply(Zc, 2.0, out=T)
    xp.multiply(T, out, out=out)
    xp.multiply(out, SQRT_2_OVER_PI, out=out)
    xp.multiply(Zc, 3.0 * GELU_TANH_K, out=T)
    xp.multiply(T, Zc, out=T)
    xp.add(T, 1.0, out=T)
    xp.multiply(out, T, out=out)
    return xp.add(S, out, out=out)


def _silu_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    _sigmoid_into(xp, Z, A, _scratch_or_fresh(xp, tmp, Z)(0))
    return xp.multiply(Z, A, out=A)


def _silu_grad_into(xp: Any, Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(xp, tmp, Z)(0)
    _sigmoid_into(xp, Z, out, T)  # s
    xp.subtract(1.0, out, out=T)
    xp.multiply(Z, T, out=T)
    xp.add(T, 1.0, out=T)
    return xp.multiply(out, T, out=out)


@dataclass(frozen=True)
class Activation:
    """One row of the activation table (see the module docstring)."""

    name: str
    forward: Callable[[Any, Any], Any]
    grad: Callable[[Any, Any, Any], Any]
    cuda_forward: str
    cuda_grad: str
    init: str = "glorot"
    elementwise: bool = True
    forward_into: Optional[Callable[..., Any]] = None
    grad_into: Optional[Callable[..., Any]] = None

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _softmax(xp: Any, Z: Any) -> Any:
    E = xp.exp(Z - Z.max(axis=1, keepdims=True))
    # Probabilities below the smallest normal number are flushed to 0: beside the row's
    # largest (exp(0) = 1) they carry nothing, and as denormals they would slow every later
    # product on the CPU about tenfold (Delta^(L) = A - Y feeds two GEMMs).
    E[E < xp.finfo(E.dtype).tiny] = 0.0
    return E / E.sum(axis=1, keepdims=True)


# Up to this many columns the row maxima of softmax are taken from a transposed copy of Z:
# NumPy reduces a short row slowly (about 50 ns a row for 10 float32 columns), while the
# column-wise maximum of the copy runs over contiguous rows (n numbers each); copy and
# reduction together cost a fifth of the row reduction at 10 columns. The two break even near
# 64 columns in float64 and 100 in float32; beyond, the row reduction is the faster.
SOFTMAX_TRANSPOSED_MAX_COLS = 64

_SMALLEST_NORMAL: Dict[Any, float] = {}


def smallest_normal(xp: Any, dtype: Any) -> float:
    """The smallest normal number of ``dtype`` (finfo's, looked up once per dtype)."""
    tiny = _SMALLEST_NORMAL.get(dtype)
    if tiny is None:
        tiny = _SMALLEST_NORMAL[dtype] = float(xp.finfo(dtype).tiny)
    return tiny


def _softmax_forward_into(xp: Any, Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    """A = _softmax(Z) for Z of shape (n, m), in place in ``A`` (not sharing memory with ``Z``),
    bit for bit the same numbers.

    The row maximum is exact in any order (and NaN wherever the row holds a NaN), so for
    m <= SOFTMAX_TRANSPOSED_MAX_COLS it is taken column-wise from Z^T, copied into ``A``'s own
    memory until exp(z - zmax) overwrites it (no scratch needed); the flush to 0 below the
    smallest normal number, the row sums (the same reduction over the rows of ``A``) and the
    division are the reference's operations.
    """
    n, m = Z.shape
    if m <= SOFTMAX_TRANSPOSED_MAX_COLS:
        ZT = A.reshape(m, n)  # a view of A (a copy where A is not contiguous, as good here)
        xp.copyto(ZT, Z.T)
        zmax = ZT.max(axis=0)[:, None]
    else:
        zmax = Z.max(axis=1, keepdims=True)
    xp.subtract(Z, zmax, out=A)
    xp.exp(A, out=A)
    A[A < smallest_normal(xp, A.dtype)] = 0.0  # see _softmax
    return xp.divide(A, A.sum(axis=1, keepdims=True), out=A)


def softmax_backward(xp: Any, dA: Any, A: Any) -> Any:
    """Delta = J_softmax^T dA per row: a_j (dA_j - sum_i dA_i a_i) (MATH.md, output layer)."""
    return A * (dA - (dA * A).sum(axis=1, keepdims=True))


def _no_grad(xp: Any, Z: Any, A: Any) -> Any:
    raise TypeError("softmax has no elementwise derivative; use softmax_backward (Jacobian-vector product)")


ACTIVATIONS: Dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "identity",
            forward=lambda xp, Z: Z.copy(),
            grad=lambda xp, Z, A: xp.where(Z == Z, 1.0, Z).astype(Z.dtype, copy=False),
            cuda_forward="return z;",
            cuda_grad="return z == z ? T(1) : z;",
            forward_into=lambda xp, Z, A, tmp=None: xp.copyto(A, Z),
            grad_into=_identity_grad_into,
        ),
        Activation(
            "sigmoid",
            forward=_sigmoid,
            grad=lambda xp, Z, A: A * (1.0 - A),
            cuda_forward="return gpubp_sigmoid(z);",
            cuda_grad="return a * (T(1) - a);",
            forward_into=_sigmoid_forward_into,
            grad_into=lambda xp, Z, A, out, tmp=None: xp.multiply(A, xp.subtract(1.0, A, out=out), out=out),
        ),
        Activation(
            "tanh",
            forward=lambda xp, Z: xp.tanh(Z),
            grad=lambda xp, Z, A: 1.0 - A * A,
            cuda_forward="return tanh(z);",
            cuda_grad="return T(1) - a * a;",
            forward_into=lambda xp, Z, A, tmp=None: xp.tanh(Z, out=A),
            grad_into=lambda xp, Z, A, out, tmp=None: xp.subtract(1.0, xp.multiply(A, A, out=out), out=out),
        ),
        Activation(
            "relu",
            forward=lambda xp, Z: xp.maximum(Z, 0.0),
            grad=lambda xp, Z, A: _heaviside(xp, A),
            cuda_forward="return z <= T(0) ? T(0) : z;",
            cuda_grad="return a > T(0) ? T(1) : (a <= T(0) ? T(0) : a);",
            init="he",
            forward_into=lambda xp, Z, A, tmp=None: xp.maximum(Z, 0.0, out=A),
            grad_into=_relu_grad_into,
        ),
        Activation(
            "leaky_relu",
            forward=lambda xp, Z: xp.where(Z > 0, Z, 0.01 * Z),
            grad=lambda xp, Z, A: 0.99 * _heaviside(xp, Z) + 0.01,
            cuda_forward="return z > T(0) ? z : T(0.01) * z;",
            cuda_grad="return z > T(0) ? T(1) : (z <= T(0) ? T(0.01) : z);",
            init="he",
            forward_into=_leaky_relu_forward_into,
            grad_into=_leaky_relu_grad_into,
        ),
        Activation(
            "elu",
            forward=lambda xp, Z: xp.where(Z > 0, Z, xp.expm1(xp.minimum(Z, 0.0))),
            grad=lambda xp, Z, A: xp.where(Z > 0, 1.0, A + 1.0),
            cuda_forward="return z > T(0) ? z : expm1(z);",
            cuda_grad="return z > T(0) ? T(1) : a + T(1);",
            init="he",
            forward_into=_elu_forward_into,
            grad_into=_elu_grad_into,
        ),
        Activation(
            "softplus",
            forward=lambda xp, Z: xp.maximum(Z, 0.0) + xp.log1p(xp.exp(-xp.abs(Z))),
            grad=lambda xp, Z, A: _sigmoid(xp, Z),
            cuda_forward="return (z > T(0) ? z : T(0)) + log1p(exp(-fabs(z)));",
            cuda_grad="return gpubp_sigmoid(z);",
            init="he",
            forward_into=_softplus_forward_into,
            grad_into=_softplus_grad_into,
        ),
        Activation(
            "gelu",
            forward=lambda xp, Z: 0.5 * Z * (1.0 + _erf(xp, Z * math.sqrt(0.5))),
            grad=lambda xp, Z, A: 0.5 * (1.0 + _erf(xp, Z * math.sqrt(0.5)))
            + Z * xp.exp(-0.5 * xp.minimum(Z * Z, 1e4)) * (1.0 / math.sqrt(2.0 * math.pi)),
            cuda_forward="return T(0.5) * z * (T(1) + erf(z * T(0.70710678118654752440)));",
            cuda_grad=(
                "const T z2 = z * z < T(1e4) ? z * z : T(1e4);\n"
                "return T(0.5) * (T(1) + erf(z * T(0.70710678118654752440)))"
                " + z * exp(T(-0.5) * z2) * T(0.39894228040143267794);"
            ),
            init="he",
            forward_into=_gelu_forward_into,
            grad_into=_gelu_grad_into,
        ),
        Activation(
            "gelu_tanh",
            forward=lambda xp, Z: Z * _gelu_tanh_parts(xp, Z)[1],
            grad=_gelu_tanh_grad,
            cuda_forward=(
                "const T zc = gpubp_clip(z, T(-50), T(50));\n"
                "return z * gpubp_sigmoid(T(1.5957691216057308) * (zc + T(0.044715) * zc * zc * zc));"
            ),
            cuda_grad=(
                "const T zc = gpubp_clip(z, T(-50), T(50));\n"
                "const T u2 = T(1.5957691216057308) * (zc + T(0.044715) * zc * zc * zc);\n"
                "const T s = gpubp_sigmoid(u2);\n"
                "return s + T(2) * zc * (s * gpubp_sigmoid(-u2)) * T(0.7978845608028654)"
                " * (T(1) + T(3) * T(0.044715) * zc * zc);"
            ),
            init="he",
            forward_into=_gelu_tanh_forward_into,
            grad_into=_gelu_tanh_grad_into,
        ),
        Activation(
            "silu",
            forward=lambda xp, Z: Z * _sigmoid(xp, Z),
            grad=lambda xp, Z, A: (lambda s: s * (1.0 + Z * (1.0 - s)))(_sigmoid(xp, Z)),
            cuda_forward="return z * gpubp_sigmoid(z);",
            cuda_grad="const T s = gpubp_sigmoid(z);\nreturn s * (T(1) + z * (T(1) - s));",
            init="he",
            forward_into=_silu_forward_into,
            grad_into=_silu_grad_into,
        ),
        Activation(
            "softmax",
            forward=_softmax,
            grad=_no_grad,
            cuda_forward="",
            cuda_grad="",
            elementwise=False,
            forward_into=_softmax_forward_into,
        ),
    )
}

ELEMENTWISE = tuple(name for name, a in ACTIVATIONS.items() if a.elementwise)


def get_activation(name: Any, argument: str = "activation") -> Activation:
    """The table entry for ``name``; a ValueError listing the valid names otherwise."""
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be an activation name (str); got {type(name).__name__} {name!r}")
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown {argument} {name!r}: expected one of {', '.join(ACTIVATIONS)}"
        ) from None
