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
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ..activations import Activation
from ..losses import SIGMOID_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY, SQUARED_ERROR, Loss
from .base import Ops
from .cuda_launcher import CudaKernels

if TYPE_CHECKING:  # annotations only
    from ..optim import AdamHyperparameters, SGDHyperparameters


class CupyOps(Ops):
    """The array layer on CuPy: cuBLAS GEMMs and gpubp's fused CUDA kernels.

    Nothing is compiled when this is created: each kernel source is compiled on its first
    launch, once per dtype and device.
    """

    name = "cupy"

    def __init__(self, kernels: Optional[CudaKernels] = None) -> None:
        self.kernels = kernels if kernels is not None else CudaKernels()
        super().__init__(self.kernels.device.xp)
        self._c0: Dict[Tuple[int, str, int], Any] = {}  # per-sample loss buffers, reused
        self._partials: Dict[Tuple[Any, ...], Any] = {}  # column reductions' partial sums, reused

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

    def _column_mean(self, M: Any, rows: int, cols: int, out: Any) -> None:
        """out[c] = (1/rows) sum_r M[r, c]: one launch, or for a tall M two (the rows split
        across blocks into partial sums, then those added up), deterministic either way."""
        k = self.kernels
        chunks = k.column_chunks(rows, cols)
        if chunks == 1:
            k.launch("bias_grad", out.dtype, M, out, rows, cols, 1, 1.0 / rows)
            return
        key = (chunks, cols, out.dtype, k.device.current())
        partial = self._partials.get(key)
        if partial is None:
            if len(self._partials) >= 16:
                self._partials.clear()
            partial = self._partials[key] = self.xp.empty(chunks * cols, dtype=out.dtype)
        k.launch("bias_grad", out.dtype, M, partial, rows, cols, chunks, 1.0)
        k.launch("bias_grad", out.dtype, partial, out, chunks, cols, 1, 1.0 / rows)

    # ---- elementwise work ------------------------------------------------------------
    def bias_activation(self, Z: Any, b: Optional[Any], act: Activation, A: Any) -> Any:
        """Z^(l) += b^(l), A^(l) = g^(l)(Z^(l)) in one pass (a row-wise pass for softmax)."""
        rows, cols = Z.shape
        if act.elementwise:
            if b is None:
                self.kernels.launch("act_forward", Z.dtype, Z, A, rows, cols, act=act.name)
            else:
                self.kernels.launch("bias_act_forward", Z.dtype, Z, b, A, rows, cols, act=act.name)
        elif b is None:
            self.kernels.launch("softmax_forward", Z.dtype, Z, A, rows, cols)
        else:
            self.kernels.launch("bias_softmax_forward", Z.dtype, Z, b, A, rows, cols)
        return A

    def activation_backward(self, dA: Any, Z: Any, A: Any, act: Activation, out: Any) -> Any:
        """Delta^(l) = dA * g'^(l)(Z^(l)) in one pass; ``out`` may be ``dA`` (in place)."""
        if act.elementwise:
            self.kernels.launch("act_backward", out.dtype, dA, Z, A, out, out.size, act=act.name)
        else:
            rows, cols = A.shape
            self.kernels.launch("softmax_backward", out.dtype, dA, A, out, rows, cols)
        return out

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
                            1.0 - b2, bias2**0.5, hyper.eps, hyper.weight_decay)
