"""CuPy (CUDA GPU) implementation of the array layer: cuBLAS for the matrix products, gpubp's
own kernels (``kernels/``, see :mod:`gpubp.ops.cuda_kernels`) for every elementwise step.

Per training step: ``Z = A W^T`` (cuBLAS GEMM), bias + activation in one kernel, the loss
head (Delta^(L) and C_0 per sample) in one kernel and C = (1/n) sum_i C_0 in one reduction,
``dC/dW = (1/n) Delta^T A`` as one GEMM with alpha = 1/n written straight into the flat
gradient buffer, ``dC/db`` as one column reduction, ``Delta W`` (cuBLAS) then ``* g'(Z)`` in
one kernel, and one optimizer kernel over the flat parameter buffer: for an L-layer network
6L + 1 launches per step up to 256 rows (:mod:`gpubp.ops.cuda_launcher` makes every launch
and product); beyond, each column reduction may take a second launch (partial sums over
chunks of rows, so a tall Delta fills the GPU).
A dropout after an activation rides in the activation's kernels (its mask computed in the
kernel from the counter-based generator, never stored); BatchNorm is two row reductions and two
flat passes forward and backward (``batch_norm.cu``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ..activations import Activation
from ..losses import SIGMOID_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY, SQUARED_ERROR, Loss
from .base import Ops
from .cuda_launcher import CudaKernels

if TYPE_CHECKING:  # annotations only
    from ..optim import AdamHyperparameters, AdamWHyperparameters, SGDHyperparameters

#: Elements per partial sum of the gradient norm (one block each): enough blocks to fill a GPU
#: from about 2^19 parameters, few enough partial sums for one block to add them up.
CLIP_CHUNK = 2048


def _draw(drop: Any) -> Tuple[Any, ...]:
    """The dropout parameters of the kernels (``GPUBP_DROPOUT_PARAMS``) for one draw."""
    return drop.p, drop.scale, drop.seed, drop.stream, drop.call, drop.offset


class CupyOps(Ops):
    """The array layer on CuPy: cuBLAS GEMMs and gpubp's fused CUDA kernels.

    Nothing is compiled when this is created: each kernel source is compiled on its first
    launch, once per dtype and device.
    """

    name = "cupy"
    dropout_in_kernels = True

    def __init__(self, kernels: Optional[CudaKernels] = None) -> None:
        self.kernels = kernels if kernels is not None else CudaKernels()
        super().__init__(self.kernels.device.xp)
        self._c0: Dict[Tuple[int, str, int], Any] = {}  # per-sample loss buffers, reused
        self._partials: Dict[Tuple[Any, ...], Any] = {}  # reductions' partial sums (columns, norms), reused

    def _loss_buffer(self, rows: int, dtype: Any) -> Any:
        """A reused (rows,) buffer for C_0 of every sample (one per batch size, dtype and device)."""
        key = (rows, str(dtype), self.kernels.device.current())
        buf = self._c0.get(key)
        if buf is None:
            if len(self._c0) >= 8:
                self._c0.clear()
            buf = self._c0[key] = self.xp.empty(rows, dtype=dtype)
        return buf

    # ---- matrix products (cuBLAS) ----------------------------------------------------
    def linear(self, A_prev: Any, W: Any, out: Any) -> Any:
        """Z^(l) = A^(l-1) W^(l)T: one GEMM into ``out``."""
        self.kernels.gemm("N", "T", A_prev, W, out)
        return out

    def backprop_linear(self, Delta: Any, W: Any, out: Any) -> Any:
        """dC_0/dA^(l-1) = Delta^(l) W^(l): one GEMM into ``out``."""
        self.kernels.gemm("N", "N", Delta, W, out)
        return out

    def grad_weights(self, Delta: Any, A_prev: Any, out: Any) -> Any:
        """dC/dW^(l) = (1/n) Delta^(l)T A^(l-1): one GEMM, alpha = 1/n, written into ``out``
        (the layer's view of the flat gradient buffer; no temporary, no scaling pass)."""
        self.kernels.gemm("T", "N", Delta, A_prev, out, 1.0 / Delta.shape[0])
        return out

    def grad_bias(self, Delta: Any, out: Any) -> Any:
        """dC/db^(l) = (1/n) sum over rows of Delta^(l), one reduction written into ``out``."""
        rows, cols = Delta.shape
        self._column_mean(Delta, rows, cols, out)
        return out

    def _partial_sums(self, key: Tuple[Any, ...], length: int, dtype: Any) -> Any:
        """A reused buffer of ``length`` partial sums for the reduction ``key``."""
        partial = self._partials.get(key)
        if partial is None:
            if len(self._partials) >= 16:
                self._partials.clear()
            partial = self._partials[key] = self.xp.empty(length, dtype=dtype)
        return partial

    def _column_mean(self, M: Any, rows: int, cols: int, out: Any) -> None:
        """out[c] = (1/rows) sum_r M[r, c]: one launch, or for a tall M two (the rows split
        across blocks into partial sums, then those added up), deterministic either way."""
        k = self.kernels
        chunks = k.column_chunks(rows, cols)
        if chunks == 1:
            k.launch("bias_grad", out.dtype, M, out, rows, cols, 1, 1.0 / rows)
            return
        partial = self._partial_sums((chunks, cols, out.dtype, k.device.current()), chunks * cols, out.dtype)
        k.launch("bias_grad", out.dtype, M, partial, rows, cols, chunks, 1.0)
        k.launch("bias_grad", out.dtype, partial, out, chunks, cols, 1, 1.0 / rows)

    def _column_sum_pair(self, name: str, before: Tuple[Any, ...], s1: Any, s2: Any, rows: int, cols: int,
                         after: Tuple[Any, ...] = (), act: Optional[str] = None) -> None:
        """Kernel ``name``'s two column sums of a (rows, cols) batch into ``s1`` and ``s2``: one
        launch, or for a tall batch three (partial sums over chunks of rows, then ``bias_grad``
        adds up each), deterministic either way; ``before`` and ``after`` are its other arguments."""
        k = self.kernels
        chunks = k.column_chunks(rows, cols)
        if chunks == 1:
            k.launch(name, s1.dtype, *before, s1, s2, rows, cols, 1, *after, act=act)
            return
        partial = self._partial_sums(("pair", chunks, cols, s1.dtype, k.device.current()), 2 * chunks * cols, s1.dtype)
        p1, p2 = partial[: chunks * cols], partial[chunks * cols:]
        k.launch(name, s1.dtype, *before, p1, p2, rows, cols, chunks, *after, act=act)
        k.launch("bias_grad", s1.dtype, p1, s1, chunks, cols, 1, 1.0)
        k.launch("bias_grad", s2.dtype, p2, s2, chunks, cols, 1, 1.0)

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
        """s1, s2 (:meth:`Ops.batch_norm_sums`) in one row reduction (two passes for a tall
        batch); no scratch needed."""
        rows, cols = X.shape
        self._column_sum_pair("bn_sums", (X, shift), s1, s2, rows, cols)

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
        """Delta = dout * g'(y) in place (the dropout's mask first) and its two sums, one row
        reduction (two passes for a tall batch)."""
        rows, cols = dout.shape
        name = "identity" if act is None else act.name
        if dropout is None:
            self._column_sum_pair("bn_backward_sums", (dout, Y, A, Xhat), s1, s2, rows, cols, act=name)
        else:
            self._column_sum_pair("bn_dropout_backward_sums", (dout, Y, A, Xhat), s1, s2, rows, cols,
                                  _draw(dropout), act=name)

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
        if loss.head == SQUARED_ERROR:
            # C_0 = s sum (a - y)^2 and dC_0/dA = 2 s (A - Y), s = 1 (sse) or 1/m (mse): the
            # kernel takes 2 s and the divisor of the sum (m for mse)
            scale = 2.0 * loss.squared_scale(cols)
            div = float(cols) if loss.mean_over_outputs else 1.0
            if act.elementwise:
                k.launch("head_squared", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div, act=act.name)
            else:
                k.launch("head_squared_softmax", dtype, Z, A, Y, Delta, C0, rows, cols, scale, div)
        elif loss.head == SOFTMAX_CROSS_ENTROPY:
            if Y.ndim == 1:  # integer labels, read directly
                k.launch("head_xent_labels", dtype, Z, A, Y, Delta, C0, rows, cols)
            else:
                k.launch("head_xent_dense", dtype, Z, A, Y, Delta, C0, rows, cols)
        elif loss.head == SIGMOID_CROSS_ENTROPY:
            k.launch("head_bce", dtype, Z, A, Y, Delta, C0, rows, cols)
        else:  # a loss without a fused kernel runs the reference formulas (on CuPy arrays)
            return super().loss_head(loss, act, Z, A, Y, Delta)
        C = self.xp.empty((), dtype=dtype)  # a new 0-d array: the caller may keep it
        self._column_mean(C0, rows, 1, C)  # C = (1/n) sum_i C_0
        return C

    # ---- gradient clipping -----------------------------------------------------------
    def clip_grad_norm(self, grads: Any, max_norm: float) -> Any:
        """:meth:`Ops.clip_grad_norm` in three launches and no synchronisation: partial sums of
        squares over chunks of ``CLIP_CHUNK`` (one pass over the buffer), the norm and the factor in
        one block, then the scaling pass (skipped by every thread when the factor is 1)."""
        size = grads.size
        chunks = max(1, -(-size // CLIP_CHUNK))
        dtype = grads.dtype
        k = self.kernels
        partial = self._partial_sums(("clip", chunks, dtype, k.device.current()), chunks, dtype)
        clip = self.xp.empty(2, dtype=dtype)  # a fresh pair per call: the returned norm stays valid
        k.launch("grad_sq_norm_parts", dtype, grads, partial, size, chunks, CLIP_CHUNK)
        k.launch("grad_clip_factor", dtype, partial, clip, 1, chunks, max_norm)
        k.launch("grad_scale", dtype, grads, clip, size)
        return clip[0]

    # ---- optimizer updates -----------------------------------------------------------
    def sgd_update(self, params: Any, grads: Any, velocity: Optional[Any], hyper: "SGDHyperparameters") -> None:
        """One SGD kernel over the flat buffer (torch.optim.SGD's arithmetic, see :class:`Ops`)."""
        if velocity is None:
            self.kernels.launch("sgd", params.dtype, params, grads, params.size, hyper.lr, hyper.weight_decay)
        else:
            self.kernels.launch("sgd_momentum", params.dtype, params, grads, velocity, params.size, hyper.lr,
                                hyper.momentum, hyper.weight_decay, hyper.nesterov)

    def adam_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: "AdamHyperparameters") -> None:
        """One Adam kernel over the flat buffer; the bias corrections are computed here in double."""
        b1, b2 = hyper.betas
        bias1 = 1.0 - b1**t
        bias2 = 1.0 - b2**t
        self.kernels.launch("adam", params.dtype, params, grads, m, v, params.size, hyper.lr / bias1, b1, 1.0 - b1, b2,
                            1.0 - b2, bias2**0.5, hyper.eps_at(t), hyper.weight_decay)

    def adamw_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: "AdamWHyperparameters") -> None:
        """One AdamW kernel over the flat buffer (:meth:`Ops.adamw_update`); the bias corrections and
        the decay factor 1 - lr wd are computed here in double."""
        b1, b2 = hyper.betas
        bias1 = 1.0 - b1**t
        bias2 = 1.0 - b2**t
        self.kernels.launch("adamw", params.dtype, params, grads, m, v, params.size, hyper.lr / bias1, b1, 1.0 - b1,
                            b2, 1.0 - b2, bias2**0.5, hyper.eps_at(t), 1.0 - hyper.lr * hyper.weight_decay)
