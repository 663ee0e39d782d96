"""What :func:`gpubp.explain.explain` returns: the chain rule of one parameter, in numbers.

All arrays are NumPy copies in the network's dtype, one entry per sample i of the batch (row i
of X). MATH.md's convention for the per-sample numbers: the error signal of sample i is
n dC/d(its row), which is dC_0^(i)/d(...) wherever no layer couples the samples; above a
BatchNorm in training mode it is the coupled signal, and the average over the n samples is
still exactly dC/dw.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import render
from .weight import WeightName


@dataclass(frozen=True)
class Terms:
    """For a hidden layer l: dC_0/d in_j^(l+1) = sum_i dC_0/da_i^(l+1) * da_i^(l+1)/dz_i^(l+1) * w_ij^(l+1),
    one term per node i = 1..m of layer l+1 (MATH.md, one activation of a hidden layer), where
    in_j^(l+1) is what layer l+1 reads from node j: a_j^(l) itself unless layers sit between.

    ``dC_da``, ``da_dz``, ``dC_dz`` and ``products`` have shape (n, m): per sample and node i;
    ``mode`` says how layer l+1 forms dC_dz (:mod:`~gpubp.explain.modes`: :data:`CHAIN`: dC_da * da_dz; :data:`SOFTMAX`:
    the softmax Jacobian, ``da_dz`` None; :data:`FUSED`: the fused head, ``dC_da`` and
    ``da_dz`` None). ``w`` is column j of W^(l+1) (w_ij^(l+1) for i = 1..m), ``products`` =
    dC_dz * w, ``total`` (n,) their sum over i.
    """

    l: int
    mode: str
    activation: str
    dC_da: Optional[np.ndarray]
    da_dz: Optional[np.ndarray]
    dC_dz: np.ndarray
    w: np.ndarray
    products: np.ndarray
    total: np.ndarray


@dataclass(frozen=True)
class Factor:
    """A Dropout or BatchNorm between Dense layer l and layer l+1, as its backward pass turns the
    error signal at its output (``dout``, node j, per sample) into the signal at its input
    (``din``). ``kind`` is ``"dropout"`` or ``"batch_norm"``; ``layer`` its repr; ``parts`` the
    numbers in between: Dropout ``mask`` (m_ij / (1 - p); absent in inference or at p = 0, where
    din = dout); BatchNorm ``g'(y)`` and ``delta`` (= dout * g'(y)), ``zhat``, and the node's
    ``gamma``, ``inv_std`` (1/sqrt(sigma^2 + eps)), ``mean_delta`` and ``mean_delta_zhat`` (the
    averages over the samples that couple them; training mode only). ``fused`` says the dropout
    runs inside the activation pass of the layer below it.
    """

    kind: str
    index: int
    layer: str
    dout: np.ndarray
    din: np.ndarray
    parts: Dict[str, Any] = field(default_factory=dict)
    training: bool = True
    fused: bool = False


@dataclass(frozen=True)
class Explanation:
    """The tutorial's chain rule for one parameter of a network on one batch (n samples).

    dC_0/dw_jk^(l) = dC_0/da_j^(l) * da_j^(l)/dz_j^(l) * dz_j^(l)/dw_jk^(l), per sample:

    * ``dC_da``: dC_0/da_j^(l) (n,); for a softmax output layer with a squared-error loss the
      whole row dC_0/da_r^(L), r = 1..m (n, m); None for a fused head (``head`` :data:`FUSED`).
    * ``da_dz``: g'(z_j^(l)) (n,) (1 where the layer has no activation); for a softmax output
      the Jacobian's column da_r^(L)/dz_j^(L) = a_r ([r = j] - a_j) (n, m), which contracted with
      ``dC_da`` gives ``dC_dz``; None for a fused head.
    * ``dC_dz``: dC_0/dz_j^(l) (n,), their product (or contraction), or the fused head's factor
      (a_j - y_j with cross-entropy's one-hot y).
    * ``dz_dw``: a_k^(l-1) as layer l reads it (n,), or 1 for a bias; ``below`` names the layers
      between layer l-1 and layer l, ``reads`` the symbol of what layer l reads: ``"a"`` (a^(l-1)
      itself), ``"drop"`` (a Dropout's output) or ``"bn"`` (a BatchNorm's).
    * ``per_sample``: dC_0^(i)/dw_jk^(l) = dC_dz * dz_dw (n,).
    * ``value``: their average over the n samples, dC/dw_jk^(l), plus ``penalty``, the L2
      penalty's (lambda/n) w_jk^(l) (MATH.md, L2 penalty; 0 without ``l2`` and for a bias);
      ``batched``: the entry of the network's own gradient (1/n) Delta^(l)T A^(l-1) (+ the
      penalty) for the same pass, as :meth:`gpubp.MLP.loss_and_grads` gives it: the two agree to
      rounding.
    * ``terms`` (hidden layers): the sum over layer l+1's nodes that gives dC_0/da_j^(l);
      ``between``: the Dropout and BatchNorm layers between layer l and l+1, top down, which
      turn ``terms.total`` into ``dC_da``.
    * ``a``, ``y``: a_j^(L) and y_j for a parameter of the output layer (else None).
    """

    name: WeightName
    n: int
    training: bool
    dtype: str
    backend: str
    loss: str
    activation: str
    head: Optional[str]
    dC_da: Optional[np.ndarray]
    da_dz: Optional[np.ndarray]
    dC_dz: np.ndarray
    dz_dw: np.ndarray
    per_sample: np.ndarray
    value: float
    batched: float
    terms: Optional[Terms] = None
    penalty: float = 0.0
    between: Tuple[Factor, ...] = ()
    below: Tuple[str, ...] = ()
    reads: str = "a"
    a: Optional[np.ndarray] = None
    y: Optional[np.ndarray] = None
    coupled: bool = False

    # ---- rendering ------------------------------------------------------------------------
    def format(self, samples: int = 3, style: str = "text") -> str:
        """The explanation with the numbers of the first ``samples`` samples (and the average):
        ``style`` ``"text"`` (what ``str`` prints), ``"markdown"`` or ``"latex"``."""
        return render.render(self, samples=samples, style=style)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"Explanation({self.name}, n={self.n}, value={self.value:.6g})"

    def _repr_markdown_(self) -> str:
        return self.format(style="markdown")

    def _repr_latex_(self) -> str:
        return self.format(style="latex")

    def to_dict(self) -> Dict[str, Any]:
        """Everything as plain Python (lists of floats, strings, None): for programs and JSON."""

        def plain(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return v.tolist()
            if isinstance(v, np.generic):
                return v.item()
            if isinstance(v, dict):
                return {key: plain(x) for key, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v

        name = self.name
        out: Dict[str, Any] = {
            "weight": str(name), "kind": name.kind, "layer": name.l, "j": name.j, "k": name.k, "L": name.L,
            "describe": name.describe(),
        }
        for key in ("n", "training", "dtype", "backend", "loss", "activation", "head", "dC_da", "da_dz", "dC_dz",
                    "dz_dw", "per_sample", "value", "batched", "below", "reads", "a", "y", "coupled"):
            out[key] = plain(getattr(self, key))
        out["terms"] = None if self.terms is None else {
            key: plain(getattr(self.terms, key)) for key in ("l", "mode", "activation", "dC_da", "da_dz", "dC_dz", "w",
                                                             "products", "total")}
        out["between"] = [{key: plain(getattr(f, key)) for key in ("kind", "index", "layer", "dout", "din", "parts",
                                                                   "training", "fused")} for f in self.between]
        return out
