"""CuPy (CUDA GPU) implementation of the array layer: cuBLAS for the matrix products, gpubp's
own kernels (``kernels/``, see :mod:`gpubp.ops.cuda_kernels`) for every elementwise step.

Per training step: ``Z = A W^T`` (cuBLAS GEMM), bias + activation in one kernel, the loss
head (Delta^(L) and C_0 per sample) in one kernel, ``dC/dW = (1/n) Delta^T A`` as one GEMM
with alpha = 1/n written straight into the flat gradient buffer, ``dC/db`` as one column
reduction, ``Delta W`` (cuBLAS) then ``* g'(Z)`` in one kernel, and one optimizer kernel
over the flat parameter buffer.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from .. import _optional
from ..activations import Activation
from ..losses import SIGMOID_CROSS_ENTROPY, SOFTMAX_CROSS_ENTROPY, SQUARED_ERROR, Loss
from .base import Ops
from .cuda_kernels import CudaKernels

if TYPE_CHECKING:  # annotations only
    from ..optim import AdamHyperparameters, SGDHyperparameters


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

    def __init__(self) -> None:
        super().__init__(_optional.cupy)
        self.kernels = CudaKernels()
        self._c0: Dict[Tuple[int, str, int], Any] = {}  # per-sample loss buffers, reused

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
        return C0.mean(dtype=dtype)

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
