"""NumpyOps' BatchNorm passes (MATH.md, BatchNorm), block by block.

The formulas are :class:`~gpubp.ops.base.Ops`'s; what changes is the order of the work. Every
pass goes over blocks of whole rows small enough (``ACTIVATION_BLOCK_BYTES`` per array) that a
block's several steps (centre, scale, shift, activate, drop; or the activation's derivative
and the two column sums) find it in cache: each array crosses memory about once per pass
instead of once per step, which is what a batch of thousands of rows spends its time on.
Column sums are products with a vector of ones and an ``einsum`` per block (no squared array),
added up over the blocks in small reused buffers; no array of the batch's size is allocated.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np

from ..activations import Activation
from .numpy_activations import IN_PLACE


class BatchNormBlocks:
    """The BatchNorm methods of :class:`~gpubp.ops.numpy_ops.NumpyOps` (a mixin: it uses that
    class's reused buffers and row blocks)."""

    def _blocks_of(self, X: Any) -> Iterator[slice]:
        return self._row_blocks(X)  # type: ignore[attr-defined]

    def _ones(self, n: int, dtype: Any) -> np.ndarray:
        """The vector (1, ..., 1) of length n: column sums as a product."""
        key = ("ones", (n,), np.dtype(dtype))
        w = self._scratch_buffers.get(key)  # type: ignore[attr-defined]
        if w is None:
            w = self._scratch("ones", (n,), dtype)  # type: ignore[attr-defined]
            w.fill(1.0)
        return w

    def _add_column_sums(self, k: int, a: Any, b: Any, s1: Any, s2: Any) -> None:
        """Block ``k`` (from 0) of the column sums: s1 (+)= sum over rows of ``a``, s2 (+)= sum over
        rows of ``a * b`` (a product with (1, ..., 1) and one einsum: no product array)."""
        ones = self._ones(a.shape[0], a.dtype)
        if k == 0:
            np.matmul(ones, a, out=s1)
            np.einsum("ij,ij->j", a, b, out=s2)
            return
        t1 = self._scratch("bn_sum1", s1.shape, s1.dtype)  # type: ignore[attr-defined]
        t2 = self._scratch("bn_sum2", s2.shape, s2.dtype)  # type: ignore[attr-defined]
        np.matmul(ones, a, out=t1)
        s1 += t1
        np.einsum("ij,ij->j", a, b, out=t2)
        s2 += t2

    def batch_norm_sums(self, X: Any, shift: Any, s1: Any, s2: Any, work: Any, work2: Any) -> None:
        """s1 = sum_i (x_i - K), s2 = sum_i (x_i - K)^2 (:meth:`Ops.batch_norm_sums`): X - K into
        ``work`` and both sums on each block while it is in cache."""
        for k, rows in enumerate(self._blocks_of(X)):
            D = work[rows]
            np.subtract(X[rows], shift, out=D)
            self._add_column_sums(k, D, D, s1, s2)

    def _activate_block(self, Y: Any, act: Optional[Activation], A: Any, M: Any, D: Any) -> None:
        """A = g(Y) on one block (nothing without an activation: A is Y), then D = A * M."""
        if act is None:
            if M is not None:
                np.multiply(Y, M, out=D)
            return
        forms = IN_PLACE.get(act)
        if forms is not None:
            self._forward_block(Y, None, forms.forward, A, M, D)  # type: ignore[attr-defined]
            return
        A[...] = act.forward(np, Y)
        if M is not None:
            np.multiply(A, M, out=D)

    def batch_norm_forward(self, X: Any, mean: Any, inv_std: Any, gamma: Any, beta: Any, Xhat: Any, Y: Any,
                           act: Optional[Activation], A: Any, dropout: Any = None) -> Any:
        """zhat, y = gamma zhat + beta, a = g(y) and the dropout (:meth:`Ops.batch_norm_forward`),
        every step of a block while it is in cache."""
        M = D = None
        if dropout is not None:
            M, D = self.dropout_mask(dropout), dropout.out  # type: ignore[attr-defined]
        A = Y if act is None else A
        for rows in self._blocks_of(X):
            xh, y = Xhat[rows], Y[rows]
            np.subtract(X[rows], mean, out=xh)
            xh *= inv_std
            np.multiply(xh, gamma, out=y)
            y += beta
            self._activate_block(y, act, A[rows], None if M is None else M[rows], None if D is None else D[rows])
        return A

    def batch_norm_backward_sums(self, dout: Any, Y: Any, A: Any, act: Optional[Activation], Xhat: Any, s1: Any,
                                 s2: Any, dropout: Any = None, work: Any = None) -> None:
        """Delta = dout * g'(y) in place (the dropout's mask first), s1 = sum_i Delta_i,
        s2 = sum_i Delta_i zhat_i (:meth:`Ops.batch_norm_backward_sums`), a block at a time."""
        M = None if dropout is None else dropout.mask
        forms = None if act is None else IN_PLACE.get(act)
        grad = forms.grad if forms is not None and act.elementwise else None
        for k, rows in enumerate(self._blocks_of(dout)):
            d = dout[rows]
            if act is None:
                if M is not None:
                    np.multiply(d, M[rows], out=d)
            elif grad is not None:
                self._backward_block(d, Y[rows], A[rows], grad, d, None if M is None else M[rows])  # type: ignore[attr-defined]
            else:
                if M is not None:
                    np.multiply(d, M[rows], out=d)
                np.multiply(d, act.grad(np, Y[rows], A[rows]), out=d)
            self._add_column_sums(k, d, Xhat[rows], s1, s2)

    def batch_norm_backward(self, Delta: Any, Xhat: Any, s1: Any, s2: Any, gamma: Any, inv_std: Any, rows: float,
                            training: bool, dgamma: Any, dbeta: Any, dX: Optional[Any], work: Any, coef: Any) -> None:
        """dC/dbeta, dC/dgamma and the signal at the input (:meth:`Ops.batch_norm_backward`), the
        input's signal a block at a time."""
        np.multiply(s1, 1.0 / rows, out=dbeta)
        np.multiply(s2, 1.0 / rows, out=dgamma)
        if dX is None:
            return
        np.multiply(gamma, inv_std, out=coef)
        for r in self._blocks_of(Delta):
            out = dX[r]
            if training:
                w = work[r]
                np.multiply(Xhat[r], dgamma, out=w)
                np.subtract(Delta[r], dbeta, out=out)
                out -= w
                out *= coef
            else:
                np.multiply(Delta[r], coef, out=out)
