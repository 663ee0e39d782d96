"""Central finite differences against backprop.

The function differentiated is the training objective: the loss C and, for a network with
``l2`` > 0, the L2 penalty on the weights (MATH.md).

For each parameter w, (C(w + eps) - C(w - eps)) / (2 eps) approximates dC/dw with an error
of order eps^2; backprop's value must agree. The check runs on a float64 twin of the network
(same weights, same backend) so rounding does not swamp the comparison; every layer type
takes part (Dropout with a fixed mask, BatchNorm with the statistics of the batch).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import validation


def gradcheck(net: Any, X: Any, Y: Any, eps: float = 1e-5, max_params: Optional[int] = None, seed: int = 0,
              floor: float = 1e-6, training: bool = True) -> float:
    """Max relative error |g_bp - g_fd| / max(|g_bp|, |g_fd|, floor) over the parameters.

    Args:
        eps: the finite-difference step.
        floor: the smallest denominator, so gradients near zero are compared absolutely
            (the rounding error of a difference quotient is about 1e-16 * C / eps).
        max_params: check a random subset of this many parameters (all when ``None``).
        seed: picks that subset.
        training: check the gradient of a training pass (every Dropout with one fixed mask,
            the mask its next pass would draw; BatchNorm on the batch's statistics, which move
            with every weight below it) or, with ``False``, of an inference pass. ``net`` is
            not changed: the check runs on a twin whose passes leave their state alone.
    """
    from .backend import use_backend
    from .network import MLP

    eps = validation.check_positive_float(eps, "eps")
    floor = validation.check_positive_float(floor, "floor")
    if max_params is not None:
        max_params = validation.check_int(max_params, "max_params", 1)
    seed = validation.check_int(seed, "seed", 0)
    training = validation.check_bool(training, "training")
    to_np = net.backend.to_numpy
    cfg = dict(net.get_config(), dtype="float64")
    with use_backend(net.backend):  # the same backend object: its device, ops and compiled kernels
        twin = MLP.from_parameters(to_np(net.params).astype(np.float64), state=to_np(net.state).astype(np.float64),
                                   **cfg)
    twin.set_host_state(net.host_state())
    X, Y = validation.check_XY(twin, X, Y)
    n = X.shape[0]
    run = twin.make_pass(training, n, update=False)  # fixed masks, running statistics untouched
    twin.add_l2(twin.backprop(X, Y, run), n)
    analytic = twin.backend.to_numpy(twin.grads).copy()

    ops = twin.backend.ops
    ws = twin.workspace(n)
    dense = twin.dense_layers

    def C() -> float:
        """The training objective: the data's C, plus the L2 penalty (lambda/2n) sum_l ||W^(l)||^2."""
        A = twin.infer(X, run)
        c = float(ops.loss_value(twin.loss, ws.Z[twin.L], A, Y))
        if twin.l2:
            c += twin.l2 / (2.0 * n) * sum(float((layer.W * layer.W).sum()) for layer in dense)
        return c

    P = twin.n_params
    if max_params is not None and max_params < P:
        indices = np.random.default_rng(seed).choice(P, size=max_params, replace=False)
    else:
        indices = np.arange(P)
    worst = 0.0
    for i in indices:
        i = int(i)
        w = float(twin.params[i])
        twin.params[i] = w + eps
        c_plus = C()
        twin.params[i] = w - eps
        c_minus = C()
        twin.params[i] = w
        numeric = (c_plus - c_minus) / (2.0 * eps)
        a = float(analytic[i])
        err = abs(a - numeric) / max(abs(a), abs(numeric), floor)
        worst = max(worst, err)
    return worst
