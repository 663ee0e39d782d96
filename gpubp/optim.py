"""Optimizers over the network's flat parameter buffer: one fused update per step.

MATH.md, update: w <- w - eta dC/dw. :class:`SGD` adds (Nesterov) momentum and L2 weight
decay, :class:`Adam` the moment estimates of Kingma & Ba, :class:`AdamW` Adam with decoupled
weight decay; all follow torch.optim's conventions so results can be compared number for
number. Their state (velocity, moments) is one flat buffer beside the parameters, allocated on
the first step.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Tuple

import numpy as np

from .names import lookup
from .validation import COUNTER_LIMIT, check_int, check_positive_float


# ---- hyper-parameters --------------------------------------------------------------------
class Hyperparameters:
    """The hyper-parameters of one optimizer: named values, each checked when it is assigned.

    ``CHECKS`` maps each name to its check, ``check(value, name) -> value`` (raising a
    TypeError or ValueError naming the argument); :meth:`_check_together` checks the rules
    that tie several values together. The constructor and every later assignment
    (``opt.lr = 0.01``, as schedules do) run the same checks before anything is stored, so a
    rejected value changes nothing. The optimizer updates of :class:`gpubp.ops.Ops` read
    their values from this one object.
    """

    CHECKS: ClassVar[Dict[str, Callable[[Any, str], Any]]] = {}
    #: Values of the names a caller may leave out.
    DEFAULTS: ClassVar[Dict[str, Any]] = {}

    def __init__(self, **values: Any) -> None:
        values = {**self.DEFAULTS, **values}
        unknown = [k for k in values if k not in self.CHECKS]
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyper-parameter {unknown[0]!r}; "
                            f"expected {', '.join(self.CHECKS)}")
        missing = [k for k in self.CHECKS if k not in values]
        if missing:
            raise TypeError(f"{type(self).__name__}: missing hyper-parameter {missing[0]!r}; "
                            f"expected {', '.join(self.CHECKS)}")
        checked = {name: check(values[name], name) for name, check in self.CHECKS.items()}
        self._check_together(checked)
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        check = self.CHECKS.get(name)
        if check is None:
            raise AttributeError(f"{type(self).__name__} has no hyper-parameter {name!r}; it has {', '.join(self.CHECKS)}")
        value = check(value, name)
        self._check_together({**self.as_dict(), name: value})
        object.__setattr__(self, name, value)

    def _check_together(self, values: Mapping[str, Any]) -> None:
        """Rules between values (none by default); raise before anything is stored."""

    def as_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in self.CHECKS}

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other.as_dict() == self.as_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"


def _rate(value: Any, name: str) -> float:
    return check_positive_float(value, name)


def _non_negative(value: Any, name: str) -> float:
    return check_positive_float(value, name, allow_zero=True)


def _decay_rate(value: Any, name: str) -> float:
    """A number in [0, 1): a momentum or a moment's decay."""
    v = check_positive_float(value, name, allow_zero=True)
    if v >= 1.0:
        raise ValueError(f"{name} must lie in [0, 1); got {value!r}")
    return v


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _betas(value: Any, name: str) -> Tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2); got {value!r}")
    b = tuple(check_positive_float(x, f"{name}[{i}]", allow_zero=True) for i, x in enumerate(value))
    if not all(x < 1.0 for x in b):
        raise ValueError(f"{name} must each lie in [0, 1); got {value!r}")
    return (b[0], b[1])


class SGDHyperparameters(Hyperparameters):
    """``lr`` eta (> 0), ``momentum`` mu in [0, 1), ``nesterov`` (needs momentum > 0) and the L2
    ``weight_decay`` (>= 0) of :class:`SGD`."""

    CHECKS = {"lr": _rate, "momentum": _decay_rate, "nesterov": _flag, "weight_decay": _non_negative}
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float

    def _check_together(self, values: Mapping[str, Any]) -> None:
        if values["nesterov"] and values["momentum"] == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")


class AdamHyperparameters(Hyperparameters):
    """``lr`` (> 0), ``betas`` (beta1, beta2) each in [0, 1), ``eps`` (> 0), the L2
    ``weight_decay`` (>= 0) and ``eps_hat`` (where epsilon enters) of :class:`Adam`."""

    CHECKS = {"lr": _rate, "betas": _betas, "eps": _rate, "weight_decay": _non_negative, "eps_hat": _flag}
    DEFAULTS = {"eps_hat": False}
    lr: float
    betas: Tuple[float, float]
    eps: float
    weight_decay: float
    eps_hat: bool

    def eps_at(self, t: int) -> float:
        """The epsilon added to sqrt(v_hat) at step ``t``: ``eps``, or with ``eps_hat`` (epsilon
        added to sqrt(v) = sqrt(v_hat) sqrt(1 - b2^t)) eps / sqrt(1 - b2^t)."""
        return self.eps / (1.0 - self.betas[1] ** t) ** 0.5 if self.eps_hat else self.eps


class AdamWHyperparameters(AdamHyperparameters):
    """``lr`` (> 0), ``betas`` (beta1, beta2) each in [0, 1), ``eps`` (> 0), the decoupled
    ``weight_decay`` (>= 0) and ``eps_hat`` of :class:`AdamW`: Adam's checks; the decay is
    decoupled from the gradient by :meth:`gpubp.ops.Ops.adamw_update`."""


def hyperparameter(name: str) -> property:
    """The optimizer's attribute ``name``: read from, and assigned (checked) into, its ``hyper``."""

    def get(self: "Optimizer") -> Any:
        return getattr(self.hyper, name)

    def put(self: "Optimizer", value: Any) -> None:
        setattr(self.hyper, name, value)

    return property(get, put, doc=f"The hyper-parameter {name!r} (checked on assignment).")


# ---- optimizers ---------------------------------------------------------------------------
#: Other libraries' names of gpubp's hyper-parameters (Keras, scikit-learn, PyTorch's pre-1.0 ones):
#: assigning one to an optimizer is a mistake the optimizer names, not a silent new attribute.
HYPERPARAMETER_ALIASES = {"learning_rate": "lr", "learning_rate_init": "lr", "beta_1": "betas", "beta_2": "betas",
                          "beta1": "betas", "beta2": "betas", "epsilon": "eps", "decay": "weight_decay",
                          "nesterovs_momentum": "nesterov", "alpha": "weight_decay"}


class Optimizer:
    """Base class: holds the hyper-parameters (``hyper``, of class ``hyperparameter_class``),
    the step count ``t`` and the state buffers for one network."""

    hyperparameter_class: ClassVar[type] = Hyperparameters
    state_names: Tuple[str, ...] = ()
    #: Whether every update makes each weight whose gradient is NaN or inf non-finite (the
    #: divergence guard then tests the loss after each step and finds a failed gradient by the
    #: weights it left, see :class:`gpubp.guard.DivergenceGuard`). True for SGD, Adam and AdamW,
    #: whose steps are the gradient or its moments times a positive rate.
    spreads_nonfinite: ClassVar[bool] = False

    def __init__(self, **hyper: Any) -> None:
        self.hyper = self.hyperparameter_class(**hyper)
        self.state: Dict[str, Any] = {}
        self._t = 0
        #: The learning rate a schedule started from (PyTorch's ``initial_lr``): None until a
        #: schedule of :mod:`gpubp.schedules` runs. Checkpoints keep it, so a resumed schedule
        #: knows its base.
        self.initial_lr: Optional[float] = None
        #: A weak reference to the network whose training the state (``t``, buffers) belongs to:
        #: set when the state binds to a network (a step, :meth:`load_state_dict`); None while
        #: unknown (never bound, or copied or unpickled, which drop it). Weak: it keeps no
        #: network alive.
        self._network: Optional["weakref.ReferenceType[Any]"] = None

    def __getstate__(self) -> Dict[str, Any]:
        """Everything but the reference to the network (a weak reference cannot be pickled; a
        copy's owner is unknown until it binds)."""
        state = self.__dict__.copy()
        state["_network"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update({"_network": None, **state})

    def __setattr__(self, name: str, value: Any) -> None:
        """Attributes as usual, but a hyper-parameter this optimizer does not have (another
        optimizer's, such as ``momentum`` on Adam, or another library's name, such as Keras's
        ``learning_rate``) is an AttributeError naming what it has: set silently, it would
        change nothing."""
        if not name.startswith("_") and not hasattr(type(self), name):
            other = {n for cls in (SGD, Adam, AdamW) for n in cls.hyperparameter_class.CHECKS}
            if name in HYPERPARAMETER_ALIASES or name in other:
                own = ", ".join(self.hyperparameter_class.CHECKS)
                hint = f" (gpubp's name: {HYPERPARAMETER_ALIASES[name]})" if name in HYPERPARAMETER_ALIASES else ""
                raise AttributeError(f"{type(self).__name__} has no hyper-parameter {name!r}{hint}; it has {own}")
        object.__setattr__(self, name, value)

    @property
    def hyper(self) -> Any:
        """The hyper-parameters, an object of ``hyperparameter_class`` (its values checked on
        assignment; replaced only by another object of that class)."""
        return self._hyper

    @hyper.setter
    def hyper(self, value: Any) -> None:
        if type(value) is not self.hyperparameter_class:
            raise TypeError(f"{type(self).__name__}.hyper must be a {self.hyperparameter_class.__name__} object; got "
                            f"{type(value).__name__} (set single values as opt.lr = ...)")
        self._hyper = value

    @property
    def t(self) -> int:
        """The number of updates applied (an integer >= 0; checked on assignment)."""
        return self._t

    @t.setter
    def t(self, value: Any) -> None:
        self._t = check_int(value, "t", 0, COUNTER_LIMIT)  # checkpoints keep t as a 64-bit integer

    def _fits(self, net: Any) -> bool:
        """Whether every state buffer matches ``net``'s parameters: shape, dtype and backend."""
        p = net.params
        for v in self.state.values():
            if not (v.shape == p.shape and v.dtype == p.dtype and isinstance(v, type(p))):
                return False
        return True

    def check_network(self, net: Any) -> None:
        """Raise a ValueError, changing nothing, if this optimizer has stepped another network."""
        if self._t and not self._fits(net):
            p = net.params
            bad = next(v for v in self.state.values()
                       if not (v.shape == p.shape and v.dtype == p.dtype and isinstance(v, type(p))))
            raise ValueError(
                f"optimizer: this {type(self).__name__} holds state for {bad.size} parameters of dtype {bad.dtype} "
                f"({type(bad).__module__.split('.')[0]}); the network has {p.size} of dtype {p.dtype} "
                f"({type(p).__module__.split('.')[0]}): use one optimizer per network"
            )

    def check_owner(self, net: Any) -> None:
        """Raise a ValueError, changing nothing, if this optimizer's state (a step count or
        buffers) belongs to another network than ``net``: one it stepped or was loaded for
        since, even of the same architecture. An optimizer without state, or whose network
        is unknown (a copy not yet bound), passes."""
        ref = self._network
        if ref is None or not (self._t or self.state):
            return
        owner = ref()
        if owner is net:
            return
        held = f"{type(self).__name__}'s state (t = {self._t})"
        came = f"the network given, {net!r} at {id(net):#x}"
        if owner is None:
            raise ValueError(f"optimizer: this {held} belongs to a network that no longer exists, not to {came}: "
                             f"pass the optimizer that trained this network")
        raise ValueError(f"optimizer: this {held} belongs to {owner!r} at {id(owner):#x} (the network it last stepped "
                         f"or was loaded for), not to {came}: pass the optimizer that trained this network")

    def _bind(self, net: Any) -> None:
        """Check the state buffers against ``net``, allocate the missing ones (zeros) and record
        ``net`` as the network the state belongs to: what every update does before it changes
        anything."""
        if not self._fits(net):
            self.check_network(net)  # raises when the state is another network's (t > 0)
            self.state = {}  # fresh (t == 0) state allocated for another network: start again
        state = self.state
        for name in self.state_names:
            if name not in state:
                state[name] = net.backend.xp.zeros_like(net.params)
        ref = self._network
        if ref is None or ref() is not net:
            self._network = weakref.ref(net)

    def step(self, net: Any) -> None:
        """Apply one update to ``net.params`` from ``net.grads``."""
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Hyper-parameters, step count and state buffers (as NumPy arrays), for checkpoints."""
        return {"type": type(self).__name__, "config": self.get_config(), "t": self.t, "initial_lr": self.initial_lr,
                "state": {k: np.asarray(v.get() if hasattr(v, "get") else v) for k, v in self.state.items()}}

    def load_state_dict(self, d: Dict[str, Any], net: Any) -> None:
        """Restore what :meth:`state_dict` gave, onto ``net``'s backend."""
        t = check_int(int(d["t"]), "t", 0)
        initial = d.get("initial_lr")
        initial = None if initial is None else check_positive_float(initial, "initial_lr")
        self.state = {k: net.backend.asarray(v, dtype=net.dtype).copy() for k, v in d["state"].items()}
        self._t, self.initial_lr = t, initial
        self._network = weakref.ref(net)

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments (pairs as lists, as JSON keeps them)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.hyper.as_dict().items()}

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

    Each is an attribute too (``opt.lr = 0.01``), checked on assignment like here.
    """

    hyperparameter_class = SGDHyperparameters
    spreads_nonfinite = True
    lr = hyperparameter("lr")
    momentum = hyperparameter("momentum")
    nesterov = hyperparameter("nesterov")
    weight_decay = hyperparameter("weight_decay")

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)

    @property
    def state_names(self) -> Tuple[str, ...]:  # type: ignore[override]
        """The velocity buffer, with momentum."""
        return ("velocity",) if self.hyper.momentum else ()

    def step(self, net: Any) -> None:
        self._bind(net)
        hyper = self.hyper
        net.backend.ops.sgd_update(net.params, net.grads, self.state["velocity"] if hyper.momentum else None, hyper)
        self._t += 1


class Adam(Optimizer):
    """Adam: moment estimates m, v with bias correction (Kingma & Ba, 2015).

    Args:
        lr: step size (> 0).
        betas: decay rates (beta1, beta2), each in [0, 1).
        eps: added to sqrt(v_hat) (> 0).
        weight_decay: L2 coefficient added to the gradient, as torch.optim.Adam.
        eps_hat: take ``eps`` as the paper's epsilon-hat instead (its efficient form, before
            Section 2.1): w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps), epsilon
            added before the bias correction of v, as TensorFlow and scikit-learn do; the
            default adds it after, as Algorithm 1 and PyTorch do. The two differ only where
            sqrt(v) is not much larger than eps.

    Each is an attribute too (``opt.lr = 1e-4``), checked on assignment like here.
    """

    hyperparameter_class = AdamHyperparameters
    spreads_nonfinite = True
    state_names = ("m", "v")
    lr = hyperparameter("lr")
    betas = hyperparameter("betas")
    eps = hyperparameter("eps")
    weight_decay = hyperparameter("weight_decay")
    eps_hat = hyperparameter("eps_hat")

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, eps_hat: bool = False):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, eps_hat=eps_hat)

    def _update(self, ops: Any) -> Callable[..., Any]:
        """The backend's update of this optimizer (MATH.md: Adam)."""
        return ops.adam_update

    def step(self, net: Any) -> None:
        self._bind(net)
        t = self._t + 1
        self._update(net.backend.ops)(net.params, net.grads, self.state["m"], self.state["v"], t, self.hyper)
        self._t = t


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as torch.optim.AdamW.

    Each step first shrinks every weight, w <- w (1 - lr weight_decay), then takes Adam's step
    from the loss gradient alone (MATH.md, AdamW); ``Adam(weight_decay=...)`` instead adds
    weight_decay w to the gradient, which Adam's per-weight scaling then reshapes.

    Args:
        lr: step size (> 0).
        betas: decay rates (beta1, beta2), each in [0, 1).
        eps: added to sqrt(v_hat) (> 0).
        weight_decay: the decoupled decay coefficient (>= 0; PyTorch's default 0.01).
        eps_hat: epsilon added before the bias correction, as :class:`Adam`'s.

    Each is an attribute too (``opt.weight_decay = 0.1``), checked on assignment like here.
    """

    hyperparameter_class = AdamWHyperparameters

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, eps_hat: bool = False):
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, eps_hat=eps_hat)

    def _update(self, ops: Any) -> Callable[..., Any]:
        """The backend's update of this optimizer (MATH.md: AdamW)."""
        return ops.adamw_update


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def lookup_optimizer(name: Any) -> type:
    """The optimizer class called ``name`` (``sgd``, ``adam`` or ``adamw``, any case); a ValueError listing the valid names otherwise."""
    return lookup(OPTIMIZERS, name, "optimizer", "optimizer", fold_case=True)


def make_optimizer(name: str, **kwargs: Any) -> Optimizer:
    """An optimizer by name (``sgd``, ``adam`` or ``adamw``) with these hyper-parameters."""
    return lookup_optimizer(name)(**kwargs)
