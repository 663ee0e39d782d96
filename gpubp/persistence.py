"""Networks saved and brought back: checkpoint files (:func:`load`) and pickles.

:mod:`gpubp.checkpoint` is the file format and never imports the network; this module builds
networks from what it reads. Pickling a network (and ``copy.deepcopy``) goes through
:func:`network_state` and :func:`network_from_state`, registered with :mod:`copyreg` when gpubp
is imported: a NumPy snapshot of the configuration, parameters, layer state, shuffling generator
and epoch, so GPU arrays travel through the host.
"""
from __future__ import annotations

import contextlib
import copyreg
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import checkpoint, validation
from .backend import cupy_problem, get_backend, use_backend
from .network import MLP
from .optim import OPTIMIZERS, Optimizer


def describe(config: Any) -> Tuple[MLP, Dict[str, Tuple[Tuple[int, ...], np.dtype]]]:
    """(the architecture ``config`` describes, configured but not allocated; the arrays a
    checkpoint of it holds, {name: (shape, dtype)}: ``params``, and ``state`` where the network
    has state) for ``config`` as :meth:`~gpubp.network.MLP.get_config` gives it. TypeError or
    ValueError, as the constructor's, for anything else: this is how :mod:`gpubp.checkpoint`
    checks a file's metadata before reading its arrays.
    """
    net = MLP.configured(config)  # every rule of the constructor, no allocation
    arrays = {"params": ((net.n_params,), net.dtype)}
    if net.n_state:
        arrays["state"] = ((net.n_state,), net.dtype)
    return net, arrays


def load(path: Any, optimizer: Any = None) -> MLP:
    """The network saved at ``path`` (a :mod:`gpubp.checkpoint` file), on the active backend;
    restores ``optimizer``'s state too if given.

    The file is untrusted (see :mod:`gpubp.checkpoint`): its metadata are checked by the
    constructor's rules and against the stored arrays' headers before any array is read; the
    parameters (and the layers' state) are then read straight into the network's buffers (no
    random initialisation: the peak is about twice the parameters' size). Anything malformed is
    a :class:`~gpubp.errors.CheckpointError` naming the file, and nothing (``optimizer``
    included) changes unless the whole file is valid.
    """
    if optimizer is not None:
        validation.check_optimizer(optimizer)
    with checkpoint.Checkpoint(path, describe) as ck:
        if optimizer is not None:
            ck.check_optimizer(optimizer, ck.n_params)
        loaded = {key: ck.read(key) for key in ("params", "state") if key in ck.archive.members}
        params, state = loaded["params"], loaded.get("state")
        opt_state = ck.optimizer_state() if optimizer is not None else None
        if opt_state is not None:
            loaded.update({f"optimizer/{k}": v for k, v in opt_state["state"].items()})
        ck.verify(loaded)
        del loaded
        net = MLP.from_parameters(params, state=state, **ck.config)  # out of memory: an error naming the sizes
        try:
            net.set_host_state(ck.host_state)
        except (KeyError, TypeError, ValueError) as exc:
            raise ck._error("a layer's saved state is corrupted", exc) from None
        net.rng, net.epoch = ck.rng, ck.epoch
    if optimizer is not None:
        optimizer.load_state_dict(opt_state, net)
    return net


def load_optimizer(path: Any, net: MLP) -> Optional[Optimizer]:
    """A new optimizer of the saved type and settings with its saved state for ``net`` (a
    :class:`gpubp.MLP`), or None if none was saved."""
    with checkpoint.Checkpoint(path, describe) as ck:
        saved = ck.optimizer
        if saved is None:
            return None
        try:
            cls = OPTIMIZERS[saved["type"].lower()]
            cfg = dict(saved["config"])
            if "betas" in cfg and isinstance(cfg["betas"], list):
                cfg["betas"] = tuple(cfg["betas"])
            opt = cls(**cfg)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ck._error("the optimizer settings are corrupted", exc) from None
        ck.check_optimizer(opt, net.n_params)
        state = ck.optimizer_state()
        ck.verify({f"optimizer/{k}": v for k, v in state["state"].items()})
    opt.load_state_dict(state, net)
    return opt


def network_state(net: MLP) -> Dict[str, Any]:
    """What rebuilds ``net`` anywhere, in plain Python and NumPy: its configuration, host copies of
    the parameter and state buffers, the layers' host state (dropout streams), the shuffling
    generator's state, the epoch count and the backend's name (what pickling a network keeps;
    :func:`network_from_state` reverses it)."""
    to_np = net.backend.to_numpy
    return {"config": net.get_config(), "params": to_np(net.params).copy(), "state": to_np(net.state).copy(),
            "host_state": net.host_state(), "rng": net.rng.bit_generator.state, "epoch": int(net.epoch),
            "backend": net.backend.name}


def network_from_state(state: Dict[str, Any]) -> MLP:
    """The network :func:`network_state` described, on the backend it came from where that can run
    here (a network from a GPU comes back to the GPU), else on the active backend."""
    saved = state.get("backend")
    move = saved is not None and saved != get_backend().name and (saved != "cupy" or cupy_problem() is None)
    with use_backend(saved) if move else contextlib.nullcontext():
        net = MLP.from_parameters(np.array(state["params"]), state=np.array(state["state"]), **state["config"])
    net.set_host_state(state["host_state"])
    net.rng.bit_generator.state = state["rng"]
    net.epoch = int(state["epoch"])
    return net


def _reduce(net: MLP) -> Tuple[Any, Tuple[Dict[str, Any]]]:
    """Pickle ``net`` as a NumPy snapshot (:func:`network_state`); unpickled on the backend it was
    pickled from where that can run, else on the active one."""
    return network_from_state, (network_state(net),)


copyreg.pickle(MLP, _reduce)
