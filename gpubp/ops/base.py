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

import numpy as np

from ..activations import Activation, softmax_backward
from ..losses import Loss

if TYPE_CHECKING:  # annotations only: the optimizers import nothing from here
    from ..optim import AdamHyperparameters, AdamWHyperparameters, SGDHyperparameters


class Ops:
    """Hot operations of backprop on one array module ``xp``.

    ``dropout`` arguments are a layer's draw for one training pass (:class:`gpubp.layers.dropout.Draw`):
    ``out`` receives the dropped output, ``mask`` (on backends that draw masks on the host, see
    ``dropout_in_kernels``) the mask m / (1 - p).
    """

    name = "reference"
    #: Whether the dropout masks are computed inside the kernels (no mask array; CuPy) rather
    #: than drawn into a mask array on the host.
    dropout_in_kernels = False

    def __init__(self, xp: Any):
        self.xp = xp

    # ---- mini-batches ------------------------------------------------------------------
    def take_rows(self, src: Any, idx: Any, out: Any) -> Any:
        """The rows ``idx`` of ``src`` (a mini-batch of a data set), written into ``out``. Every index
        lies in [0, len(src)): they come from a permutation of the rows."""
        return self.xp.take(src, idx, axis=0, out=out)

    # ---- matrix products (BLAS / cuBLAS) ---------------------------------------------
    def linear(self, A_prev: Any, W: Any, out: Any) -> Any:
        """Z^(l) = A^(l-1) W^(l)T (the bias is added by :meth:`bias_activation`)."""
        return self.xp.matmul(A_prev, W.T, out=out)

    def layer_forward(self, A_prev: Any, W: Any, b: Optional[Any], act: Optional[Activation], Z: Any, A: Any,
                      dropout: Any = None) -> Any:
        """One layer forward: Z^(l) = A^(l-1) W^(l)T + b^(l) into ``Z``, A^(l) = g^(l)(Z^(l)) into ``A``
        (``act`` None: no activation, ``A`` is ``Z``), and a fused dropout's output."""
        self.linear(A_prev, W, out=Z)
        return self.bias_activation(Z, b, act, A, dropout)

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

    def l2_penalty(self, W: Any, dW: Any, scale: Any) -> Any:
        """The L2 penalty of one layer (MATH.md, L2 penalty on the weights), ``scale`` = lambda / n:
        dC/dW^(l) += (lambda/n) W^(l) in place, and (lambda/2n) ||W^(l)||^2 returned as a 0-d array
        of W's dtype. ``scale`` is a float, or a 0-d backend array (a distributed step's row count)."""
        flat = W.reshape(-1)
        dW += scale * W
        return self.xp.asarray(self.xp.dot(flat, flat) * (0.5 * scale), dtype=W.dtype)

    # ---- elementwise work (the custom kernels on CuPy) -------------------------------
    def bias_activation(self, Z: Any, b: Optional[Any], act: Optional[Activation], A: Any, dropout: Any = None) -> Any:
        """Z^(l) += b^(l) (in place), then A^(l) = g^(l)(Z^(l)) written into ``A`` (nothing more when
        ``act`` is None: ``A`` is ``Z``); with ``dropout``, its output A * m / (1 - p) into ``dropout.out``."""
        if b is not None:
            Z += b
        if act is None:
            A = Z
        else:
            A[...] = act.forward(self.xp, Z)
        if dropout is not None:
            self.xp.multiply(A, self.dropout_mask(dropout), out=dropout.out)
        return A

    def activation_backward(self, dA: Any, Z: Any, A: Any, act: Activation, out: Any, dropout: Any = None) -> Any:
        """Delta^(l) = dA * g'^(l)(Z^(l)); ``out`` may be ``dA`` (in place). With ``dropout`` (applied
        after the activation in the forward pass) ``dA`` is the signal at the dropped output:
        Delta^(l) = (dA * m / (1 - p)) * g'^(l)(Z^(l))."""
        if dropout is not None:
            dA = self.xp.multiply(dA, dropout.mask, out=out)
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

    # ---- dropout (MATH.md, Dropout) ----------------------------------------------------
    def dropout_mask(self, drop: Any) -> Any:
        """The draw's mask m / (1 - p), drawn on the host into ``drop.mask`` (:mod:`gpubp.philox`)."""
        if self.xp is np:
            return drop.fill_mask(drop.mask)
        drop.mask[...] = self.xp.asarray(drop.fill_mask(np.empty(drop.mask.shape, dtype=drop.mask.dtype)))
        return drop.mask

    def dropout_forward(self, X: Any, drop: Any) -> Any:
        """X * m / (1 - p) into ``drop.out`` (a new mask)."""
        return self.xp.multiply(X, self.dropout_mask(drop), out=drop.out)

    def dropout_backward(self, dY: Any, drop: Any, out: Any) -> Any:
        """dC_0/dX = dC_0/dY * m / (1 - p) with the forward pass's mask; ``out`` may be ``dY``."""
        return self.xp.multiply(dY, drop.mask, out=out)

    # ---- batch normalisation (MATH.md, BatchNorm) --------------------------------------
    def batch_norm_sums(self, X: Any, shift: Any, s1: Any, s2: Any, work: Any, work2: Any) -> None:
        """s1_j = sum_i (x_ij - K_j) and s2_j = sum_i (x_ij - K_j)^2 for the shift K (the previous
        batch's mean); ``work`` and ``work2`` are scratch arrays shaped like X."""
        xp = self.xp
        xp.subtract(X, shift, out=work)
        work.sum(axis=0, out=s1)
        xp.multiply(work, work, out=work2)
        work2.sum(axis=0, out=s2)

    def batch_norm_stats(self, s1: Any, s2: Any, shift: Any, running_mean: Any, running_var: Any, mean: Any,
                         inv_std: Any, rows: float, momentum: float, eps: float, training: bool, update: bool) -> None:
        """mu and 1/sqrt(sigma^2 + eps) into ``mean`` and ``inv_std``.

        Training, from the sums shifted by K = ``shift`` over the N rows (``s1`` and ``s2`` are
        overwritten; ``shift`` may be ``mean``): mu = K + s1/N, sigma^2 = max(s2/N - (s1/N)^2, 0),
        and with ``update`` running_mean <- (1 - momentum) running_mean + momentum mu and
        running_var <- (1 - momentum) running_var + momentum N/(N-1) sigma^2. Inference: the
        running statistics.
        """
        xp = self.xp
        if not training:
            xp.copyto(mean, running_mean)
            xp.add(running_var, eps, out=inv_std)
        else:
            xp.multiply(s1, 1.0 / rows, out=s1)  # s1/N
            xp.multiply(s2, 1.0 / rows, out=s2)  # s2/N
            xp.multiply(s1, s1, out=inv_std)
            xp.subtract(s2, inv_std, out=s2)
            xp.maximum(s2, 0.0, out=s2)  # sigma^2 (biased), NaN kept
            xp.add(s1, shift, out=mean)  # mu
            if update:
                running_var *= 1.0 - momentum
                xp.multiply(s2, momentum * rows / max(rows - 1.0, 1.0), out=inv_std)
                running_var += inv_std
                running_mean *= 1.0 - momentum
                xp.multiply(mean, momentum, out=inv_std)
                running_mean += inv_std
            xp.add(s2, eps, out=inv_std)
        xp.sqrt(inv_std, out=inv_std)
        xp.divide(1.0, inv_std, out=inv_std)

    def batch_norm_forward(self, X: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, Xhat: Any, Y: Any,
                           act: Optional[Activation], A: Any, dropout: Any = None) -> Any:
        """zhat = (X - mu) / sqrt(sigma^2 + eps) into ``Xhat``, y = gamma zhat + beta into ``Y``, then
        a = g(y) into ``A`` (``A`` is ``Y`` without an activation) and the dropout's output."""
        xp = self.xp
        xp.subtract(X, mean, out=Xhat)
        Xhat *= inv_std
        xp.multiply(Xhat, gamma, out=Y)
        Y += beta
        return self.bias_activation(Y, None, act, A, dropout)

    def batch_norm_backward_sums(self, dout: Any, Y: Any, A: Any, act: Optional[Activation], Xhat: Any, s1: Any,
                                 s2: Any, dropout: Any = None, work: Any = None) -> None:
        """Delta_ij = dout_ij * g'(y_ij) in place (the dropout's mask first), s1_j = sum_i Delta_ij and
        s2_j = sum_i Delta_ij zhat_ij; ``work`` (shaped like dout, may be ``Y``) is scratch."""
        xp = self.xp
        if act is not None:
            self.activation_backward(dout, Y, A, act, out=dout, dropout=dropout)
        elif dropout is not None:
            xp.multiply(dout, dropout.mask, out=dout)
        dout.sum(axis=0, out=s1)
        xp.multiply(dout, Xhat, out=work)
        work.sum(axis=0, out=s2)

    def batch_norm_backward(self, Delta: Any, Xhat: Any, s1: Any, s2: Any, gamma: Any, inv_std: Any, rows: float,
                            training: bool, dgamma: Any, dbeta: Any, dX: Optional[Any], work: Any, coef: Any) -> None:
        """dC/dbeta = s1/N, dC/dgamma = s2/N, and the signal at the input into ``dX`` (if not None):
        (gamma / sqrt(sigma^2 + eps)) (Delta - dC/dbeta - zhat dC/dgamma) in training, where the n
        samples are coupled through mu and sigma, (gamma / sqrt(sigma^2 + eps)) Delta in inference."""
        xp = self.xp
        xp.multiply(s1, 1.0 / rows, out=dbeta)
        xp.multiply(s2, 1.0 / rows, out=dgamma)
        if dX is None:
            return
        xp.multiply(gamma, inv_std, out=coef)
        if training:
            xp.multiply(Xhat, dgamma, out=work)
            xp.subtract(Delta, dbeta, out=dX)
            dX -= work
            dX *= coef
        else:
            xp.multiply(Delta, coef, out=dX)

    # ---- gradient clipping over the flat gradient buffer ------------------------------
    def clip_grad_norm(self, grads: Any, max_norm: float) -> Any:
        """Clip the global L2 norm of the gradients, as torch.nn.utils.clip_grad_norm_ (MATH.md,
        clipping): ||g|| = sqrt(sum_w (dC/dw)^2) over the flat buffer, then
        g <- g min(1, max_norm / (||g|| + 1e-6)), in place. Returns ||g|| (before clipping) as a
        0-d array, without a synchronisation."""
        xp = self.xp
        norm = xp.sqrt(xp.dot(grads, grads))
        coef = max_norm / (norm + grads.dtype.type(1e-6))
        grads *= xp.minimum(coef, grads.dtype.type(1.0))  # NaN stays NaN, as clamp(max=1) keeps it
        return norm

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
        lr, eps, weight_decay = hyper.lr, hyper.eps_at(t), hyper.weight_decay
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

    def adamw_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: "AdamWHyperparameters") -> None:
        """AdamW step ``t`` (1-based): decoupled weight decay w <- w (1 - lr wd), then Adam's moments
        and step from dC/dw alone, as torch.optim.AdamW (MATH.md, AdamW); ``hyper`` holds ``lr``,
        ``betas``, ``eps`` and ``weight_decay``."""
        b1, b2 = hyper.betas
        lr, eps, weight_decay = hyper.lr, hyper.eps_at(t), hyper.weight_decay
        if weight_decay:
            params *= 1.0 - lr * weight_decay
        m *= b1
        m += (1.0 - b1) * grads
        v *= b2
        v += (1.0 - b2) * (grads * grads)
        step_size = lr / (1.0 - b1**t)
        denom = self.xp.sqrt(v) / ((1.0 - b2**t) ** 0.5) + eps
        params -= step_size * (m / denom)
