"""The NumPy in-place forms of the activation table: A = g(Z) and g'(Z) written into arrays
the caller preallocated, bit for bit the numbers of the table's ``forward`` and ``grad``.

:class:`~gpubp.ops.numpy_ops.NumpyOps` runs them block by block with reused scratch (see
there); :data:`IN_PLACE` holds them by row of the activation table. ``forward(Z, A, tmp)`` writes g(Z)
into ``A``, ``grad(Z, A, out, tmp)`` writes g'(Z) into ``out`` (``grad`` is ``None`` for
softmax, whose Jacobian-vector product is not elementwise). Where a form needs room for
intermediate values it takes it from ``tmp``, a :data:`Scratch` getter (``tmp(k)`` is the k-th
scratch array shaped and typed like ``Z``, never ``Z``, ``A`` or ``out``; left out, fresh
arrays are allocated). NaN, infinities and the sign of zeros come out as the table's formulas
give them.

An activation without an entry here runs the table's formulas (one temporary per operation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np

from .. import _optional
from ..activations import (
    ACTIVATIONS,
    Activation,
    GELU_TANH_CLIP,
    GELU_TANH_K,
    GELU_Z2_MAX,
    INV_SQRT_2,
    INV_SQRT_2PI,
    LEAKY_RELU_SLOPE,
    SQRT_2_OVER_PI,
    erf,
)

# Each repeats its formula of the activation table operation for operation (the same ufuncs on the
# same operands, so the same roundings), except where a comment shows why another sequence
# gives the identical result for every input, NaN, +-inf and +-0 included. Operands of + and *
# may be swapped: IEEE addition and multiplication are commutative, bit for bit.

Scratch = Callable[[int], Any]
"""``tmp(k)``: the k-th scratch array (k = 0, 1, 2), shaped and typed like ``Z``."""


def _scratch_or_fresh(tmp: Optional[Scratch], like: Any) -> Scratch:
    """``tmp``, or a getter of fresh arrays like ``like`` (one per k) when none was given."""
    if tmp is not None:
        return tmp
    made: Dict[int, Any] = {}

    def fresh(k: int) -> Any:
        if k not in made:
            made[k] = np.empty_like(like)
        return made[k]

    return fresh


def _erf_into(X: Any, out: Any) -> Any:
    """out = erf(X) (``out`` may be ``X``), the same function as :func:`gpubp.activations.erf`."""
    special = _optional.scipy_special()
    if special is not None:
        return special.erf(X, out=out)
    out[...] = erf(np, X)
    return out


def _sigmoid_into(X: Any, out: Any, T: Any) -> Any:
    """out = sigmoid(X) (the table's formula); ``T`` is scratch and may be ``X`` itself, ``out`` must not be ``X``.

    where(x >= 0, 1, e) is computed as max([x >= 0], e) with e = exp(-|x|) in [0, 1]: 1 where
    x >= 0, e where x < 0, and NaN for NaN x (e is NaN there): the same value without a mask.
    """
    np.abs(X, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)  # e
    np.greater_equal(X, 0.0, out=T)  # 1.0 / 0.0
    np.maximum(T, out, out=T)  # where(x >= 0, 1, e)
    np.add(out, 1.0, out=out)  # 1 + e
    return np.divide(T, out, out=out)


def _sigmoid_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    return _sigmoid_into(Z, A, _scratch_or_fresh(tmp, Z)(0))


def _leaky_relu_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z > 0, z, 0.01 z) = max(z, 0.01 z): the product is correctly rounded, so 0.01 z <= z
    # for z > 0 and >= z for z < 0; +-0 gives +-0 either way, NaN stays NaN
    np.multiply(Z, LEAKY_RELU_SLOPE, out=A)
    return np.maximum(Z, A, out=A)


def _identity_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z == z, 1, z) = clip(z, 1, 1): 1 for every number (+-inf included), NaN for NaN, in
    # one pass (faster than maximum then minimum with a scalar)
    return np.clip(Z, 1.0, 1.0, out=out)


def _relu_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # A = max(z, 0) is +0, positive, +inf or NaN, where heaviside(A, 0) = ceil(min(A, 1)): min
    # maps into [0, 1] and ceil takes (0, 1] to 1 and +0 to +0 (two passes, each faster than sign)
    np.minimum(A, 1.0, out=out)
    return np.ceil(out, out=out)


def _leaky_relu_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # 0.99 heaviside(z) + 0.01 is 0.99 * 1 + 0.01, which rounds to exactly 1 in float32 and
    # float64, for z > 0 and 0.01 for z <= 0 (-inf included): max(ceil(min(z, 1)), 0.01), as
    # ceil(min(z, 1)) is 1 for z > 0 and <= 0 otherwise; NaN stays NaN
    np.minimum(Z, 1.0, out=out)
    np.ceil(out, out=out)
    return np.maximum(out, LEAKY_RELU_SLOPE, out=out)


def _elu_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z > 0, z, E) with E = expm1(min(z, 0)) is E + max(z, -0): for z > 0, E = expm1(+0)
    # = +0 and +0 + z = z; for z <= 0 (and -inf), max(z, -0) = -0 and E + (-0) = E, its sign of
    # zero included; NaN stays NaN
    T = _scratch_or_fresh(tmp, Z)(0)
    np.minimum(Z, 0.0, out=A)
    np.expm1(A, out=A)
    np.maximum(Z, -0.0, out=T)
    return np.add(A, T, out=A)


def _elu_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    # where(z > 0, 1, a + 1) = min(a + 1, 1) for a = elu(z): z > 0 gives a = z > 0 and a + 1 >= 1
    # (+inf included); z <= 0 gives a = expm1(z) in [-1, 0] and a + 1 <= 1; NaN stays NaN
    np.add(A, 1.0, out=out)
    return np.minimum(out, 1.0, out=out)


def _softplus_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(tmp, Z)(0)
    np.abs(Z, out=A)
    np.negative(A, out=A)
    np.exp(A, out=A)
    np.log1p(A, out=A)
    np.maximum(Z, 0.0, out=T)
    return np.add(T, A, out=A)


def _softplus_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    return _sigmoid_into(Z, out, _scratch_or_fresh(tmp, Z)(0))


def _gelu_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(tmp, Z)(0)
    np.multiply(Z, INV_SQRT_2, out=T)
    _erf_into(T, T)
    np.add(T, 1.0, out=T)
    np.multiply(Z, 0.5, out=A)
    return np.multiply(A, T, out=A)


def _gelu_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(tmp, Z)(0)
    np.multiply(Z, INV_SQRT_2, out=out)
    _erf_into(out, out)
    np.add(out, 1.0, out=out)
    np.multiply(out, 0.5, out=out)  # 0.5 (1 + erf(z / sqrt 2))
    np.multiply(Z, Z, out=T)
    np.minimum(T, GELU_Z2_MAX, out=T)
    np.multiply(T, -0.5, out=T)
    np.exp(T, out=T)
    np.multiply(Z, T, out=T)
    np.multiply(T, INV_SQRT_2PI, out=T)
    return np.add(out, T, out=out)


def _gelu_tanh_u2_into(Z: Any, Zc: Any, U: Any) -> Any:
    """Zc = clip(z), U = u2 = 2 sqrt(2/pi) (zc + 0.044715 zc^3), as in :func:`gpubp.activations._gelu_tanh_parts`."""
    np.clip(Z, -GELU_TANH_CLIP, GELU_TANH_CLIP, out=Zc)
    np.multiply(Zc, GELU_TANH_K, out=U)
    np.multiply(U, Zc, out=U)
    np.multiply(U, Zc, out=U)
    np.add(Zc, U, out=U)
    return np.multiply(U, 2.0 * SQRT_2_OVER_PI, out=U)


def _gelu_tanh_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(tmp, Z)(0)
    _gelu_tanh_u2_into(Z, T, A)
    _sigmoid_into(A, T, A)  # s
    return np.multiply(Z, T, out=A)


def _gelu_tanh_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    tmp = _scratch_or_fresh(tmp, Z)
    Zc, S, T = tmp(0), tmp(1), tmp(2)
    _gelu_tanh_u2_into(Z, Zc, S)
    # s = sigmoid(u2) and sn = sigmoid(-u2) share e = exp(-|u2|) and d = 1 + e: one of them is
    # 1/d, the other e/d (both 1/2 at u2 = +-0, where e = 1), so s * sn = (1/d) * (e/d)
    np.abs(S, out=out)
    np.negative(out, out=out)
    np.exp(out, out=out)  # e
    np.greater_equal(S, 0.0, out=S)
    np.maximum(S, out, out=S)  # where(u2 >= 0, 1, e), see _sigmoid_into
    np.add(out, 1.0, out=T)  # d
    np.divide(S, T, out=S)  # s
    np.divide(out, T, out=out)  # e/d
    np.divide(1.0, T, out=T)  # 1/d
    np.multiply(T, out, out=out)  # s * sn
    # s + 2 zc (s sn) sqrt(2/pi) (1 + 3 * 0.044715 zc^2), left to right as in _gelu_tanh_grad
    np.multiply(Zc, 2.0, out=T)
    np.multiply(T, out, out=out)
    np.multiply(out, SQRT_2_OVER_PI, out=out)
    np.multiply(Zc, 3.0 * GELU_TANH_K, out=T)
    np.multiply(T, Zc, out=T)
    np.add(T, 1.0, out=T)
    np.multiply(out, T, out=out)
    return np.add(S, out, out=out)


def _silu_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    _sigmoid_into(Z, A, _scratch_or_fresh(tmp, Z)(0))
    return np.multiply(Z, A, out=A)


def _silu_grad_into(Z: Any, A: Any, out: Any, tmp: Optional[Scratch] = None) -> Any:
    T = _scratch_or_fresh(tmp, Z)(0)
    _sigmoid_into(Z, out, T)  # s
    np.subtract(1.0, out, out=T)
    np.multiply(Z, T, out=T)
    np.add(T, 1.0, out=T)
    return np.multiply(out, T, out=out)



# Up to this many columns the row maxima of softmax are taken from a transposed copy of Z:
# NumPy reduces a short row slowly (about 50 ns a row for 10 float32 columns), while the
# column-wise maximum of the copy runs over contiguous rows (n numbers each); copy and
# reduction together cost a fifth of the row reduction at 10 columns. The two break even near
# 64 columns in float64 and 100 in float32; beyond, the row reduction is the faster.
SOFTMAX_TRANSPOSED_MAX_COLS = 64

_SMALLEST_NORMAL: Dict[Any, float] = {}


def smallest_normal(dtype: Any) -> float:
    """The smallest normal number of ``dtype`` (finfo's, looked up once per dtype)."""
    tiny = _SMALLEST_NORMAL.get(dtype)
    if tiny is None:
        tiny = _SMALLEST_NORMAL[dtype] = float(np.finfo(dtype).tiny)
    return tiny


def _softmax_forward_into(Z: Any, A: Any, tmp: Optional[Scratch] = None) -> Any:
    """A = softmax(Z) for Z of shape (n, m), in place in ``A`` (not sharing memory with ``Z``),
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
        np.copyto(ZT, Z.T)
        zmax = np.maximum.reduce(ZT, axis=0)[:, None]  # ZT.max(axis=0) without ndarray.max's Python layer
    else:
        zmax = np.maximum.reduce(Z, axis=1, keepdims=True)
    np.subtract(Z, zmax, out=A)
    np.exp(A, out=A)
    A[A < smallest_normal(A.dtype)] = 0.0  # see gpubp.activations' softmax
    return np.divide(A, np.add.reduce(A, axis=1, keepdims=True), out=A)


@dataclass(frozen=True)
class InPlace:
    """The in-place forms of one activation: ``forward(Z, A, tmp=None)`` and ``grad(Z, A, out, tmp=None)``."""

    forward: Callable[..., Any]
    grad: Optional[Callable[..., Any]] = None


_FORMS: Dict[str, InPlace] = {
    "identity": InPlace(lambda Z, A, tmp=None: np.copyto(A, Z), _identity_grad_into),
    "sigmoid": InPlace(_sigmoid_forward_into,
                       lambda Z, A, out, tmp=None: np.multiply(A, np.subtract(1.0, A, out=out), out=out)),
    "tanh": InPlace(lambda Z, A, tmp=None: np.tanh(Z, out=A),
                    lambda Z, A, out, tmp=None: np.subtract(1.0, np.multiply(A, A, out=out), out=out)),
    "relu": InPlace(lambda Z, A, tmp=None: np.maximum(Z, 0.0, out=A), _relu_grad_into),
    "leaky_relu": InPlace(_leaky_relu_forward_into, _leaky_relu_grad_into),
    "elu": InPlace(_elu_forward_into, _elu_grad_into),
    "softplus": InPlace(_softplus_forward_into, _softplus_grad_into),
    "gelu": InPlace(_gelu_forward_into, _gelu_grad_into),
    "gelu_tanh": InPlace(_gelu_tanh_forward_into, _gelu_tanh_grad_into),
    "silu": InPlace(_silu_forward_into, _silu_grad_into),
    "softmax": InPlace(_softmax_forward_into),
}

#: The in-place forms by row of the activation table (rows hash by identity: an entry that
#: replaces a row of the table runs its own formulas, not these).
IN_PLACE: Dict[Activation, InPlace] = {ACTIVATIONS[name]: forms for name, forms in _FORMS.items()}
