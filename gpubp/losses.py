"""Loss heads: the value of C and the output layer's error signal Delta^(L).

MATH.md: C_0 is the loss of one sample, C = (1/n) sum_i C_0^(i) the loss of a batch, and
``Delta^(L) = dC_0/dA^(L) * g'^(L)(Z^(L))`` the output layer's error signal (one row per
sample, *not* divided by n: the averaging over n happens once, in dC/dW).

* ``sse``: C_0 = sum_j (a_j - y_j)^2, the tutorial's loss (no factor 1/2, so dC_0/da_j = 2 (a_j - y_j));
* ``mse``: sse divided by the number of output nodes m;
* ``cross_entropy``: softmax output, C_0 = -sum_j y_j log a_j = logsumexp(z) - sum_j y_j z_j,
  fused and stable: Delta = A - Y; Y one-hot rows or integer labels (never expanded);
* ``binary_cross_entropy``: sigmoid output, C_0 = -sum_j [y_j log a_j + (1 - y_j) log(1 - a_j)]
  = sum_j softplus(z_j) - y_j z_j, fused: Delta = A - Y.

Each head is written once against ``xp`` and works on NumPy and CuPy alike; the CuPy ops
replace ``delta`` with fused kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

from .activations import Activation, softmax_backward
from .names import lookup


def _squared_error(xp: Any, A: Any, Y: Any) -> Any:
    D = A - Y
    return (D * D).sum(axis=1)


def _log_sum_exp(xp: Any, Z: Any) -> Any:
    zmax = Z.max(axis=1)
    return zmax + xp.log(xp.exp(Z - zmax[:, None]).sum(axis=1))


def _picked(xp: Any, Z: Any, labels: Any) -> Any:
    """z_{i, y_i} for integer labels y (the one-hot product without a one-hot array)."""
    return xp.take_along_axis(Z, labels.reshape(-1, 1), axis=1)[:, 0]


def _cross_entropy_value(xp: Any, Z: Any, A: Any, Y: Any) -> Any:
    if Y.ndim == 1:
        return _log_sum_exp(xp, Z) - _picked(xp, Z, Y)
    # sum_j y_j (logsumexp(z) - z_j), valid for soft targets too
    return Y.sum(axis=1) * _log_sum_exp(xp, Z) - (Y * Z).sum(axis=1)


def _cross_entropy_delta(xp: Any, Z: Any, A: Any, Y: Any, act: Activation) -> Any:
    if Y.ndim == 1:
        Delta = A.copy()
        rows = xp.arange(Delta.shape[0])
        Delta[rows, Y] -= 1.0
        return Delta
    # dC_0/dz_j = a_j sum_i y_i - y_j, which is A - Y for one-hot (or any normalised) rows
    return A * Y.sum(axis=1, keepdims=True) - Y


def _bce_value(xp: Any, Z: Any, A: Any, Y: Any) -> Any:
    # log(1 + e^z) - y z, computed without overflow for large |z|
    return (xp.maximum(Z, 0.0) - Y * Z + xp.log1p(xp.exp(-xp.abs(Z)))).sum(axis=1)


def _chain(xp: Any, dA: Any, Z: Any, A: Any, act: Activation) -> Any:
    """Delta = dC_0/dA * g'(Z) (elementwise), or the softmax Jacobian-vector product."""
    if act.elementwise:
        return dA * act.grad(xp, Z, A)
    return softmax_backward(xp, dA, A)


#: The forms of output head a backend can fuse (``Loss.head``): what the fast paths and
#: kernels of the backends are chosen by.
SQUARED_ERROR = "squared_error"  # C_0 = s sum_j (a_j - y_j)^2, any output activation
SOFTMAX_CROSS_ENTROPY = "softmax_cross_entropy"  # Delta = A sum_j y_j - Y, softmax output
SIGMOID_CROSS_ENTROPY = "sigmoid_cross_entropy"  # Delta = A - Y, sigmoid output


@dataclass(frozen=True)
class Loss:
    """One loss head: ``value`` gives C_0 per sample, ``delta`` gives Delta^(L).

    What the backends, the checks and the command line need to know besides the formulas:

    * ``head``: the form of the head (:data:`SQUARED_ERROR`, :data:`SOFTMAX_CROSS_ENTROPY` or
      :data:`SIGMOID_CROSS_ENTROPY`), which selects the fused kernels and fast paths;
    * ``mean_over_outputs``: a squared error divided by the number of output nodes m (mse), so
      C_0 = :meth:`squared_scale` (m) sum_j (a_j - y_j)^2;
    * ``requires_output_activation``: the one output activation its fused Delta assumes;
    * ``accepts_labels``: targets may be integer class labels, shape (n,), read directly;
    * ``target_range``: the closed interval targets must lie in, if any.
    """

    name: str
    value: Callable[[Any, Any, Any, Any], Any]
    delta: Callable[[Any, Any, Any, Any, Activation], Any]
    default_output_activation: str
    head: str = SQUARED_ERROR
    mean_over_outputs: bool = False
    requires_output_activation: Optional[str] = None
    accepts_labels: bool = False
    target_range: Optional[Tuple[float, float]] = None

    def squared_scale(self, m: int) -> float:
        """s of a squared-error head, C_0 = s sum_j (a_j - y_j)^2 over m output nodes."""
        return 1.0 / m if self.mean_over_outputs else 1.0

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"


LOSSES: Dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss(
            "sse",
            value=lambda xp, Z, A, Y: _squared_error(xp, A, Y),
            delta=lambda xp, Z, A, Y, act: _chain(xp, 2.0 * (A - Y), Z, A, act),
            default_output_activation="sigmoid",
        ),
        Loss(
            "mse",
            value=lambda xp, Z, A, Y: _squared_error(xp, A, Y) / A.shape[1],
            delta=lambda xp, Z, A, Y, act: _chain(xp, (2.0 / A.shape[1]) * (A - Y), Z, A, act),
            default_output_activation="identity",
            mean_over_outputs=True,
        ),
        Loss(
            "cross_entropy",
            value=_cross_entropy_value,
            delta=_cross_entropy_delta,
            default_output_activation="softmax",
            head=SOFTMAX_CROSS_ENTROPY,
            requires_output_activation="softmax",
            accepts_labels=True,
        ),
        Loss(
            "binary_cross_entropy",
            value=_bce_value,
            delta=lambda xp, Z, A, Y, act: A - Y,
            default_output_activation="sigmoid",
            head=SIGMOID_CROSS_ENTROPY,
            requires_output_activation="sigmoid",
            target_range=(0, 1),
        ),
    )
}


def get_loss(name: Any) -> Loss:
    """The loss head called ``name``; a ValueError listing the valid names otherwise."""
    if isinstance(name, Loss):
        return name
    return lookup(LOSSES, name, "loss", "loss")
