"""Optimizers over the network's flat parameter buffer: one fused update per step.

MATH.md, update: w <- w - eta dC/dw. :class:`SGD` adds (Nesterov) momentum and L2 weight
decay, :class:`Adam` the moment estimates of Kingma & Ba; both follow torch.optim's
conventions so results can be compared number for number. Their state (velocity, moments)
is one flat buffer beside the parameters, allocated on the first step.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .validation import check_positive_float


class Optimizer:
    """Base class: holds the hyper-parameters and the state for one network."""

    state_names: Tuple[str, ...] = ()

    def __init__(self) -> None:
        self.state: Dict[str, Any] = {}
        self.t = 0
        #: The learning rate a schedule started from (PyTorch's ``initial_lr``); None until a
        #: schedule of :mod:`gpubp.schedules` runs. Kept in checkpoints, so a resumed schedule
        #: knows its base.
        self.initial_lr: Optional[float] = None

    def _fits(self, net: Any) -> bool:
        """Whether the state buffers (if any) match ``net``'s parameters: shape, dtype and backend."""
        first = next(iter(self.state.values()), None)
        return first is None or (first.shape == net.params.shape and first.dtype == net.params.dtype
                                 and isinstance(first, type(net.params)))

    def check_network(self, net: Any) -> None:
        """Raise a ValueError, changing nothing, if this optimizer has stepped another network."""
        if self.t and not self._fits(net):
            first = next(iter(self.state.values()))
            raise ValueError(
                f"optimizer: this {type(self).__name__} holds state for {first.size} parameters of dtype {first.dtype} "
                f"({type(first).__module__.split('.')[0]}); the network has {net.params.size} of dtype {net.params.dtype} "
                f"({type(net.params).__module__.split('.')[0]}): use one optimizer per network"
            )

    def _bind(self, net: Any) -> None:
        """Allocate the state buffers for ``net`` (or check they match it)."""
        self.check_network(net)
        if not self._fits(net):
            self.state = {}  # fresh (t == 0) state allocated for another network: start again
        for name in self.state_names:
            if name not in self.state:
                self.state[name] = net.backend.xp.zeros_like(net.params)

    def step(self, net: Any) -> None:
        """Apply one update to ``net.params`` from ``net.grads``."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Hyper-parameters, step count and state buffers (as NumPy arrays), for checkpoints."""
        return {"type": type(self).__name__, "config": self.get_config(), "t": self.t, "initial_lr": self.initial_lr,
                "state": {k: np.asarray(v.get() if hasattr(v, "get") else v) for k, v in self.state.items()}}

    def load_state_dict(self, d: Dict[str, Any], net: Any) -> None:
        """Restore what :meth:`state_dict` gave, onto ``net``'s backend."""
        self.t = int(d["t"])
        self.state = {k: net.backend.asarray(v, dtype=net.dtype).copy() for k, v in d["state"].items()}
        initial = d.get("initial_lr")
        self.initial_lr = None if initial is None else float(initial)

    def get_config(self) -> Dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent: w <- w - lr * step (MATH.md, update).

    Args:
        lr: the learning rate eta (> 0).
        momentum: mu in v <- mu v + g (0 disables the velocity buffer).
        nesterov: use g + mu v as the step (needs momentum > 0).
        weight_decay: L2 coefficient added to the gradient, g = dC/dw + wd * w.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__()
        self.lr = check_positive_float(lr, "lr")
        self.momentum = check_positive_float(momentum, "momentum", allow_zero=True)
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must lie in [0, 1); got {momentum!r}")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False; got {nesterov!r}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)
        self.state_names = ("velocity",) if self.momentum else ()

    def step(self, net: Any) -> None:
        self._bind(net)
        self.t += 1
        net.backend.ops.sgd_update(net.params, net.grads, self.state.get("velocity"), self.lr,
                                   self.momentum, self.nesterov, self.weight_decay)

    def get_config(self) -> Dict[str, Any]:
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam: moment estimates m, v with bias correction (Kingma & Ba, 2015).

    Args:
        lr: step size (> 0).
        betas: decay rates (beta1, beta2), each in [0, 1).
        eps: added to sqrt(v_hat) (> 0).
        weight_decay: L2 coefficient added to the gradient, as torch.optim.Adam.
    """

    state_names = ("m", "v")

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__()
        self.lr = check_positive_float(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        b = tuple(check_positive_float(x, f"betas[{i}]", allow_zero=True) for i, x in enumerate(betas))
        if not all(x < 1.0 for x in b):
            raise ValueError(f"betas must each lie in [0, 1); got {betas!r}")
        self.betas: Tuple[float, float] = (b[0], b[1])
        self.eps = check_positive_float(eps, "eps")
        self.weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)

    def step(self, net: Any) -> None:
        self._bind(net)
        self.t += 1
        net.backend.ops.adam_update(net.params, net.grads, self.state["m"], self.state["v"], self.t,
                                    self.lr, self.betas, self.eps, self.weight_decay)

    def get_config(self) -> Dict[str, Any]:
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def lookup_optimizer(name: Any) -> type:
    """The optimizer class called ``name`` (``sgd`` or ``adam``, any case); a ValueError listing the valid names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"optimizer must be a name, one of {', '.join(OPTIMIZERS)}; got {type(name).__name__} {name!r}")
    try:
        return OPTIMIZERS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}") from None


def make_optimizer(name: str, **kwargs: Any) -> Optimizer:
    """An optimizer by name (``sgd`` or ``adam``) with these hyper-parameters."""
    return lookup_optimizer(name)(**kwargs)
