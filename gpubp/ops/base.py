"""The reference implementation of every hot operation of one training step.

Written once against the array module ``xp`` (NumPy or CuPy, Chainer's idiom), each method
computes one formula of MATH.md; :class:`~gpubp.ops.numpy_ops.NumpyOps` and
:class:`~gpubp.ops.cupy_ops.CupyOps` override only what they do faster. Every method writes
into an ``out`` array the caller preallocated (the network's per-batch-size workspace), so a
training step allocates nothing after the first batch of a given size wherever a backend
overrides the elementwise work.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..activations import Activation, softmax_backward
from ..losses import Loss

if TYPE_CHECKING:  # annotations only: the optimizers import nothing from here
    from ..optim import AdamHyperparameters, SGDHyperparameters


class Ops:
    """Hot operations of backprop on one array module ``xp``."""

    name = "reference"

    def __init__(self, xp: Any):
        self.xp = xp

    # ---- matrix products (BLAS / cuBLAS) ---------------------------------------------
    def linear(self, A_prev: Any, W: Any, out: Any) -> Any:
        """Z^(l) = A^(l-1) W^(l)T (the bias is added by :meth:`bias_activation`)."""
        return self.xp.matmul(A_prev, W.T, out=out)

    def layer_forward(self, A_prev: Any, W: Any, b: Optional[Any], act: Activation, Z: Any, A: Any) -> Any:
        """One layer forward: Z^(l) = A^(l-1) W^(l)T + b^(l) into ``Z``, A^(l) = g^(l)(Z^(l)) into ``A``."""
        self.linear(A_prev, W, out=Z)
        return self.bias_activation(Z, b, act, A)

    def backprop_linear(self, Delta: Any, W: Any, out: Any) -> Any:
        """dC_0/dA^(l-1) = Delta^(l) W^(l): the sum over j of delta_j w_jk (MATH.md, hidden layer)."""
        return self.xp.matmul(Delta, W, out=out)

    def grad_weights(self, Delta: Any, A_prev: Any, out: Any) -> Any:
        """dC/dW^(l) = (1/n) Delta^(l)T A^(l-1): the gradient-averaging hot path."""
        n = Delta.shape[0]
        self.xp.matmul(Delta.T, A_prev, out=out)
        out *= 1.0 / n
        return out

    def grad_bias(self, Delta: Any, out: Any) -> Any:
        """dC/db^(l) = (1/n) sum over rows of Delta^(l)."""
        n = Delta.shape[0]
        Delta.sum(axis=0, out=out)
        out *= 1.0 / n
        return out

    # ---- elementwise work (the custom kernels on CuPy) -------------------------------
    def bias_activation(self, Z: Any, b: Optional[Any], act: Activation, A: Any) -> Any:
        """Z^(l) += b^(l) (in place), then A^(l) = g^(l)(Z^(l)) written into ``A``."""
        if b is not None:
            Z += b
        A[...] = act.forward(self.xp, Z)
        return A

    def activation_backward(self, dA: Any, Z: Any, A: Any, act: Activation, out: Any) -> Any:
        """Delta^(l) = dA * g'^(l)(Z^(l)); ``out`` may be ``dA`` (in place)."""
        if act.elementwise:
            self.xp.multiply(dA, act.grad(self.xp, Z, A), out=out)
        else:
            out[...] = softmax_backward(self.xp, dA, A)
        return out

    def loss_head(self, loss: Loss, act: Activation, Z: Any, A: Any, Y: Any, Delta: Any) -> Any:
        """C = (1/n) sum_i C_0^(i) as a 0-d array, and Delta^(L) = dC_0/dZ^(L) into ``Delta``."""
        Delta[...] = loss.delta(self.xp, Z, A, Y, act)
        return self.loss_value(loss, Z, A, Y)

    def loss_value(self, loss: Loss, Z: Any, A: Any, Y: Any) -> Any:
        """C = (1/n) sum_i C_0^(i), a 0-d array of the network's dtype (no synchronisation)."""
        return self.xp.asarray(loss.value(self.xp, Z, A, Y).mean(dtype=Z.dtype))

    # ---- optimizer updates over the flat parameter buffer ----------------------------
    def sgd_update(self, params: Any, grads: Any, velocity: Optional[Any], hyper: "SGDHyperparameters") -> None:
        """w <- w - eta dC/dw (MATH.md, update), with optional L2 decay and (Nesterov) momentum.

        As torch.optim.SGD: g = dC/dw + wd w; v <- mu v + g; step = g + mu v (Nesterov) or v.
        ``hyper`` holds eta (``lr``), mu (``momentum``), ``nesterov`` and wd (``weight_decay``);
        ``velocity`` is None without momentum.
        """
        lr, momentum, weight_decay = hyper.lr, hyper.momentum, hyper.weight_decay
        g = grads + weight_decay * params if weight_decay else grads
        if velocity is None:
            params -= lr * g
            return
        velocity *= momentum
        velocity += g
        step = g + momentum * velocity if hyper.nesterov else velocity
        params -= lr * step

    def adam_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: "AdamHyperparameters") -> None:
        """Adam (Kingma & Ba) step ``t`` (1-based) on the flat buffer, L2 decay as torch.optim.Adam;
        ``hyper`` holds ``lr``, ``betas``, ``eps`` and ``weight_decay``."""
        b1, b2 = hyper.betas
        lr, eps, weight_decay = hyper.lr, hyper.eps, hyper.weight_decay
        g = grads + weight_decay * params if weight_decay else grads
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        bias1 = 1.0 - b1**t
        bias2 = 1.0 - b2**t
        step_size = lr / bias1
        denom = self.xp.sqrt(v) / (bias2**0.5) + eps
        params -= step_size * (m / denom)
