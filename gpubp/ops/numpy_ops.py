"""NumPy (CPU, BLAS) implementation of the array layer, tuned for the hot path.

Same formulas as :class:`~gpubp.ops.base.Ops`, written so that a training step allocates
nothing once its buffers exist and touches memory as few times as possible:

* every elementwise step is an ``out=`` ufunc into the caller's array or into a scratch buffer
  this object keeps and reuses (one per shape and dtype);
* the activations (their in-place forms, :mod:`gpubp.ops.numpy_activations`, several passes each) run over
  blocks of rows small enough that the blocks they touch and their scratch stay in cache, with
  the bias added and dA multiplied in on the same block: each array crosses memory once;
* every matrix product goes to one BLAS library called directly (:mod:`gpubp.ops._blas`:
  MKL where the ``mkl`` extra is installed, else NumPy's OpenBLAS), so that one thread pool
  does all of a step's products and the scalings ride along in the calls: the bias is GEMM's
  beta (Z^(l) starts as b^(l) broadcast over the rows, the product is added to it), the 1/n of
  dC/dW = (1/n) Delta^T A is GEMM's alpha, dC/db = (1/n) sum_rows Delta is one matrix-vector
  product with the constant vector (1/n, ..., 1/n);
* without a direct BLAS (``GPUBP_BLAS=numpy``) the 1/n is applied to the smallest of the
  three arrays of the product (Delta, A or dC/dW itself), so the averaging costs a pass over
  n x n_l numbers at small n instead of a pass over the n_l x n_{l-1} result;
* the plain SGD update w <- w - eta dC/dw is one AXPY of that BLAS (one pass, its threads);
* the optimizer updates walk the flat parameter buffer in cache-sized blocks, so the several
  passes of an update (momentum, Adam's moments) read each block from cache, not from memory;
* the dtype of the network is kept end to end: scalars are Python floats, which NumPy never
  lets widen a float32 array.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

import numpy as np

from ..activations import Activation
from ..losses import SOFTMAX_CROSS_ENTROPY, SQUARED_ERROR, Loss
from . import _blas
from .numpy_activations import IN_PLACE, Scratch, smallest_normal
from .base import Ops
from .numpy_batch_norm import BatchNormBlocks

if TYPE_CHECKING:  # annotations only
    from ..optim import AdamHyperparameters, AdamWHyperparameters, SGDHyperparameters

# Elements per block of the blocked optimizer updates: 4 arrays of 64 Ki float32 (1 MiB)
# stay in a core's L2 cache across the passes of one update.
BLOCK = 1 << 16
# Bytes per array of a block of the activation work: Z, A, dA, Delta and up to four scratch
# blocks of 256 KiB (2 MiB) stay in a core's L2 cache across the passes of one activation.
ACTIVATION_BLOCK_BYTES = 1 << 18
# Products of at most this many multiply-adds (m n k), and matrix-vector products of at most
# SMALL_PRODUCT_VECTOR elements, go to NumPy's matmul instead of the direct BLAS call: NumPy's
# call costs about a microsecond where the ctypes call costs four, and at these sizes NumPy's
# OpenBLAS runs on the calling thread alone (measured: its threads start above 2^18
# multiply-adds for a GEMM and above 4 * 10^5 elements for a GEMV), so no second thread pool
# wakes beside MKL's.
SMALL_PRODUCT = 1 << 18
SMALL_PRODUCT_VECTOR = 1 << 18
# Bytes per array of a block of the BLAS form of Adam's update: large enough that the threaded
# AXPBY/AXPY calls split well over the cores (measured best at 0.5-1 MiB on two cores).
ADAM_BLAS_BLOCK_BYTES = 1 << 20
# ... and the fewest parameters it is used for: below, the library's thread start-up costs more
# than the passes it saves (measured even at 2^16-2^17 on two cores).
ADAM_BLAS_MIN_SIZE = 1 << 17
_MAX_SCRATCH = 32
_ACTIVATION_SLOTS = tuple(f"activation{k}" for k in range(8))


def _adam_block(p: Any, g: Any, ms: Any, vs: Any, t1: Any, t2: Optional[Any], l2: float, decay: float, b1: float,
                b2: float, root_bias2: float, eps: float, step_size: float) -> None:
    """Adam's update of one block of the flat buffers (:meth:`NumpyOps._adam`): the operations of
    :meth:`Ops.adam_update` one by one, into the scratch blocks ``t1`` (and ``t2`` for the L2 term)."""
    if l2:
        g = np.add(g, np.multiply(p, l2, out=t2), out=t2)
    if decay != 1.0:  # AdamW: w <- w (1 - lr wd) before the step
        p *= decay
    # m <- b1 m + (1 - b1) g
    ms *= b1
    ms += np.multiply(g, 1.0 - b1, out=t1)
    # v <- b2 v + (1 - b2) g^2
    vs *= b2
    np.multiply(g, g, out=t1)
    t1 *= 1.0 - b2
    vs += t1
    # w <- w - step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    np.sqrt(vs, out=t1)
    t1 /= root_bias2
    t1 += eps
    np.divide(ms, t1, out=t1)
    t1 *= step_size
    p -= t1


class NumpyOps(BatchNormBlocks, Ops):
    """The reference ops on NumPy, with in-place, temporary-free overrides of the hot paths.

    ``blas`` is the library the products go to: ``"default"`` (the one ``GPUBP_BLAS`` chose,
    see :mod:`gpubp.ops._blas`), ``"mkl"``, ``"openblas"``, a loaded :class:`~gpubp.ops._blas.Blas`,
    or ``None`` for NumPy calls only (the same numbers as :class:`Ops`, bit for bit); the direct
    BLAS calls fuse a scaling or a sum into a product or an update (GEMM's alpha and beta,
    AXPY), which rounds once where NumPy rounds twice.
    """

    name = "numpy"

    def __init__(self, blas: Any = "default") -> None:
        super().__init__(np)
        if isinstance(blas, str):
            blas = _blas.DEFAULT if blas == "default" else _blas.load(blas)
        if blas is not None and not isinstance(blas, _blas.Blas):
            raise TypeError(f"blas must be 'default', 'mkl', 'openblas', a Blas or None; got {blas!r}")
        self._blas: Optional[_blas.Blas] = blas
        self._scratch_buffers: Dict[Tuple[str, Tuple[int, ...], np.dtype], np.ndarray] = {}
        self._row_indices: Dict[Tuple[int, int], np.ndarray] = {}

    # ---- reused buffers --------------------------------------------------------------
    def _scratch(self, slot: str, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        """A buffer of ``shape`` and ``dtype`` owned by this object, reused call after call."""
        buf = self._scratch_buffers.get((slot, shape, dtype))  # the usual call: a shape tuple and a dtype
        if buf is not None:
            return buf
        key = (slot, tuple(shape), np.dtype(dtype))
        buf = self._scratch_buffers.get(key)
        if buf is None:
            if len(self._scratch_buffers) >= _MAX_SCRATCH:
                self._scratch_buffers.clear()
            buf = self._scratch_buffers[key] = np.empty(shape, dtype=dtype)
        return buf

    def _mean_weights(self, n: int, dtype: Any) -> np.ndarray:
        """The vector (1/n, ..., 1/n) of length n: averaging over rows as a product."""
        w = self._scratch_buffers.get(("mean", (n,), dtype))
        if w is None:
            w = self._scratch("mean", (n,), dtype)
            w.fill(1.0 / n)
        return w

    # ---- mini-batches ------------------------------------------------------------------
    def take_rows(self, src: Any, idx: Any, out: Any) -> Any:
        """The rows ``idx`` of ``src`` into ``out`` without bounds checks: ``np.take``'s default mode
        (``raise``) writes through a temporary copy of ``out`` so that a bad index leaves it
        untouched, which costs as much as the gather itself; ``clip`` writes in place, and clips
        nothing, as every index comes from a permutation of the rows."""
        return src.take(idx, 0, out, "clip")

    # ---- matrix products -----------------------------------------------------------------
    def _goes_direct(self, A: Any, C: Any, trans_a: bool = False) -> bool:
        """Whether the product C = op(A) op(B) is one for the direct BLAS call: a library is bound
        and the product is above SMALL_PRODUCT multiply-adds (m n k, k the inner size from op(A))."""
        k = A.shape[0] if trans_a else A.shape[1]
        return self._blas is not None and C.shape[0] * C.shape[1] * k > SMALL_PRODUCT

    def _direct(self, alpha: float, A: Any, B: Any, beta: float, C: Any, trans_a: bool = False,
                trans_b: bool = False) -> bool:
        """C = alpha op(A) op(B) + beta C as one direct BLAS call; False (nothing done) where NumPy
        does the product instead: no direct BLAS, a small product, or arrays it cannot take."""
        return self._goes_direct(A, C, trans_a) and self._blas.gemm(alpha, A, B, beta, C, trans_a, trans_b)

    def linear(self, A_prev: Any, W: Any, out: Any) -> Any:
        """Z^(l) = A^(l-1) W^(l)T (the bias is added by :meth:`bias_activation`)."""
        if self._direct(1.0, A_prev, W, 0.0, out, False, True):
            return out
        return np.matmul(A_prev, W.T, out=out)

    def layer_forward(self, A_prev: Any, W: Any, b: Optional[Any], act: Optional[Activation], Z: Any, A: Any,
                      dropout: Any = None) -> Any:
        """Z^(l) = A^(l-1) W^(l)T + b^(l) as one GEMM with beta = 1 on Z^(l) = b^(l) (no pass adding
        the bias afterwards), then A^(l) = g^(l)(Z^(l)) (and the dropout) as :meth:`bias_activation`."""
        if b is not None and self._goes_direct(A_prev, Z):
            np.copyto(Z, b)
            if self._blas.gemm(1.0, A_prev, W, 1.0, Z, False, True):
                return self.bias_activation(Z, None, act, A, dropout)
        self.linear(A_prev, W, Z)
        return self.bias_activation(Z, b, act, A, dropout)

    def backprop_linear(self, Delta: Any, W: Any, out: Any) -> Any:
        """dC_0/dA^(l-1) = Delta^(l) W^(l) (MATH.md, hidden layer)."""
        if self._direct(1.0, Delta, W, 0.0, out):
            return out
        return np.matmul(Delta, W, out=out)

    # ---- the gradient-averaging hot path ---------------------------------------------
    def grad_weights(self, Delta: Any, A_prev: Any, out: Any) -> Any:
        """dC/dW^(l) = (1/n) Delta^(l)T A^(l-1): 1/n as GEMM's alpha, or on the smallest operand."""
        n = Delta.shape[0]
        scale = 1.0 / n
        if self._direct(scale, Delta, A_prev, 0.0, out, trans_a=True):
            return out
        d, a, o = Delta.size, A_prev.size, out.size
        if o <= d and o <= a:
            np.matmul(Delta.T, A_prev, out=out)
            out *= scale
        elif d <= a:
            S = self._scratch("grad_weights", Delta.shape, Delta.dtype)
            np.multiply(Delta, scale, out=S)
            np.matmul(S.T, A_prev, out=out)
        else:
            S = self._scratch("grad_weights", A_prev.shape, A_prev.dtype)
            np.multiply(A_prev, scale, out=S)
            np.matmul(Delta.T, S, out=out)
        return out

    def grad_bias(self, Delta: Any, out: Any) -> Any:
        """dC/db^(l) = (1/n) sum over rows of Delta^(l): the product Delta^(l)T (1/n, ..., 1/n)."""
        w = self._mean_weights(Delta.shape[0], Delta.dtype)
        if self._blas is not None and Delta.size > SMALL_PRODUCT_VECTOR and self._blas.gemv_t(1.0, Delta, w, 0.0, out):
            return out
        return np.matmul(w, Delta, out=out)

    def l2_penalty(self, W: Any, dW: Any, scale: Any) -> Any:
        """As :meth:`Ops.l2_penalty`: dC/dW^(l) += (lambda/n) W^(l) as one AXPY where the direct BLAS
        takes it (else through a reused buffer), and (lambda/2n) ||W^(l)||^2 from one dot product:
        the direct BLAS's from SMALL_PRODUCT_VECTOR weights on (NumPy's OpenBLAS threads its dot
        product there, and its threads and MKL's then wait on each other: 83 us against 28 us for
        401,408 float32 weights after an MKL product, on two cores)."""
        blas = self._blas
        if not (isinstance(scale, float) and blas is not None and blas.axpy(scale, W, dW)):
            S = self._scratch("l2_penalty", W.shape, W.dtype)
            np.multiply(W, scale, out=S)
            dW += S
        flat = W.reshape(-1)
        squares = blas.dot(flat, flat) if blas is not None and flat.size > SMALL_PRODUCT_VECTOR else None
        squares = np.dot(flat, flat) if squares is None else W.dtype.type(squares)
        return np.asarray(squares * (0.5 * scale), dtype=W.dtype)

    # ---- elementwise work --------------------------------------------------------------
    def _row_blocks(self, Z: Any) -> Iterator[slice]:
        """Each block of rows of ``Z`` (ndim >= 1) holding about ACTIVATION_BLOCK_BYTES (one row at least)."""
        rows = Z.shape[0]
        step = max(1, ACTIVATION_BLOCK_BYTES // max(1, (Z.size // rows) * Z.itemsize))
        for start in range(0, rows, step):
            yield slice(start, min(start + step, rows))

    def _block_buffer(self, k: int, block: Any) -> Any:
        """Reused buffer number ``k`` shaped and typed like ``block`` (a block of rows)."""
        capacity = max(ACTIVATION_BLOCK_BYTES // block.itemsize, block.size)
        flat = self._scratch_buffers.get((_ACTIVATION_SLOTS[k], (capacity,), block.dtype))
        if flat is None:
            flat = self._scratch(_ACTIVATION_SLOTS[k], (capacity,), block.dtype)
        return flat[: block.size].reshape(block.shape)

    def _block_scratch(self, block: Any, first: int) -> Scratch:
        """The table's ``tmp(k)`` for one block: reused buffers ``first + k``."""
        return lambda k: self._block_buffer(first + k, block)

    def _forward_block(self, Z: Any, b: Optional[Any], forward: Any, A: Any, M: Any, D: Any) -> None:
        if b is not None:
            np.add(Z, b, out=Z)
        forward(Z, A, self._block_scratch(Z, 0))
        if M is not None:
            np.multiply(A, M, out=D)

    def _backward_block(self, dA: Any, Z: Any, A: Any, grad: Any, out: Any, M: Any) -> None:
        G = self._block_buffer(0, Z)
        grad(Z, A, G, self._block_scratch(Z, 1))
        if M is not None:
            dA = np.multiply(dA, M, out=out)
        np.multiply(dA, G, out=out)

    def bias_activation(self, Z: Any, b: Optional[Any], act: Optional[Activation], A: Any, dropout: Any = None) -> Any:
        """Z^(l) += b^(l) (in place), then A^(l) = g^(l)(Z^(l)) written into ``A``, block by block, with
        the dropout's A * m / (1 - p) on each block while it is in cache.

        Blocks are whole rows: right for the elementwise activations and for softmax, which
        works row by row.
        """
        forms = None if act is None else IN_PLACE.get(act)
        if forms is None:  # no activation, or one without an in-place form: the reference
            return super().bias_activation(Z, b, act, A, dropout)
        M = D = None
        if dropout is not None:
            M, D = self.dropout_mask(dropout), dropout.out
        if Z.nbytes <= ACTIVATION_BLOCK_BYTES:  # one block: _forward_block, inline
            if b is not None:
                np.add(Z, b, out=Z)
            forms.forward(Z, A, self._block_scratch(Z, 0))
            if M is not None:
                np.multiply(A, M, out=D)
        else:
            for rows in self._row_blocks(Z):
                self._forward_block(Z[rows], b, forms.forward, A[rows], None if M is None else M[rows],
                                    None if D is None else D[rows])
        return A

    def activation_backward(self, dA: Any, Z: Any, A: Any, act: Activation, out: Any, dropout: Any = None) -> Any:
        """Delta^(l) = dA * g'^(l)(Z^(l)) block by block, g' into a reused buffer; ``out`` may be ``dA``.
        With ``dropout``, (dA * m / (1 - p)) * g'^(l)(Z^(l)) (:meth:`Ops.activation_backward`)."""
        forms = IN_PLACE.get(act)
        grad = forms.grad if forms is not None and act.elementwise else None
        if grad is None:
            return super().activation_backward(dA, Z, A, act, out, dropout)
        if Z.nbytes <= ACTIVATION_BLOCK_BYTES:  # one block: _backward_block, inline
            G = self._block_buffer(0, Z)
            grad(Z, A, G, self._block_scratch(Z, 1))
            if dropout is not None:
                dA = np.multiply(dA, dropout.mask, out=out)
            return np.multiply(dA, G, out=out)
        M = None if dropout is None else dropout.mask
        for rows in self._row_blocks(Z):
            self._backward_block(dA[rows], Z[rows], A[rows], grad, out[rows], None if M is None else M[rows])
        return out

    # ---- the output layer --------------------------------------------------------------
    def loss_head(self, loss: Loss, act: Activation, Z: Any, A: Any, Y: Any, Delta: Any) -> Any:
        """C and Delta^(L) (as :meth:`Ops.loss_head`) without the reference's temporaries.

        sse / mse: D = A - Y once, into ``Delta``; C = (scale / n) sum D^2 with the scale of the
        loss (1, or 1/m for mse); Delta = 2 scale D * g'(Z) in place. cross_entropy with integer
        labels and softmax output: Delta = A with 1 taken off each row's label column, and
        C_0 = -log a_y from the probabilities the forward pass left in ``A`` (one gather and n
        logarithms instead of a second pass of max, exp and sum over Z); where some a_y lies below
        the smallest normal number (flushed to 0 by softmax, a loss above ~87 in float32 or ~708
        in float64, or a label at z = -inf) or is NaN, the whole batch takes C_0 = logsumexp(z) -
        z_y, which stays exact (and finite for finite z) there. Other heads use the reference
        formulas.
        """
        n, m = Z.shape
        if loss.head == SQUARED_ERROR:
            scale = loss.squared_scale(m)
            np.subtract(A, Y, out=Delta)
            D = Delta.reshape(-1)
            C = np.asarray(np.dot(D, D) * (scale / n), dtype=Z.dtype)
            Delta *= 2.0 * scale  # dC_0/dA = 2 (A - Y), the tutorial's factor 2 (/ m for mse)
            self.activation_backward(Delta, Z, A, act, out=Delta)
            return C
        if loss.head == SOFTMAX_CROSS_ENTROPY and Y.ndim == 1 and act.name == loss.requires_output_activation:
            np.copyto(Delta, A)
            if A.flags.c_contiguous and Delta.flags.c_contiguous:
                # the label entries as flat indices i m + y_i: one gather, one scatter on flat views
                flat = np.add(self._row_index(n, m), Y, out=self._index_buffer(n))
                picked = A.reshape(-1).take(flat, mode="clip", out=self._scratch("label_prob", (n,), A.dtype))  # a_y
                # dC_0/dZ = A - Y, Y one-hot, without building it
                Delta.reshape(-1)[flat] = np.subtract(picked, 1.0, out=self._scratch("label_delta", (n,), A.dtype))
            else:
                rows = self._row_index(n)
                picked = A[rows, Y]
                Delta[rows, Y] = picked - 1.0
            # not (min >= tiny): a flushed or denormal a_y, or NaN (a NaN row, which the logits
            # formula gives as NaN too)
            if n and not np.minimum.reduce(picked) >= smallest_normal(Z.dtype):
                return np.asarray(self._cross_entropy_from_logits(Z, Y, self._row_index(n)).mean(dtype=Z.dtype))
            np.log(picked, out=picked)
            # C = (1/n) sum_i -log a_y: the sum and division of ndarray.mean without its overhead
            return np.asarray(np.add.reduce(picked) / -n, dtype=Z.dtype)
        return super().loss_head(loss, act, Z, A, Y, Delta)

    def _cross_entropy_from_logits(self, Z: Any, Y: Any, rows: np.ndarray) -> np.ndarray:
        """C_0 = logsumexp(z) - z_y per row, the exponentials in a reused buffer."""
        E = self._scratch("loss_exp", Z.shape, Z.dtype)
        zmax = Z.max(axis=1, keepdims=True)
        np.subtract(Z, zmax, out=E)
        picked = E[rows, Y]  # z_y - max
        np.exp(E, out=E)
        return np.log(E.sum(axis=1)) - picked

    def _row_index(self, n: int, step: int = 1) -> np.ndarray:
        """0, step, ..., (n-1) step (reused: the row starts of a batch's label lookups)."""
        rows = self._row_indices.get((n, step))
        if rows is None:
            if len(self._row_indices) >= _MAX_SCRATCH:
                self._row_indices.clear()
            rows = self._row_indices[(n, step)] = np.arange(0, n * step, step, dtype=np.intp)
        return rows

    def _index_buffer(self, n: int) -> np.ndarray:
        """A reused index array of length n to write into (kept apart from the float scratch)."""
        buf = self._row_indices.get((n, -1))
        if buf is None:
            if len(self._row_indices) >= _MAX_SCRATCH:
                self._row_indices.clear()
            buf = self._row_indices[(n, -1)] = np.empty(n, dtype=np.intp)
        return buf

    # ---- gradient clipping -----------------------------------------------------------
    def clip_grad_norm(self, grads: Any, max_norm: float) -> Any:
        """:meth:`Ops.clip_grad_norm` in at most two passes: the sum of squares as one BLAS DOT
        (NumPy's dot without a direct BLAS), the scaling as one SCAL, made only when the factor is
        below 1 (or NaN). The same bits on every replica of a distributed run."""
        squares = self._blas.dot(grads, grads) if self._blas is not None else None
        if squares is None:
            squares = float(np.dot(grads, grads))
        norm = math.sqrt(squares)
        dtype = grads.dtype.type
        norm_t = dtype(norm)
        coef = dtype(max_norm) / (norm_t + dtype(1e-6))  # in the buffer's precision, as PyTorch
        if not coef >= 1.0:  # NaN included: it spreads, as clamp(max=1) lets it
            if self._blas is None or not self._blas.scal(float(coef), grads):
                grads *= coef
        return np.asarray(norm_t)

    # ---- optimizer updates over the flat parameter buffer ----------------------------
    def _blocks(self, size: int) -> Iterator[slice]:
        for start in range(0, size, BLOCK):
            yield slice(start, min(start + BLOCK, size))

    def sgd_update(self, params: Any, grads: Any, velocity: Optional[Any], hyper: "SGDHyperparameters") -> None:
        """w <- w - eta dC/dw with optional L2 decay and (Nesterov) momentum, block by block.

        Same arithmetic, operation for operation, as :meth:`Ops.sgd_update`; the plain update
        (no momentum, no decay) is one AXPY where NumPy's BLAS can be called.
        """
        lr, momentum, nesterov, weight_decay = hyper.lr, hyper.momentum, hyper.nesterov, hyper.weight_decay
        if velocity is None and not weight_decay and self._blas is not None and self._blas.axpy(-lr, grads, params):
            return
        buf = self._scratch("update", (min(BLOCK, params.size),), params.dtype)
        buf2 = self._scratch("update2", (min(BLOCK, params.size),), params.dtype) if weight_decay else None
        for s in self._blocks(params.size):
            p, g = params[s], grads[s]
            t = buf[: p.size]
            if weight_decay:
                g = np.add(g, np.multiply(p, weight_decay, out=buf2[: p.size]), out=buf2[: p.size])
            if velocity is None:
                step = g
            else:
                v = velocity[s]
                v *= momentum
                v += g
                if nesterov:
                    step = np.add(g, np.multiply(v, momentum, out=t), out=t)
                else:
                    step = v
            np.multiply(step, lr, out=t)
            p -= t

    def adam_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: "AdamHyperparameters") -> None:
        """Adam step ``t`` block by block; same arithmetic as :meth:`Ops.adam_update` without a
        direct BLAS, :meth:`_adam_update_blas` with one."""
        self._adam(params, grads, m, v, t, hyper, l2=hyper.weight_decay, decay=1.0)

    def adamw_update(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: "AdamWHyperparameters") -> None:
        """AdamW step ``t``: Adam's passes without the L2 term, the weights first scaled by the
        decoupled factor 1 - lr wd (one SCAL per block of the BLAS form, one multiply per block
        otherwise); the arithmetic of :meth:`Ops.adamw_update`."""
        self._adam(params, grads, m, v, t, hyper, l2=0.0, decay=1.0 - hyper.lr * hyper.weight_decay)

    def _adam(self, params: Any, grads: Any, m: Any, v: Any, t: int, hyper: Any, l2: float, decay: float) -> None:
        """Adam's update with L2 decay ``l2`` added to the gradient and the weights scaled by
        ``decay`` before the step (1: none)."""
        b1, b2 = hyper.betas
        lr, eps = hyper.lr, hyper.eps_at(t)
        step_size = lr / (1.0 - b1**t)
        root_bias2 = (1.0 - b2**t) ** 0.5
        if (not l2 and params.size >= ADAM_BLAS_MIN_SIZE and self._blas is not None
                and self._adam_update_blas(params, grads, m, v, step_size, root_bias2, b1, b2, eps, decay)):
            return
        width = min(BLOCK, params.size)
        buf = self._scratch("update", (width,), params.dtype)
        buf2 = self._scratch("update2", (width,), params.dtype) if l2 else None
        if params.size <= BLOCK:  # one block: the arrays themselves, no slicing
            _adam_block(params, grads, m, v, buf, buf2, l2, decay, b1, b2, root_bias2, eps, step_size)
            return
        for s in self._blocks(params.size):
            p = params[s]
            k = p.size
            _adam_block(p, grads[s], m[s], v[s], buf[:k], None if buf2 is None else buf2[:k], l2, decay, b1, b2,
                        root_bias2, eps, step_size)

    def _adam_update_blas(self, params: Any, grads: Any, m: Any, v: Any, step_size: float, root_bias2: float,
                          b1: float, b2: float, eps: float, decay: float = 1.0) -> bool:
        """Adam's update with the moment updates and the step as BLAS calls (threaded, one pass each).

        m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2 are AXPBYs; the step
        w <- w - step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps) is taken as
        w <- w - (step_size sqrt(1 - b2^t)) m / (sqrt(v) + eps sqrt(1 - b2^t)) (the same quotient,
        one pass fewer) with an AXPY: seven passes for :meth:`adam_update`'s thirteen, rounding
        within a few units in the last place of the reference. AdamW's ``decay`` (not 1) scales
        the weights first, one SCAL. False (nothing done) where the library lacks AXPBY, the
        arrays do not allow the calls, or there are too few parameters.
        """
        blas = self._blas
        dtype = params.dtype
        arrays = (params, grads, m, v)
        if blas is None or params.size < ADAM_BLAS_MIN_SIZE or not blas.has("axpby", dtype) or not all(
                isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.size == params.size
                for a in arrays):
            return False
        width = min(max(1, ADAM_BLAS_BLOCK_BYTES // dtype.itemsize), params.size)
        buf = self._scratch("adam_blas", (width,), dtype)
        for start in range(0, params.size, width):
            s = slice(start, min(start + width, params.size))
            p, g, ms, vs = params[s], grads[s], m[s], v[s]
            t1 = buf[: p.size]
            blas.axpby(1.0 - b1, g, b1, ms)
            np.multiply(g, g, out=t1)
            blas.axpby(1.0 - b2, t1, b2, vs)
            np.sqrt(vs, out=t1)
            t1 += eps * root_bias2
            np.divide(ms, t1, out=t1)
            if decay != 1.0 and not blas.scal(decay, p):
                p *= decay
            blas.axpy(-step_size * root_bias2, t1, p)
        return True
