"""CuPy (CUDA GPU) implementation of the array layer: cuBLAS for the matrix products, gpubp's
own kernels (``kernels/``, see :mod:`gpubp.ops.cuda_kernels`) for every elementwise step.

Per training step: ``Z = A W^T`` (cuBLAS GEMM), bias + activation in one kernel, the loss
head (Delta^(L) and C_0 per sample) in one kernel, ``dC/dW = (1/n) Delta^T A`` as one GEMM
with alpha = 1/n written straight into the flat gradient buffer, ``dC/db`` as one column
reduction, ``Delta W`` (cuBLAS) then ``* g'(Z)`` in one kernel, and one optimizer kernel
over the flat parameter buffer. A dropout after an activation rides in the activation's
kernels (its mask computed in the kernel from the counter-based generator, never stored);
BatchNorm is two row reductions and two flat passes forward and backward (``batch_norm.cu``).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from .. import _optional
from ..activations import Activation
from ..losses import Loss
from .base import Ops
from .cuda_kernels import CudaKernels

#: Elements per partial sum of the gradient norm (one block each): enough blocks to fill a GPU
#: from about 2^19 parameters, few enough partial sums for one block to add them up.
CLIP_CHUNK = 2048


def _draw(drop: Any) -> Tuple[Any, ...]:
    """The dropout parameters of the kernels (``GPUBP_DROPOUT_PARAMS``) for one draw."""
    return drop.p, drop.scale, drop.seed, drop.stream, drop.call, drop.offset


def _same_dtype(what: str, dtype: Any, **arrays: Any) -> None:
    for name, a in arrays.items():
        if a.dtype != dtype:
            raise TypeError(f"{what}: {name} must have dtype {dtype} like the others; got {a.dtype}")


class CupyOps(Ops):
    """The array layer on CuPy: cuBLAS GEMMs and gpubp's fused CUDA kernels.

    Nothing is compiled when this is created: each kernel source is compiled on its first
    launch, once per dtype and device.
    """

    name = "cupy"
    dropout_in_kernels = True

    def __init__(self) -> None:
        super().__init__(_optional.cupy)
        self.kernels = CudaKernels()
        self._c0: Dict[Tuple[int, str, int], Any] = {}  # per-sample loss buffers, reused
        self._clip_partial: Dict[Tuple[int, str, int], Any] = {}  # clipping's partial sums, reused

    def _loss_buffer(self, rows: int, dtype: Any) -> Any:
        """A reused (rows,) buffer for C_0 of every sample (one per batch size, dtype and device)."""
        cuda = getattr(self.xp, "cuda", None)
        key = (rows, str(dtype), cuda.Device().id if cuda is not None else -1)
        buf = self._c0.get(key)
        if buf is None:
            if len(self._c0) >= 8:
                self._c0.clear()
            buf = self._c0[key] = self.xp.empty(rows, dtype=dtype)
        return buf

    # ---- matrix products -------------------------------------------------------------
    def grad_weights(self, Delta: Any, A_prev: Any, out: Any) -> Any:
        """dC/dW^(l) = (1/n) Delta^(l)T A^(l-1): one GEMM, alpha = 1/n, written into ``out``
        (the layer's view of the flat gradient buffer; no temporary, no scaling pass)."""
        from cupy import cublas  # loads cuBLAS on first use only

        _same_dtype("grad_weights", out.dtype, Delta=Delta, A_prev=A_prev)
        n = Delta.shape[0]
        if A_prev.shape[0] != n or out.shape != (Delta.shape[1], A_prev.shape[1]):
            raise ValueError(
                f"grad_weights: Delta {tuple(Delta.shape)} and A_prev {tuple(A_prev.shape)} must share n rows and "
                f"out must be ({Delta.shape[1]}, {A_prev.shape[1]}); got out {tuple(out.shape)}"
            )
        cublas.gemm("T", "N", Delta, A_prev, out=out, alpha=1.0 / n, beta=0.0)
        return out

    def grad_bias(self, Delta: Any, out: Any) -> Any:
        """dC/db^(l) = (1/n) sum over rows of Delta^(l), one reduction written into ``out``."""
        rows, cols = Delta.shape
        self.kernels.launch("bias_grad", out.dtype, Delta, out, rows, cols, 1.0 / rows)
        return out

    # ---- elementwise work ------------------------------------------------------------
    def bias_activation(self, Z: Any, b: Optional[Any], act: Optional[Activation], A: Any, dropout: Any = None) -> Any:
        """Z^(l) += b^(l), A^(l) = g^(l)(Z^(l)) in one pass (a row-wise pass for softmax), with a
        dropout after the activation in the same pass (its mask computed in the kernel); ``act``
        None adds the bias alone (``A`` is ``Z``)."""
        rows, cols = Z.shape
        k = self.kernels
        if act is None:
            A = Z
            if b is not None:  # the identity's forward with A = Z: Z += b in place
                k.launch("bias_act_forward", Z.dtype, Z, b, Z, rows, cols, act="identity")
            if dropout is not None:
                self.dropout_forward(Z, dropout)
        elif act.elementwise and dropout is not None:
            if b is None:
                k.launch("act_dropout_forward", Z.dtype, Z, A, dropout.out, rows, cols, *_draw(dropout), act=act.name)
            else:
                k.launch("bias_act_dropout_forward", Z.dtype, Z, b, A, dropout.out, rows, cols, *_draw(dropout),
                         act=act.name)
        elif act.elementwise:
            if b is None:
                k.launch("act_forward", Z.dtype, Z, A, rows, cols, act=act.name)
            else:
                k.launch("bias_act_forward", Z.dtype, Z, b, A, rows, cols, act=act.name)
        else:
            if b is None:
                k.launch("softmax_forward", Z.dtype, Z, A, rows, cols)
            else:
                k.launch("bias_softmax_forward", Z.dtype, Z, b, A, rows, cols)
            if dropout is not None:
                self.dropout_forward(A, dropout)
        return A

    def activation_backward(self, dA: Any, Z: Any, A: Any, act: Activation, out: Any, dropout: Any = None) -> Any:
        """Delta^(l) = dA * g'^(l)(Z^(l)) in one pass, below a dropout (dA * m / (1 - p)) * g'^(l)(Z^(l));
        ``out`` may be ``dA`` (in place)."""
        if act.elementwise:
            if dropout is None:
                self.kernels.launch("act_backward", out.dtype, dA, Z, A, out, out.size, act=act.name)
            else:
                self.kernels.launch("act_dropout_backward", out.dtype, dA, Z, A, out, out.size, *_draw(dropout),
                                    act=act.name)
        else:
            if dropout is not None:
                dA = self.dropout_backward(dA, dropout, out=out)
            rows, cols = A.shape
            self.kernels.launch("softmax_backward", out.dtype, dA, A, out, rows, cols)
        return out

    # ---- dropout on its own --------------------------------------------------------------
    def dropout_forward(self, X: Any, drop: Any) -> Any:
        """X * m / (1 - p) into ``drop.out``, m computed in the kernel."""
        self.kernels.launch("dropout_forward", X.dtype, X, drop.out, X.size, *_draw(drop))
        return drop.out

    def dropout_backward(self, dY: Any, drop: Any, out: Any) -> Any:
        """dY * m / (1 - p) with the forward pass's m, computed again; ``out`` may be ``dY``."""
        self.kernels.launch("dropout_backward", out.dtype, dY, out, out.size, *_draw(drop))
        return out

    # ---- batch normalisation ---------------------------------------------------------------
    def batch_norm_sums(self, X: Any, shift: Any, s1: Any, s2: Any, work: Any, work2: Any) -> None:
        """s1, s2 (:meth:`Ops.batch_norm_sums`) in one row reduction; no scratch needed."""
        rows, cols = X.shape
        self.kernels.launch("bn_sums", X.dtype, X, shift, s1, s2, rows, cols)

    def batch_norm_stats(self, s1: Any, s2: Any, shift: Any, running_mean: Any, running_var: Any, mean: Any,
                         inv_std: Any, rows: float, momentum: float, eps: float, training: bool, update: bool) -> None:
        """mu, 1/sqrt(sigma^2 + eps) and the running statistics (:meth:`Ops.batch_norm_stats`), one kernel."""
        self.kernels.launch("bn_stats", mean.dtype, s1, s2, shift, running_mean, running_var, mean, inv_std,
                            mean.size, rows, momentum, eps, training, update)

    def batch_norm_forward(self, X: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, Xhat: Any, Y: Any,
                           act: Optional[Activation], A: Any, dropout: Any = None) -> Any:
        """zhat, y, a = g(y) and the dropout after it in one pass."""
        rows, cols = X.shape
        name = "identity" if act is None else act.name
        A = Y if act is None else A
        if dropout is None:
            self.kernels.launch("bn_forward", X.dtype, X, mean, inv_std, gamma, beta, Xhat, Y, A, rows, cols, act=name)
        else:
            self.kernels.launch("bn_dropout_forward", X.dtype, X, mean, inv_std, gamma, beta, Xhat, Y, A, dropout.out,
                                rows, cols, *_draw(dropout), act=name)
        return A

    def batch_norm_backward_sums(self, dout: Any, Y: Any, A: Any, act: Optional[Activation], Xhat: Any, s1: Any,
                                 s2: Any, dropout: Any = None, work: Any = None) -> None:
        """Delta = dout * g'(y) in place (the dropout's mask first) and its two sums, one row reduction."""
        rows, cols = dout.shape
        name = "identity" if act is None else act.name
        if dropout is None:
            self.kernels.launch("bn_backward_sums", dout.dtype, dout, Y, A, Xhat, s1, s2, rows, cols, act=name)
        else:
            self.kernels.launch("bn_dropout_backward_sums", dout.dtype, dout, Y, A, Xhat, s1, s2, rows, cols,
                                *_draw(dropout), act=name)

    def batch_norm_backward(self, Delta: Any, Xhat: Any, s1: Any, s2: Any, gamma: Any, inv_std: Any, rows: float,
                            training: bool, dgamma: Any, dbeta: Any, dX: Optional[Any], work: Any, coef: Any) -> None:
        """dC/dgamma, dC/dbeta into the gradient buffer, then the signal at the input in one pass."""
        self.kernels.launch("bn_param_grads", dgamma.dtype, s1, s2, dgamma, dbeta, dgamma.size, rows)
        if dX is not None:
            n, cols = Delta.shape
            self.kernels.launch("bn_backward", Delta.dtype, Delta, Xhat, dgamma, dbeta, gamma, inv_std, dX, n, cols,
                                training)

    def loss_head(self, loss: Loss, act: Activation, Z: Any, A: Any, Y: Any, Delta: Any) -> Any:
        """Delta^(L) = dC_0/dZ^(L) and C_0 of every sample in one fused kernel; returns C (0-d)."""
        rows, cols = Z.shape
        dtype = Z.dtype
        C0 = self._loss_buffer(rows, dtype)
        k = self.kernels
        if loss.name in ("sse", "mse"):
            # sse: dC_0/dA = 2 (A - Y), C_0 = sum (a - y)^2; mse: both divided by m = cols
            scale, div = (2.0, 1.0) if loss.name == "sse" else (2.0 / cols, float(cols))
            if act.elementwise:
                k.launch("head_squared", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div, act=act.name)
            else:
                k.launch("head_squared_softmax", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div)
        elif loss.name == "cross_entropy":
            if Y.ndim == 1:  # integer labels, read directly
                k.launch("head_xent_labels", dtype, Z, A, Y, Delta, C0, rows, cols)
            else:
                k.launch("head_xent_dense", dtype, Z, A, Y, Delta, C0, rows, cols)
        elif loss.name == "binary_cross_entropy":
            k.launch("head_bce", dtype, Z, A, Y, Delta, C0, rows, cols)
        else:  # a loss without a fused kernel runs the reference formulas (on CuPy arrays)
            return super().loss_head(loss, act, Z, A, Y, Delta)
        return C0.mean(dtype=dtype)

    # ---- gradient clipping -----------------------------------------------------------
    def clip_grad_norm(self, grads: Any, max_norm: float) -> Any:
        """:meth:`Ops.clip_grad_norm` in three launches and no synchronisation: partial sums of
        squares over chunks of ``CLIP_CHUNK`` (one pass over the buffer), the norm and the factor in
        one block, then the scaling pass (skipped by every thread when the factor is 1)."""
        size = grads.size
        chunks = max(1, -(-size // CLIP_CHUNK))
        dtype = grads.dtype
        cuda = getattr(self.xp, "cuda", None)
        key = (chunks, dtype.str, cuda.Device().id if cuda is not None else -1)
        partial = self._clip_partial.get(key)
        if partial is None:
            if len(self._clip_partial) >= 8:
                self._clip_partial.clear()
            partial = self._clip_partial[key] = self.xp.empty(chunks, dtype=dtype)
        clip = self.xp.empty(2, dtype=dtype)  # a fresh pair per call: the returned norm stays valid
        k = self.kernels
        k.launch("grad_sq_norm_parts", dtype, grads, partial, size, chunks, CLIP_CHUNK)
        k.launch("grad_clip_factor", dtype, partial, clip, 1, chunks, max_norm)
        k.launch("grad_scale", dtype, grads, clip, size)
        return clip[0]

    # ---- optimizer updates -----------------------------------------------------------
    def sgd_update(self, params: Any, grads: Any, velocity: Optional[Any], lr: float, momentum: float,
                   nesterov: bool, weight_decay: float) -> None:
        """One SGD kernel over the flat buffer (torch.optim.SGD's arithmetic, see :class:`Ops`)."""
        if velocity is None:
            self.kernels.launch("sgd", params.dtype, params, grads, params.size, lr, weight_decay)
        else:
            self.kernels.launch("sgd_momentum", params.dtype, params, grads, velocity, params.size, lr, momentum,
                                weight_decay, nesterov)

    def adam_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, lr: float, betas: Tuple[float, float],
                    eps: float, weight_decay: float) -> None:
        """One Adam kernel over the flat buffer; the bias corrections are computed here in double."""
        b1, b2 = betas
        bias1 = 1.0 - b1**t
        bias2 = 1.0 - b2**t
        self.kernels.launch("adam", params.dtype, params, grads, m, v, params.size, lr / bias1, b1, 1.0 - b1, b2,
                            1.0 - b2, bias2**0.5, eps, weight_decay)

    def adamw_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: Any) -> None:
        """One AdamW kernel over the flat buffer (:meth:`Ops.adamw_update`); the bias corrections and
        the decay factor 1 - lr wd are computed here in double."""
        b1, b2 = hyper.betas
        bias1 = 1.0 - b1**t
        bias2 = 1.0 - b2**t
        self.kernels.launch("adamw", params.dtype, params, grads, m, v, params.size, hyper.lr / bias1, b1, 1.0 - b1,
                            b2, 1.0 - b2, bias2**0.5, hyper.eps, 1.0 - hyper.lr * hyper.weight_decay)
