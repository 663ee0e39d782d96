"""The tutorial's chain rule for any parameter of a network, in the numbers of a batch.

``net.explain(X, Y, "w_12^(L)")`` returns an :class:`Explanation`: per sample, the three factors
of dC_0/dw_jk^(l) = dC_0/da_j^(l) * da_j^(l)/dz_j^(l) * dz_j^(l)/dw_jk^(l), their product, its
average over the n samples (the entry of the network's gradient), and for a hidden layer the
sum over the next layer's nodes that gives dC_0/da_j^(l), with any Dropout or BatchNorm between
the two layers as factors of their own. The numbers come from the network's own batched pass
(:mod:`gpubp.trace`).

* :mod:`~gpubp.explain.weight`: naming a parameter (``w_22^(L-1)``, ``b_1^(2)``, or keywords);
* :mod:`~gpubp.explain.explanation`: what an explanation holds (and ``to_dict``);
* :mod:`~gpubp.explain.modes`: the three ways a layer forms dC_0/dz;
* :mod:`~gpubp.explain.build`: an explanation from a traced pass;
* :mod:`~gpubp.explain.render`: plain text, Markdown and LaTeX.
"""
from __future__ import annotations

from .build import explain, from_trace
from .explanation import Explanation, Factor, Terms
from .modes import CHAIN, FUSED, SOFTMAX
from .weight import WeightName, parse, resolve

__all__ = ["CHAIN", "FUSED", "SOFTMAX", "Explanation", "Factor", "Terms", "WeightName", "explain", "from_trace", "parse",
           "resolve"]
