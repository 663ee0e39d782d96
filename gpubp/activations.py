"""The activation table: every activation g described once.

Each :class:`Activation` entry holds the math of g, side by side (micrograd style: the
derivative next to its forward):

* ``forward(xp, Z)`` -> A = g(Z), written once against the array module ``xp`` (NumPy or CuPy);
* ``grad(xp, Z, A)`` -> g'(Z), using A where that is cheaper (sigmoid, tanh, relu);
* ``cuda_forward`` / ``cuda_grad``: the same two formulas as the CUDA C++ body of a device
  function of ``z`` (and ``a`` for the derivative) of template type ``T``, which may call the
  NaN-preserving helpers ``gpubp_sigmoid`` and ``gpubp_clip`` of ``kernels/``; the kernels are
  generic and get these bodies spliced in, so adding an activation is one entry here. Their
  constants are the Python constants below, written into the source (:func:`cuda_literal`);
* ``init``: the initialisation scheme for a layer using it (``"he"`` for ReLU-like,
  ``"glorot"`` otherwise).

The NumPy backend's in-place forms of the same formulas (bit for bit the same numbers, without
temporaries) are in :mod:`gpubp.ops.numpy_activations`.

MATH.md: ``A^(l) = g^(l)(Z^(l))`` (forward) and ``Delta^(l) = dC_0/dA^(l) * g'^(l)(Z^(l))``
(backward). Every formula is stable for large |z| and propagates NaN from ``z``.
``softmax`` is the one non-elementwise entry (output layer only): it works row by row (each
row of A from the same row of Z alone, so blocks of rows may be computed apart), and its
Jacobian-vector product is :func:`softmax_backward`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Tuple

import numpy as np

from . import _optional
from .names import lookup

#: leaky_relu's slope for z <= 0.
LEAKY_RELU_SLOPE = 0.01
#: 1 / sqrt(2) and 1 / sqrt(2 pi): gelu's erf(z / sqrt 2) and the normal density.
INV_SQRT_2 = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: gelu's derivative takes exp(-z^2 / 2) with z^2 clipped here (exp is 0 there already).
GELU_Z2_MAX = 1e4
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_K = 0.044715
# Beyond |z| = 50 the tanh-GELU is exactly z or 0 in float64 (and float32); clipping there
# keeps z**3 from overflowing without changing any result.
GELU_TANH_CLIP = 50.0


def cuda_literal(x: float) -> str:
    """``x`` as a CUDA constant of the kernel's type ``T``: ``T(<the shortest decimal that reads
    back as the same double>)``, so a kernel uses the very double the Python formula uses."""
    return f"T({float(x)!r})"


def erf(xp: Any, x: Any) -> Any:
    """The exact error function, elementwise, on either backend (SciPy's where it is installed)."""
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


@dataclass(frozen=True, eq=False)
class Activation:
    """One row of the activation table (see the module docstring). Rows compare and hash by
    identity: a backend's table of faster forms is keyed by the row itself, so a row replaced
    by another (with other formulas) never picks up the old row's fast forms."""

    name: str
    forward: Callable[[Any, Any], Any]
    grad: Callable[[Any, Any, Any], Any]
    cuda_forward: str
    cuda_grad: str
    init: str = "glorot"
    elementwise: bool = True

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _softmax(xp: Any, Z: Any) -> Any:
    E = xp.exp(Z - Z.max(axis=1, keepdims=True))
    # Probabilities below the smallest normal number are flushed to 0: beside the row's
    # largest (exp(0) = 1) they carry nothing, and as denormals they would slow every later
    # product on the CPU about tenfold (Delta^(L) = A - Y feeds two GEMMs).
    E[E < xp.finfo(E.dtype).tiny] = 0.0
    return E / E.sum(axis=1, keepdims=True)


def softmax_backward(xp: Any, dA: Any, A: Any) -> Any:
    """Delta = J_softmax^T dA per row: a_j (dA_j - sum_i dA_i a_i) (MATH.md, output layer)."""
    return A * (dA - (dA * A).sum(axis=1, keepdims=True))


def _no_grad(xp: Any, Z: Any, A: Any) -> Any:
    raise TypeError("softmax has no elementwise derivative; use softmax_backward (Jacobian-vector product)")


# the constants of the CUDA bodies, as the Python formulas above use them
_LEAKY = cuda_literal(LEAKY_RELU_SLOPE)
_K = cuda_literal(GELU_TANH_K)
_CLIP_LO, _CLIP_HI = cuda_literal(-GELU_TANH_CLIP), cuda_literal(GELU_TANH_CLIP)
_TWO_SQRT_2_OVER_PI = cuda_literal(2.0 * SQRT_2_OVER_PI)  # u2 = 2u of _gelu_tanh_parts

ACTIVATIONS: Dict[str, Activation] = {
    a.name: a
    for a in (
        Activation(
            "identity",
            forward=lambda xp, Z: Z.copy(),
            grad=lambda xp, Z, A: xp.where(Z == Z, 1.0, Z).astype(Z.dtype, copy=False),
            cuda_forward="return z;",
            cuda_grad="return z == z ? T(1) : z;",
        ),
        Activation(
            "sigmoid",
            forward=_sigmoid,
            grad=lambda xp, Z, A: A * (1.0 - A),
            cuda_forward="return gpubp_sigmoid(z);",
            cuda_grad="return a * (T(1) - a);",
        ),
        Activation(
            "tanh",
            forward=lambda xp, Z: xp.tanh(Z),
            grad=lambda xp, Z, A: 1.0 - A * A,
            cuda_forward="return tanh(z);",
            cuda_grad="return T(1) - a * a;",
        ),
        Activation(
            "relu",
            forward=lambda xp, Z: xp.maximum(Z, 0.0),
            grad=lambda xp, Z, A: _heaviside(xp, A),
            cuda_forward="return z <= T(0) ? T(0) : z;",
            cuda_grad="return a > T(0) ? T(1) : (a <= T(0) ? T(0) : a);",
            init="he",
        ),
        Activation(
            "leaky_relu",
            forward=lambda xp, Z: xp.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z),
            grad=lambda xp, Z, A: (1.0 - LEAKY_RELU_SLOPE) * _heaviside(xp, Z) + LEAKY_RELU_SLOPE,
            cuda_forward=f"return z > T(0) ? z : {_LEAKY} * z;",
            cuda_grad=f"return z > T(0) ? T(1) : (z <= T(0) ? {_LEAKY} : z);",
            init="he",
        ),
        Activation(
            "elu",
            forward=lambda xp, Z: xp.where(Z > 0, Z, xp.expm1(xp.minimum(Z, 0.0))),
            grad=lambda xp, Z, A: xp.where(Z > 0, 1.0, A + 1.0),
            cuda_forward="return z > T(0) ? z : expm1(z);",
            cuda_grad="return z > T(0) ? T(1) : a + T(1);",
            init="he",
        ),
        Activation(
            "softplus",
            forward=lambda xp, Z: xp.maximum(Z, 0.0) + xp.log1p(xp.exp(-xp.abs(Z))),
            grad=lambda xp, Z, A: _sigmoid(xp, Z),
            cuda_forward="return (z > T(0) ? z : T(0)) + log1p(exp(-fabs(z)));",
            cuda_grad="return gpubp_sigmoid(z);",
            init="he",
        ),
        Activation(
            "gelu",
            forward=lambda xp, Z: 0.5 * Z * (1.0 + erf(xp, Z * INV_SQRT_2)),
            grad=lambda xp, Z, A: 0.5 * (1.0 + erf(xp, Z * INV_SQRT_2))
            + Z * xp.exp(-0.5 * xp.minimum(Z * Z, GELU_Z2_MAX)) * INV_SQRT_2PI,
            cuda_forward=f"return T(0.5) * z * (T(1) + erf(z * {cuda_literal(INV_SQRT_2)}));",
            cuda_grad=(
                f"const T z2 = z * z < {cuda_literal(GELU_Z2_MAX)} ? z * z : {cuda_literal(GELU_Z2_MAX)};\n"
                f"return T(0.5) * (T(1) + erf(z * {cuda_literal(INV_SQRT_2)}))"
                f" + z * exp(T(-0.5) * z2) * {cuda_literal(INV_SQRT_2PI)};"
            ),
            init="he",
        ),
        Activation(
            "gelu_tanh",
            forward=lambda xp, Z: Z * _gelu_tanh_parts(xp, Z)[1],
            grad=_gelu_tanh_grad,
            cuda_forward=(
                f"const T zc = gpubp_clip(z, {_CLIP_LO}, {_CLIP_HI});\n"
                f"return z * gpubp_sigmoid({_TWO_SQRT_2_OVER_PI} * (zc + {_K} * zc * zc * zc));"
            ),
            cuda_grad=(
                f"const T zc = gpubp_clip(z, {_CLIP_LO}, {_CLIP_HI});\n"
                f"const T u2 = {_TWO_SQRT_2_OVER_PI} * (zc + {_K} * zc * zc * zc);\n"
                "const T s = gpubp_sigmoid(u2);\n"
                f"return s + T(2) * zc * (s * gpubp_sigmoid(-u2)) * {cuda_literal(SQRT_2_OVER_PI)}"
                f" * (T(1) + T(3) * {_K} * zc * zc);"
            ),
            init="he",
        ),
        Activation(
            "silu",
            forward=lambda xp, Z: Z * _sigmoid(xp, Z),
            grad=lambda xp, Z, A: (lambda s: s * (1.0 + Z * (1.0 - s)))(_sigmoid(xp, Z)),
            cuda_forward="return z * gpubp_sigmoid(z);",
            cuda_grad="const T s = gpubp_sigmoid(z);\nreturn s * (T(1) + z * (T(1) - s));",
            init="he",
        ),
        Activation(
            "softmax",
            forward=_softmax,
            grad=_no_grad,
            cuda_forward="",
            cuda_grad="",
            elementwise=False,
        ),
    )
}

ELEMENTWISE = tuple(name for name, a in ACTIVATIONS.items() if a.elementwise)


def get_activation(name: Any, argument: str = "activation") -> Activation:
    """The table entry for ``name``; a ValueError listing the valid names otherwise."""
    if isinstance(name, Activation):
        return name
    return lookup(ACTIVATIONS, name, argument, "activation")
